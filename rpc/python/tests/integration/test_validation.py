"""Message validation (issue 16): the protovalidate rules of the example
contract (rpc/protos/examples/onedrive/sync.proto) checked by the server
for every pattern before anything runs or fans out, by the client before
sending, and on handlers' answers when asked."""
from __future__ import annotations

import logging

import pytest
from gevent.event import Event

import onedrive_rpc as rpc
from onedrive_rpc import validation
from onedrive_rpc.examples.onedrive.sync_pb2 import (CREATED, INFO, Item, ItemChange, ItemRef,
                                                     LogLine, ShutdownNotice, Upload)
from onedrive_rpc.examples.onedrive.sync_rpc import SyncBase, SyncClient
from onedrive_rpc.testing.echo_pb2 import Msg
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.helpers import wait_until

SYNC = SyncBase.descriptor
GOOD = ItemRef(drive_id="d1", path="/Documents")
BAD = ItemRef(drive_id="d.1", path="Documents")  # a dot in a topic segment, a relative path
TIMEOUT = 5


class Sync(SyncBase):
    """Counts what its handlers ran for; answers with `answer` (set a bad one
    to test validate_responses)."""

    def __init__(self):
        self.ran = []
        self.answer = Item(drive_id="d1", path="/Documents", folder=True)
        self.logged = Event()

    def get_item(self, request, context):
        self.ran.append(("get_item", request.path))
        return self.answer

    def list_children(self, request, context):
        self.ran.append(("list_children", request.path))
        yield Item(drive_id="d1", path="/Documents/a.txt")
        yield self.answer

    def log(self, request, context):
        self.ran.append(("log", request.component))
        self.logged.set()

    def upload_queue(self, request, context):
        self.ran.append(("upload", request.remote_path))


@pytest.fixture
def sync(servers, tmp_path):
    def serve(**options):
        service = Sync()
        server = servers(f"unix://{tmp_path}/sync-{len(tmp_path.name)}-{id(service)}.sock", service,
                         **options)
        server.service = service
        return server
    return serve


def _violations(error):
    return [(v.field, v.rule) for v in error.violations]


def test_a_client_refuses_an_invalid_request_before_sending_it(sync, peers):
    server = sync()
    peer = peers(server.url, name="cli")
    client = SyncClient(peer)
    with pytest.raises(rpc.RpcError) as info:
        client.get_item(BAD, timeout=TIMEOUT)
    error = info.value
    assert error.code == rpc.StatusCode.INVALID_ARGUMENT
    assert _violations(error) == [("drive_id", "string.pattern"), ("path", "string.prefix")]
    assert error.message.startswith("invalid onedrive.sync.ItemRef: drive_id: ")
    assert "(and 1 more)" in error.message
    assert "path: " in str(error) and "[string.prefix]" in str(error)
    [seen] = [p for p in server.inspect().peers if p.name == "cli"]
    assert seen.calls_received == 0  # no round trip
    assert client.get_item(GOOD, timeout=TIMEOUT).path == "/Documents"
    assert server.service.ran == [("get_item", "/Documents")]


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_the_server_refuses_invalid_requests_of_every_pattern_without_running_anything(
        servers, peers, tmp_path, transport):
    url = "tcp://127.0.0.1:0" if transport == "tcp" else f"unix://{tmp_path}/v.sock"
    service = Sync()
    server = servers(url, service)
    # A peer that does not check (a client in another language, say).
    client = SyncClient(peers(server.url, validate=False))
    heard = []
    SyncClient(peers(server.url)).item_changed.subscribe(
        "drive.>", lambda received: heard.append(received.message.item.path), timeout=TIMEOUT)

    def refused(call, *args, **kwargs):
        with pytest.raises(rpc.RpcError) as info:
            call(*args, timeout=TIMEOUT, **kwargs)
        assert info.value.code == rpc.StatusCode.INVALID_ARGUMENT, info.value
        return _violations(info.value)

    assert refused(client.get_item, BAD) == [
        ("drive_id", "string.pattern"), ("path", "string.prefix")]
    assert refused(lambda *a, **k: list(client.list_children(*a, **k)), BAD)[1] == (
        "path", "string.prefix")
    no_item = ItemChange(kind=CREATED)
    assert refused(client.item_changed.publish, "drive.d1.x", no_item, confirm=True) == [
        ("item", "required")]
    assert refused(client.upload_queue.produce, Upload(drive_id="d1", remote_path="x")) == [
        ("remote_path", "string.prefix")]
    assert refused(client.shutdown.broadcast, ShutdownNotice(grace_seconds=99999),
                   confirm=True) == [("grace_seconds", "uint32.lte")]
    client.log(LogLine(level=INFO, component=""), confirm=True, timeout=TIMEOUT)
    # Nothing ran, nothing was queued, nothing fanned out; a valid message still does.
    good_change = ItemChange(kind=CREATED, item=Item(drive_id="d1", path="/new.txt"))
    client.item_changed.publish("drive.d1.new", good_change, confirm=True, timeout=TIMEOUT)
    wait_until(lambda: heard == ["/new.txt"])
    assert service.ran == []
    assert server.queue_stats("/onedrive.sync.Sync/UploadQueue").produced == 0
    client.log(LogLine(level=INFO, component="tray"), confirm=True, timeout=TIMEOUT)
    assert service.logged.wait(TIMEOUT)
    assert service.ran == [("log", "tray")]


def test_validate_false_on_the_server_lets_everything_through(sync, peers):
    server = sync(validate=False)
    client = SyncClient(peers(server.url, validate=False))
    assert client.get_item(BAD, timeout=TIMEOUT).path == "/Documents"
    assert server.service.ran == [("get_item", "Documents")]


def test_answers_that_break_the_contract_are_not_sent_when_asked(sync, peers, caplog):
    server = sync(validate_responses=True)
    server.service.answer = Item(drive_id="d1", path="no-slash")
    client = SyncClient(peers(server.url))
    with pytest.raises(rpc.RpcError) as info:
        client.get_item(GOOD, timeout=TIMEOUT)
    assert info.value.code == rpc.StatusCode.INTERNAL
    assert "breaks its own contract" in info.value.message
    assert info.value.violations == ()  # the server's own fault: told in its log
    assert any("path: does not have prefix" in r.getMessage() and r.levelno == logging.ERROR
               for r in caplog.records)
    stream = client.list_children(GOOD, timeout=TIMEOUT)
    assert next(stream).path == "/Documents/a.txt"  # the valid item went out
    with pytest.raises(rpc.RpcError) as info:
        next(stream)
    assert info.value.code == rpc.StatusCode.INTERNAL
    # Without validate_responses the same answer goes out as it is.
    plain = sync()
    plain.service.answer = Item(drive_id="d1", path="no-slash")
    assert SyncClient(peers(plain.url)).get_item(GOOD, timeout=TIMEOUT).path == "no-slash"


def test_validation_runs_after_authorize_and_inside_the_other_interceptors(sync, peers):
    seen = []

    def outer(action, proceed):
        try:
            return proceed()
        except rpc.RpcError as exc:
            seen.append((action.kind, exc.code))
            raise

    def authorize(identity, action, method, target):
        return not method.endswith("/UploadQueue")

    server = sync(interceptors=[outer], authorize=authorize)
    client = SyncClient(peers(server.url, validate=False))
    with pytest.raises(rpc.RpcError) as info:  # refused, and the rules are never looked at
        client.upload_queue.produce(Upload(remote_path="x"), timeout=TIMEOUT)
    assert info.value.code == rpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(rpc.RpcError):
        client.get_item(BAD, timeout=TIMEOUT)
    assert seen == [("produce", rpc.StatusCode.PERMISSION_DENIED),
                    ("call", rpc.StatusCode.INVALID_ARGUMENT)]


def test_validation_as_an_interceptor_placed_by_the_user(sync, peers):
    order = []

    def first(action, proceed):
        order.append("first")
        return proceed()

    server = sync(validate=False, interceptors=[validation.Validation(), first])
    client = SyncClient(peers(server.url, validate=False))
    with pytest.raises(rpc.RpcError) as info:
        client.get_item(BAD, timeout=TIMEOUT)
    assert info.value.code == rpc.StatusCode.INVALID_ARGUMENT
    assert order == []  # refused before the interceptor behind it
    # On a client too: the interceptor finds the request type by the method's name.
    checking = SyncClient(peers(server.url, validate=False, interceptors=[validation.Validation()]))
    with pytest.raises(rpc.RpcError) as info:
        checking.get_item(BAD, timeout=TIMEOUT)
    assert info.value.code == rpc.StatusCode.INVALID_ARGUMENT
    assert server.service.ran == []


def test_services_without_rules_keep_the_fast_path(servers, peers, tmp_path):
    assert not validation.service_has_rules(ECHO)
    assert validation.service_has_rules(SYNC)
    server = servers(f"unix://{tmp_path}/echo.sock", EchoService())
    peer = peers(server.url)
    rpc.Client(peer, ECHO).echo(Msg(text="hi"), timeout=TIMEOUT)
    # No interceptor chain at all on either side: the fast path.
    assert server._registry.interception is None and peer._interception is None
    SyncClient(peer)  # a client of a service with rules: from now on this peer checks
    assert peer._interception is not None


def test_has_rules_looks_into_nested_messages_once():
    assert validation.has_rules(ItemChange.DESCRIPTOR)  # its own, and its Item's
    assert validation.has_rules(Item.DESCRIPTOR)
    assert not validation.has_rules(Msg.DESCRIPTOR)
    from google.protobuf import empty_pb2, struct_pb2
    assert not validation.has_rules(empty_pb2.Empty.DESCRIPTOR)
    assert not validation.has_rules(struct_pb2.Value.DESCRIPTOR)  # recursive, no rules


def test_violations_name_nested_fields_and_message_rules():
    change = ItemChange(kind=CREATED, item=Item(drive_id="d1", path="x", modified_unix=-1),
                        old_path="/was")
    found = validation.violations_of(change)
    assert ("item.path", "string.prefix") in [(v.field, v.rule) for v in found]
    assert ("item.modified_unix", "int64.gte") in [(v.field, v.rule) for v in found]
    assert ("", "item_change.old_path") in [(v.field, v.rule) for v in found]
    assert all(v.message for v in found)
    assert validation.violations_of(Msg(text="anything")) == []


def test_a_busy_loop_is_not_stalled_by_many_invalid_messages(sync, peers):
    server = sync()
    client = SyncClient(peers(server.url, validate=False))
    other = SyncClient(peers(server.url))
    bad = [client.get_item.future(BAD, timeout=TIMEOUT) for _ in range(500)]
    assert other.get_item(GOOD, timeout=TIMEOUT).path == "/Documents"
    for future in bad:
        with pytest.raises(rpc.RpcError) as info:
            future.get(timeout=TIMEOUT)
        assert info.value.code == rpc.StatusCode.INVALID_ARGUMENT


def test_a_client_checks_what_it_publishes_produces_and_broadcasts_too(sync, peers):
    server = sync()
    heard = []
    SyncClient(peers(server.url)).item_changed.subscribe(
        "drive.>", lambda received: heard.append(received.message.item.path), timeout=TIMEOUT)
    client = SyncClient(peers(server.url))
    for send in (lambda: client.item_changed.publish("drive.d1.x", ItemChange(kind=CREATED)),
                 lambda: client.upload_queue.produce(Upload(remote_path="x"), timeout=TIMEOUT),
                 lambda: client.shutdown.broadcast(ShutdownNotice(grace_seconds=99999))):
        with pytest.raises(rpc.RpcError) as info:
            send()
        assert info.value.code == rpc.StatusCode.INVALID_ARGUMENT and info.value.violations
    client.item_changed.publish("drive.d1.x", ItemChange(kind=CREATED, item=Item(
        drive_id="d1", path="/ok")), confirm=True, timeout=TIMEOUT)
    wait_until(lambda: heard == ["/ok"])  # the invalid one before it never went out
    assert server.queue_stats("/onedrive.sync.Sync/UploadQueue").produced == 0


def _service_with_rule(expression, package):
    """A service whose request type has one message-level CEL rule, built
    from descriptors (no .proto file): for rules that do not compile."""
    from buf.validate import validate_pb2
    from google.protobuf import descriptor_pb2, descriptor_pool
    from google.protobuf.message_factory import GetMessageClass

    from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2

    pool = descriptor_pool.DescriptorPool()  # its own: the default one stays as it was
    for module in (descriptor_pb2, duration_pb2, field_mask_pb2, timestamp_pb2, validate_pb2):
        pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    # Its own package: protovalidate keeps what it compiled by the type's name.
    file = descriptor_pb2.FileDescriptorProto(name=f"{package}/rules.proto", package=package,
                                              syntax="proto3",
                                              dependency=["buf/validate/validate.proto"])
    message = file.message_type.add(name="Req")
    message.field.add(name="n", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    message.options.Extensions[validate_pb2.message].cel.add(id="broken", message="m",
                                                             expression=expression)
    service = file.service.add(name="Broken")
    service.method.add(name="Call", input_type=f".{package}.Req", output_type=f".{package}.Req")
    pool.AddSerializedFile(file.SerializeToString())
    descriptor = pool.FindServiceByName(f"{package}.Broken")

    class Broken(rpc.Service):
        pass
    Broken.descriptor = descriptor
    Broken.call = lambda self, request, context: request
    return Broken(), GetMessageClass(pool.FindMessageTypeByName(f"{package}.Req"))


def test_rules_that_do_not_compile_refuse_the_service_when_it_is_added(servers, tmp_path):
    service, _ = _service_with_rule("this.n >", "notcel")  # not CEL
    server = rpc.Server(f"unix://{tmp_path}/broken.sock")
    with pytest.raises(ValueError) as info:
        server.add_service(service)
    assert "notcel.Broken.Call" in str(info.value) and "do not compile" in str(info.value)


def test_a_rule_that_fails_to_run_on_a_message_is_internal_not_the_sender_s_fault(
        servers, peers, tmp_path):
    service, request = _service_with_rule("100 / this.n > 1", "divides")  # fails for n == 0 only
    server = servers(f"unix://{tmp_path}/failing.sock", service)  # legal: added
    peer = peers(server.url, validate=False)
    path = "/divides.Broken/Call"
    assert request.FromString(peer.call(path, request(n=5).SerializeToString(),
                                        lambda b: b, timeout=TIMEOUT)).n == 5
    with pytest.raises(rpc.RpcError) as info:
        peer.call(path, request(n=0).SerializeToString(), lambda b: b, timeout=TIMEOUT)
    assert info.value.code == rpc.StatusCode.INTERNAL
    assert "cannot be checked" in info.value.message
