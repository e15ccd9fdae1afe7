"""Field violations travel with an error (issue 16, spec §6.1): a
Response, StreamEnd, pattern answer or Close carrying them arrives with
them; one without them is byte for byte what it was before; what a peer
puts in Status.bad_request cannot make us hold more than it sent, and
bytes that are not a BadRequest cost the violations, not the connection.

Pure: two sans-IO sessions, no sockets, no clocks.
"""
from __future__ import annotations

import pytest

from onedrive_rpc.calls import call_result, fresh
from onedrive_rpc.core import events as ev
from onedrive_rpc.core import pattern_frames as pf
from onedrive_rpc.core import wire_pb2
from onedrive_rpc.core.output import close_frame
from onedrive_rpc.core.session import State
from onedrive_rpc.core.violations import MAX_VIOLATIONS, decode_violations, encode_violations
from onedrive_rpc.errors import PeerLost, RpcError, StatusCode, Violation
from onedrive_rpc.testing.helpers import envelopes, framed, open_session_pair, wire

METHOD = "/a.B/C"
INVALID = StatusCode.INVALID_ARGUMENT
VIOLATIONS = (
    Violation("path", "string.prefix", "must have prefix `/`"),
    Violation("items[2].size", "int64.gte", "must be greater than or equal to 0"),
    Violation('labels["k"]', "string.min_len", "value length must be at least 1 characters"),
    Violation("", "message.oneof", "exactly one of a, b must be set"),
    Violation("name", "string.pattern", "does not match ‘^[a-z]+$’ (ünïcödé)"),
)


def _call(client, server, call_id=1, initial_credit=0):
    client.send_request(call_id, METHOD, b"req", initial_credit=initial_credit)
    [event] = server.receive_data(wire(client), 1.0)
    assert type(event) is ev.RequestReceived


# ------------------------------------------------------------- round trips


def test_a_response_carries_its_violations_to_the_caller():
    client, server = open_session_pair()
    _call(client, server)
    server.send_response(1, INVALID, "request breaks its rules", violations=VIOLATIONS)
    [event] = client.receive_data(wire(server), 2.0)
    assert event == ev.ResponseReceived(1, INVALID, "request breaks its rules", "", b"",
                                        VIOLATIONS)
    error = pytest.raises(RpcError, call_result, event, bytes).value
    assert error.code is INVALID and error.violations == VIOLATIONS


def test_a_stream_end_carries_its_violations():
    client, server = open_session_pair()
    _call(client, server, initial_credit=4)
    server.send(pf.StreamEnd(1, INVALID, "bad", "tb", VIOLATIONS))
    [event] = client.receive_data(wire(server), 2.0)
    assert event == ev.StreamEndReceived(1, INVALID, "bad", "tb", VIOLATIONS)


def test_the_answer_to_a_pattern_frame_opened_as_a_call_carries_them():
    client, server = open_session_pair()
    client.send(pf.Produce(METHOD, b"task", call_id=7))
    [event] = server.receive_data(wire(client), 1.0)
    assert type(event) is ev.ProduceReceived
    server.send_response(7, INVALID, "bad task", violations=VIOLATIONS[:1])
    [answer] = client.receive_data(wire(server), 2.0)
    assert answer.violations == VIOLATIONS[:1]


def test_a_close_carries_them_both_ways_it_is_written():
    client, server = open_session_pair()
    server.send_close(INVALID, "bye", violations=VIOLATIONS)
    [event] = client.receive_data(wire(server), 2.0)
    assert event == ev.CloseReceived(INVALID, "bye", True, VIOLATIONS)
    assert RpcError.from_close(event.code, event.message, event.violations).violations == VIOLATIONS
    [env] = envelopes(close_frame(INVALID, "bye", False, VIOLATIONS))
    assert decode_violations(env.close.status.bad_request) == VIOLATIONS


# Frames without violations, as the code before issue 16 wrote them (hex of
# the same sends on commit 10184b4): the hot path did not move a byte.
BEFORE = {
    "response": "0000001510011801320f0801120b080312036261641a027462",
    "stream_end": "0000001510021802420f0802120b080312036261641a027462",
    "pattern_answer": "0000001110031803320b0805120708031203626164",
    "close": "0000000ed2010b0a07080312036279651001",
}


def test_without_violations_every_status_is_byte_identical_to_before():
    client, server = open_session_pair()
    _call(client, server, 1)
    server.send_response(1, INVALID, "bad", "tb")
    assert wire(server).hex() == BEFORE["response"]
    _call(client, server, 2, initial_credit=4)
    server.send(pf.StreamEnd(2, INVALID, "bad", "tb"))
    assert wire(server).hex() == BEFORE["stream_end"]
    client.send(pf.Produce(METHOD, b"t", call_id=5))
    server.receive_data(wire(client), 1.0)
    server.send_response(5, INVALID, "bad", violations=())
    assert wire(server).hex() == BEFORE["pattern_answer"]
    assert close_frame(INVALID, "bye", True).hex() == BEFORE["close"]
    server.send_close(INVALID, "bye")
    assert wire(server).hex() == BEFORE["close"]


def test_an_error_without_violations_arrives_with_none():
    client, server = open_session_pair()
    _call(client, server)
    server.send_response(1, INVALID, "bad")
    [event] = client.receive_data(wire(server), 2.0)
    assert event.violations == ()
    assert pytest.raises(RpcError, call_result, event, bytes).value.violations == ()


# ------------------------------------------------------------ the encoding


def test_the_encoding_is_google_rpc_bad_request():
    """Field numbers of google.rpc.BadRequest: field 1, description 2,
    reason 3 in FieldViolation, field_violations 1: protobuf reads ours, we
    read protobuf's, unknown fields (google's localized_message = 4)
    skipped."""
    data = encode_violations(VIOLATIONS)
    parsed = wire_pb2.BadRequest.FromString(data)
    assert [(v.field, v.reason, v.description) for v in parsed.field_violations] == [
        tuple(v) for v in VIOLATIONS]
    assert parsed.SerializeToString() == data
    # FieldViolation.localized_message (4, a message), an empty violation,
    # and a BadRequest field 2 (a varint) no version of ours knows.
    item = b"\x0a\x01f" + b"\x12\x01d" + b"\x1a\x01r" + b"\x22\x02\x0a\x00"
    raw = b"\x0a" + bytes([len(item)]) + item + b"\x0a\x00" + b"\x10\x05"
    theirs = wire_pb2.BadRequest.FromString(raw)
    assert [(v.field, v.reason, v.description) for v in theirs.field_violations] == [
        ("f", "r", "d"), ("", "", "")]
    assert decode_violations(raw) == (Violation("f", "r", "d"), Violation("", "", ""))


def test_a_status_on_the_wire_is_the_generated_status_with_field_4():
    client, server = open_session_pair()
    _call(client, server)
    server.send_response(1, INVALID, "bad", violations=VIOLATIONS)
    [env] = envelopes(wire(server))
    status = env.response.status
    assert (status.code, status.message) == (INVALID, "bad")
    assert wire_pb2.BadRequest.FromString(status.bad_request).field_violations[0].reason == \
        "string.prefix"


def test_no_more_than_max_violations_are_sent():
    many = [Violation(f"f{i}", "r", "m") for i in range(MAX_VIOLATIONS + 5)]
    assert decode_violations(encode_violations(many)) == tuple(many[:MAX_VIOLATIONS])


# --------------------------------------------------- what a peer may send


def _response_with(bad_request: bytes, code: int = INVALID):
    """The client's events for a Response whose Status.bad_request is
    `bad_request`, written by the server session (so seq and ack fit),
    then a second, plain error answer: the connection goes on."""
    client, server = open_session_pair()
    _call(client, server, 1)
    _call(client, server, 2)
    server.send_response(1, code, "bad" if code else "")
    [env] = envelopes(wire(server))
    env.response.status.code = code
    env.response.status.bad_request = bad_request
    first = client.receive_data(framed(env), 2.0)
    server.send_response(2, INVALID, "second")
    second = client.receive_data(wire(server), 2.0)
    assert client.state is State.OPEN
    return first + second


MALFORMED = {
    "truncated length": b"\x0a\x05\x0a\x01",
    "length past the end": b"\x0a\x7f",
    "truncated varint": b"\x0a\xff",
    "field past its violation": b"\x0a\x02\x0a\x05abcde",
    "group wire type": b"\x0b",
    "field number 0": b"\x02\x00",
    "field number 0 inside": b"\x0a\x02\x02\x00",
    "wire type 7": b"\x0f",
    "not utf-8": b"\x0a\x03\x0a\x01\xff",
    "varint too long": b"\x08" + b"\xff" * 11,
    "random": bytes(range(256)),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_bytes_that_are_not_a_bad_request_give_no_violations_and_the_connection_goes_on(data):
    assert decode_violations(data) == ()
    first, second = _response_with(data)
    assert (first.call_id, first.code, first.message, first.violations) == (1, INVALID, "bad", ())
    assert (second.call_id, second.message) == (2, "second")


def test_a_stream_end_or_close_with_malformed_field_4_still_arrives():
    client, server = open_session_pair()
    _call(client, server, 1, initial_credit=2)
    server.send(pf.StreamEnd(1, INVALID, "bad"))
    [env] = envelopes(wire(server))
    env.stream_end.status.bad_request = MALFORMED["truncated length"]
    env.ack_now = False
    [end] = client.receive_data(framed(env), 2.0)
    assert end == ev.StreamEndReceived(1, INVALID, "bad", "", ())
    close = wire_pb2.Envelope()
    close.close.status.code = INVALID
    close.close.status.bad_request = b"\xff"
    assert client.receive_data(framed(close), 2.0) == [ev.CloseReceived(INVALID, "", False, ())]


def test_an_ok_answer_ignores_field_4():
    [first, _] = _response_with(encode_violations(VIOLATIONS), code=0)
    assert first.code == 0 and first.violations == ()


def test_a_frame_full_of_empty_violations_decodes_to_at_most_max_violations():
    """2 bytes each on the wire, a Violation each in memory: a decode of
    them all would hold many times the frame. The first MAX_VIOLATIONS
    only; the frame limit bounds the rest, which is not looked at."""
    data = b"\x0a\x00" * 500_000  # a 1 MB frame's worth
    [first, _] = _response_with(data)
    assert first.violations == (Violation("", "", ""),) * MAX_VIOLATIONS


# ------------------------------------------------------------- RpcError


def test_rpc_error_keeps_shows_and_copies_its_violations():
    error = RpcError(INVALID, "request breaks its rules", "trace", violations=list(VIOLATIONS[:2]))
    assert error.violations == VIOLATIONS[:2] and type(error.violations) is tuple
    assert str(error) == ("INVALID_ARGUMENT: request breaks its rules\n"
                          "  path: must have prefix `/` [string.prefix]\n"
                          "  items[2].size: must be greater than or equal to 0 [int64.gte]\n"
                          "trace")
    assert "violations=[Violation(field='path'" in repr(error)
    copy = fresh(error)
    assert copy is not error and copy.violations == error.violations
    assert str(RpcError(INVALID, "whole", violations=[VIOLATIONS[3]])) == (
        "INVALID_ARGUMENT: whole\n  exactly one of a, b must be set [message.oneof]")


def test_plain_tuples_become_violations_and_none_costs_nothing():
    error = RpcError(INVALID, "x", violations=[("path", "string.prefix", "must have prefix `/`")])
    assert error.violations == (VIOLATIONS[0],) and type(error.violations[0]) is Violation
    assert RpcError(INVALID, "x").violations == ()
    assert str(RpcError(INVALID, "x")) == "INVALID_ARGUMENT: x"
    assert repr(RpcError(INVALID, "x")) == "RpcError(INVALID_ARGUMENT, 'x')"


def test_from_status_and_from_close_take_violations():
    error = RpcError.from_status(INVALID, "bad", None, VIOLATIONS)
    assert error.violations == VIOLATIONS
    assert isinstance(RpcError.from_close(StatusCode.UNAVAILABLE, "bye", VIOLATIONS), PeerLost)
