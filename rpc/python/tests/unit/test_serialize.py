"""serialize(): large bytes fields go out as Pieces that mean exactly what
SerializeToString() means; everything else is SerializeToString() itself."""
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import EncodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from onedrive_rpc.core.framing import Pieces
from onedrive_rpc.serialize import LARGE_FIELD, serialize
from onedrive_rpc.testing import echo_pb2

F = descriptor_pb2.FieldDescriptorProto


def _types():
    """Built at test time: a proto3 message with two bytes fields, a oneof
    holding bytes, a repeated and a nested field; a proto2 one with a
    required bytes field."""
    pool = descriptor_pool.DescriptorPool()
    file = descriptor_pb2.FileDescriptorProto(
        name="test_serialize/many.proto", package="ser", syntax="proto3")
    inner = file.message_type.add(name="Inner")
    inner.field.add(name="blob", number=1, type=F.TYPE_BYTES, label=F.LABEL_OPTIONAL)
    many = file.message_type.add(name="Many")
    many.oneof_decl.add(name="choice")
    for name, number, kind, extra in [
            ("a", 1, F.TYPE_BYTES, {}), ("b", 2, F.TYPE_BYTES, {}),
            ("name", 3, F.TYPE_STRING, {}),
            ("nums", 4, F.TYPE_INT32, {"label": F.LABEL_REPEATED}),
            ("c", 5, F.TYPE_BYTES, {"oneof_index": 0}),
            ("d", 6, F.TYPE_STRING, {"oneof_index": 0}),
            ("inner", 7, F.TYPE_MESSAGE, {"type_name": ".ser.Inner"}),
            ("chunks", 8, F.TYPE_BYTES, {"label": F.LABEL_REPEATED})]:
        many.field.add(name=name, number=number, type=kind,
                       label=extra.pop("label", F.LABEL_OPTIONAL), **extra)
    pool.Add(file)
    old = descriptor_pb2.FileDescriptorProto(
        name="test_serialize/old.proto", package="ser2", syntax="proto2")
    req = old.message_type.add(name="Req")
    req.field.add(name="r", number=1, type=F.TYPE_BYTES, label=F.LABEL_REQUIRED)
    req.field.add(name="s", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    pool.Add(old)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("ser.Many")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("ser2.Req")))


Many, Req = _types()
BIG = LARGE_FIELD


def _same(message, payload):
    assert type(message).FromString(bytes(payload)) == message
    assert len(payload) == message.ByteSize()


def test_a_small_message_is_serialize_to_string_itself():
    message = echo_pb2.Msg(text="hi", data=b"x" * (BIG - 1))
    assert serialize(message) == message.SerializeToString()


def test_a_large_bytes_field_stays_in_its_own_buffer_uncopied_into_the_rest():
    data = bytes(range(256)) * (BIG // 256 + 1)
    message = echo_pb2.Msg(text="name", data=data, delay=0.5, count=7)
    payload = serialize(message)
    assert isinstance(payload, Pieces)
    assert payload.parts[-1] == data  # the bytes themselves, last
    assert sum(len(p) for p in payload.parts[:-1]) < 64  # the rest is small
    _same(message, payload)
    assert message.data == data  # the caller's message is untouched


def test_every_large_field_is_split_out_and_the_rest_keeps_its_fields():
    message = Many(a=b"a" * BIG, b=b"b" * (3 * BIG), name="n", nums=[1, 2, 3],
                   c=b"c" * BIG, chunks=[b"k" * BIG, b"z"])
    message.inner.blob = b"i" * BIG
    payload = serialize(message)
    assert isinstance(payload, Pieces)
    # a, b and the oneof's c are split out; the nested and repeated ones are
    # left to protobuf.
    assert [len(p) for p in payload.parts[1::2]] == [BIG, 3 * BIG, BIG]
    _same(message, payload)
    assert Many.FromString(bytes(payload)).WhichOneof("choice") == "c"


def test_a_oneof_that_holds_a_string_is_left_alone():
    message = Many(a=b"a" * BIG, d="text")
    payload = serialize(message)
    _same(message, payload)
    assert Many.FromString(bytes(payload)).WhichOneof("choice") == "d"


def test_unknown_fields_survive():
    known = Many(a=b"a" * BIG, name="n").SerializeToString()
    unknown = b"\x98\x06\x2a"  # field 99, varint 42
    message = Many.FromString(known + unknown)
    assert bytes(serialize(message)).endswith(b"a" * BIG)
    assert Many.FromString(bytes(serialize(message))).SerializeToString().count(unknown) == 1


def test_a_proto2_message_missing_a_required_field_raises_as_protobuf_does():
    with pytest.raises(EncodeError):
        serialize(Req(s="x" * BIG))
    message = Req(r=b"r" * BIG, s="s")
    payload = serialize(message)
    assert isinstance(payload, Pieces)
    _same(message, payload)


@settings(max_examples=60, deadline=None)
@given(a=st.integers(0, 2 * BIG), b=st.integers(0, 2 * BIG), name=st.text(max_size=20),
       nums=st.lists(st.integers(-2**31, 2**31 - 1), max_size=5),
       choice=st.sampled_from(["c", "d", None]), c=st.integers(0, 2 * BIG))
def test_any_mix_means_what_serialize_to_string_means(a, b, name, nums, choice, c):
    message = Many(a=b"A" * a, b=b"B" * b, name=name, nums=nums)
    if choice == "c":
        message.c = b"C" * c
    elif choice == "d":
        message.d = "D" * (c % 100)
    payload = serialize(message)
    assert isinstance(payload, Pieces) == any(
        n >= BIG for n in (a, b, c if choice == "c" else 0))
    _same(message, payload)
