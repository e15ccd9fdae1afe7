"""What handlers see and what the server guarantees: context, deadlines,
cancellation, graceful stop, backpressure. Server in this process so the
tests can look inside it; every transport."""
from __future__ import annotations

import os

import gevent
import pytest
from gevent.event import Event

import onedrive_rpc as rpc
from onedrive_rpc.testing.helpers import wait_until
from onedrive_rpc.identity import local_identity
from onedrive_rpc.testing import echo_pb2
from onedrive_rpc.testing.echo_service import ECHO

Msg = echo_pb2.Msg


class Probe(rpc.Service):
    """Records what its handlers saw; sleep waits for `release` or an abort."""

    descriptor = ECHO

    def __init__(self):
        self.contexts = []
        self.started = Event()
        self.release = Event()
        self.aborted = []
        self.finished = []
        self.running = 0
        self.max_running = 0

    def echo(self, request, context):
        self.contexts.append((context.method, dict(context.metadata), context.time_remaining(),
                              context.peer, context.address, context.credentials))
        return request

    def sleep(self, request, context):
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.started.set()
        try:
            if request.delay:
                gevent.sleep(request.delay)
            else:
                self.release.wait()
        except BaseException as exc:
            self.aborted.append((request.text, type(exc).__name__, getattr(exc, "code", None),
                                 context.cancelled))
            raise
        finally:
            self.running -= 1
        self.finished.append(request.text)
        return request

    def fail(self, request, context):
        raise rpc.RpcError(rpc.StatusCode.NOT_FOUND, f"no item {request.text}")


@pytest.fixture
def probe_server(url):
    probe = Probe()
    server = rpc.Server(url, limits=rpc.Limits(max_concurrent_calls=8))
    server.add_service(probe)
    server.start()
    server.probe = probe
    yield server
    server.stop()


def test_context_carries_deadline_metadata_and_identity(probe_server, transport, peers):
    peer = peers(probe_server.url, name="probe-client")
    client = rpc.Client(peer, ECHO)
    client.echo(Msg(), timeout=3.0, metadata={"trace-id": "abc"})
    client.echo(Msg())
    (method, metadata, remaining, who, address, creds), second = probe_server.probe.contexts
    assert method == "/onedrive_rpc.testing.Echo/Echo"
    assert metadata == {"trace-id": "abc"}
    assert 2.0 < remaining <= 3.0
    assert second[2] is None and second[1] == {}
    assert who.name == "probe-client" and who.pid == os.getpid()
    assert who.peer_id == local_identity()[0]
    if transport == "unix":
        assert creds.pid == os.getpid() and creds.uid == os.getuid()
        assert address.endswith(".sock")
    elif transport == "tcp":
        assert address.startswith("127.0.0.1:")


def test_handler_may_return_its_own_status(probe_server, peers):
    client = rpc.Client(peers(probe_server.url), ECHO)
    with pytest.raises(rpc.RpcError) as info:
        client.fail(Msg(text="42"), timeout=5)
    assert info.value.code == rpc.StatusCode.NOT_FOUND and info.value.message == "no item 42"


def test_deadline_travels_and_stops_the_handler(probe_server, peers):
    probe = probe_server.probe
    client = rpc.Client(peers(probe_server.url), ECHO)
    with pytest.raises(rpc.RpcError) as info:
        client.sleep(Msg(text="slow"), timeout=0.3)
    assert info.value.code == rpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(lambda: probe.aborted)
    assert probe.aborted == [("slow", "CallAborted", rpc.StatusCode.DEADLINE_EXCEEDED, True)]
    assert probe.finished == []


def test_a_cancel_for_a_passed_deadline_reaches_the_handler_as_deadline_exceeded():
    """The caller's deadline can pass before the server's own timer fires
    (its clock started when the request arrived): the Cancel says why."""
    from gevent import socket

    from onedrive_rpc.testing.helpers import blocking_handshake, wire

    probe = Probe()
    server = rpc.Server("tcp://127.0.0.1:0")
    server.add_service(probe)
    server.start()
    sock = None
    try:
        host, port = server.url[len("tcp://"):].rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=5)
        session = blocking_handshake(sock, "raw-caller")
        session.send_request(1, "/onedrive_rpc.testing.Echo/Sleep",
                             Msg(text="late").SerializeToString(), timeout=30)
        sock.sendall(wire(session))
        assert probe.started.wait(5)
        session.send_cancel(1, "deadline exceeded", rpc.StatusCode.DEADLINE_EXCEEDED)
        sock.sendall(wire(session))
        wait_until(lambda: probe.aborted)
    finally:
        if sock is not None:
            sock.close()
        server.stop()
    assert probe.aborted == [("late", "CallAborted", rpc.StatusCode.DEADLINE_EXCEEDED, True)]


def test_cancel_stops_the_handler(probe_server, peers):
    probe = probe_server.probe
    client = rpc.Client(peers(probe_server.url), ECHO)
    future = client.sleep.future(Msg(text="doomed"))
    probe.started.wait(5)
    future.cancel()
    wait_until(lambda: probe.aborted)
    assert probe.aborted == [("doomed", "CallAborted", rpc.StatusCode.CANCELLED, True)]


def test_killing_the_calling_greenlet_cancels_the_call(probe_server, peers):
    probe = probe_server.probe
    client = rpc.Client(peers(probe_server.url), ECHO)
    caller = gevent.spawn(client.sleep, Msg(text="orphan"))
    probe.started.wait(5)
    caller.kill()
    wait_until(lambda: probe.aborted)
    assert probe.aborted[0][:3] == ("orphan", "CallAborted", rpc.StatusCode.CANCELLED)


def test_graceful_stop_finishes_calls_in_flight_and_refuses_new_ones(probe_server, peers):
    probe = probe_server.probe
    peer = peers(probe_server.url)
    client = rpc.Client(peer, ECHO)
    in_flight = client.sleep.future(Msg(text="finish me"))
    probe.started.wait(5)
    stopper = gevent.spawn(probe_server.stop, 10.0)
    wait_until(lambda: probe_server._stopping)
    with pytest.raises(rpc.RpcError) as info:
        client.echo(Msg(text="too late"), timeout=5)
    assert info.value.code == rpc.StatusCode.UNAVAILABLE and "stopping" in info.value.message
    assert not stopper.ready()
    probe.release.set()
    assert in_flight.get(timeout=5).text == "finish me"
    stopper.get(timeout=5)
    wait_until(lambda: peer.closed)
    assert isinstance(peer.close_reason, rpc.PeerLost) and "server stopped" in peer.close_reason.message


def test_stop_grace_bounds_the_wait(probe_server, peers):
    client = rpc.Client(peers(probe_server.url), ECHO)
    stuck = client.sleep.future(Msg(text="never released"))
    probe_server.probe.started.wait(5)
    with gevent.Timeout(5):
        probe_server.stop(grace=0.2)
    with pytest.raises(rpc.RpcError) as info:
        stuck.get(timeout=5)
    assert info.value.code == rpc.StatusCode.UNAVAILABLE


def test_concurrency_limit_is_backpressure_not_errors(probe_server, peers):
    probe = probe_server.probe
    client = rpc.Client(peers(probe_server.url), ECHO)
    futures = [client.sleep.future(Msg(text=str(i), delay=0.02)) for i in range(100)]
    assert [f.get(timeout=20).text for f in futures] == [str(i) for i in range(100)]
    assert probe.max_running == 8


def test_message_over_the_peers_frame_limit_fails_that_call_only(url, peers):
    server = rpc.Server(url, limits=rpc.Limits(max_frame_size=64 * 1024))
    server.add_service(Probe())
    server.start()
    try:
        client = rpc.Client(peers(server.url), ECHO)
        with pytest.raises(rpc.RpcError) as info:
            client.echo(Msg(data=b"x" * (64 * 1024)), timeout=5)
        assert info.value.code == rpc.StatusCode.RESOURCE_EXHAUSTED
        assert "maximum frame size of 65536" in info.value.message
        assert client.echo(Msg(text="small"), timeout=5).text == "small"
    finally:
        server.stop()


def test_response_over_the_callers_frame_limit_is_resource_exhausted(local_server, peers):
    peer = peers(local_server.url, limits=rpc.Limits(max_frame_size=1024))
    big = Msg(data=b"y" * 2048).SerializeToString()
    # The request itself fits the server's limit; the echoed reply does not fit ours.
    with pytest.raises(rpc.RpcError) as info:
        peer.call("/onedrive_rpc.testing.Echo/Echo", big, Msg.FromString, timeout=5)
    assert info.value.code == rpc.StatusCode.RESOURCE_EXHAUSTED
    assert rpc.Client(peer, ECHO).echo(Msg(text="ok"), timeout=5).text == "ok"


def test_peer_close_drains_calls_in_flight_and_is_orderly(probe_server, peers):
    from gevent.event import AsyncResult
    probe = probe_server.probe
    disconnected, lost = AsyncResult(), AsyncResult()
    probe_server.on_peer_disconnected(lambda peer, reason: disconnected.set(reason))
    probe_server.on_peer_lost(lambda peer, reason: lost.set(reason))
    peer = rpc.connect(probe_server.url)
    client = rpc.Client(peer, ECHO)
    in_flight = client.sleep.future(Msg(text="let me finish"))
    probe.started.wait(5)
    closer = gevent.spawn(peer.close, 10.0)
    wait_until(lambda: peer._connection.refusing_outgoing)
    with pytest.raises(rpc.RpcError) as info:
        client.echo(Msg(text="too late"), timeout=5)
    assert info.value.code == rpc.StatusCode.UNAVAILABLE and "closing" in info.value.message
    assert not closer.ready()
    probe.release.set()
    assert in_flight.get(timeout=5).text == "let me finish"
    closer.get(timeout=5)
    assert "peer closed the connection" in disconnected.get(timeout=5).message
    assert not lost.ready()


def test_peer_close_grace_bounds_the_wait(probe_server):
    peer = rpc.connect(probe_server.url)
    stuck = rpc.Client(peer, ECHO).sleep.future(Msg(text="never released"))
    probe_server.probe.started.wait(5)
    with gevent.Timeout(5):
        peer.close(grace=0.2)
    with pytest.raises(rpc.PeerLost):
        stuck.get(timeout=5)


def test_a_handshake_in_progress_when_the_server_stops_is_turned_away(url):
    from onedrive_rpc.core.session import Role, Session
    from onedrive_rpc.handshake import write_all
    from onedrive_rpc.testing.helpers import envelopes
    from onedrive_rpc.transport import connect_stream
    server = rpc.Server(url)
    server.add_service(Probe())
    server.start()
    stream = connect_stream(server.url, timeout=5)
    wait_until(lambda: len(server._admitting) == 1)  # accepted, waiting for Hello
    server.stop()
    hello = Session(Role.CLIENT, peer_id="late")
    hello.start(0.0)
    try:
        write_all(stream, hello.data_to_send())
    except Exception:
        pass  # the stream may already be gone: that is a refusal too
    data = bytearray()
    buf = bytearray(65536)
    with gevent.Timeout(5):
        while True:
            try:
                n = stream.recv_into(memoryview(buf))
            except Exception:
                break
            if not n:
                break
            data += buf[:n]
    stream.close()
    assert [e.WhichOneof("kind") for e in envelopes(bytes(data))] in ([], ["close"])
    assert server.connections == []


def _service_declaring(name, *, server_streaming=False, client_streaming=False, pattern=None):
    """A one-method service built at test time, its method declared as asked."""
    from google.protobuf import descriptor_pb2, descriptor_pool

    from onedrive_rpc import options_pb2

    file = descriptor_pb2.FileDescriptorProto(
        name=f"test_declarations/{name}.proto", package=f"decl.{name}", syntax="proto3",
        dependency=["onedrive_rpc/options.proto"])
    file.message_type.add(name="M")
    method = file.service.add(name="Svc").method.add(
        name="Odd", input_type=f".decl.{name}.M", output_type=f".decl.{name}.M",
        server_streaming=server_streaming, client_streaming=client_streaming)
    if pattern is not None:
        method.options.Extensions[options_pb2.pattern] = pattern
    descriptor_pool.Default().Add(file)
    return descriptor_pool.Default().FindServiceByName(f"decl.{name}.Svc")


@pytest.mark.parametrize("name,kwargs,message", [
    ("stream_notification", dict(server_streaming=True, pattern=3),
     "decl.stream_notification.Svc.Odd: declared NOTIFICATION but returns a stream"),
    ("unary_stream", dict(pattern=2),
     "decl.unary_stream.Svc.Odd: declared SERVER_STREAM but does not return a stream"),
    ("stream_pubsub", dict(server_streaming=True, pattern=4),
     "decl.stream_pubsub.Svc.Odd: declared PUBLISH_SUBSCRIBE but returns a stream"),
    ("client_stream", dict(client_streaming=True),
     "decl.client_stream.Svc.Odd: client streaming is not a supported pattern"),
])
def test_a_service_whose_declarations_make_no_sense_is_refused_naming_the_method(name, kwargs, message):
    descriptor = _service_declaring(name, **kwargs)

    class Odd(rpc.Service):
        pass

    Odd.descriptor = descriptor
    server = rpc.Server("inproc://declarations")
    with pytest.raises(ValueError) as info:
        server.add_service(Odd())
    assert str(info.value) == message
    with pytest.raises(ValueError):
        rpc.Client(None, descriptor)  # the client refuses it the same way
