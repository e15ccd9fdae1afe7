"""Request/response end to end, over every transport, server in another process."""
from __future__ import annotations

import re

import gevent
import pytest

import onedrive_rpc as rpc
from onedrive_rpc.serialize import LARGE_FIELD
from onedrive_rpc.testing import echo_pb2
from onedrive_rpc.testing.echo_service import ECHO

Msg = echo_pb2.Msg
ECHO_PATH = "/onedrive_rpc.testing.Echo/"


def test_echo_call_and_future(remote_url, peers):
    client = rpc.Client(peers(remote_url), ECHO)
    assert client.echo(Msg(text="hi", data=b"\x00\x01"), timeout=5).data == b"\x00\x01"
    future = client.echo.future(Msg(text="later"), timeout=5)
    assert future.get(timeout=5).text == "later"
    assert future.ready() and future.successful()


def test_large_messages_round_trip(remote_url, peers):
    client = rpc.Client(peers(remote_url), ECHO)
    for size in (0, 1, 32 * 1024 - 10, 32 * 1024, 1024 * 1024, 8 * 1024 * 1024):
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        assert client.echo(Msg(data=data), timeout=20).data == data


def test_large_bytes_fields_cross_whole_with_the_rest_of_their_message(remote_url, peers):
    """A bytes field of LARGE_FIELD or more is sent outside protobuf's
    encoder (onedrive_rpc/serialize.py), requests, replies and stream items
    alike; a client interceptor still sees the payload as bytes."""
    seen = []

    def record(action, proceed):
        seen.append((type(action.payload), len(action.payload)))
        return proceed()

    client = rpc.Client(peers(remote_url, interceptors=[record]), ECHO)
    for size in (LARGE_FIELD - 1, LARGE_FIELD, 3 * LARGE_FIELD + 5):
        data = bytes(range(256)) * (size // 256) + b"y" * (size % 256)
        request = Msg(text="t" * 300, data=data, delay=0.001, count=3)
        assert client.echo(request, timeout=20) == request
        items = list(client.count(request, timeout=20))
        assert [(m.text, m.data) for m in items] == [(str(i), data) for i in range(3)]
        assert seen[-2:] == [(bytes, request.ByteSize())] * 2


def test_1000_concurrent_calls_on_one_connection(remote_url, peers):
    peer = peers(remote_url)
    client = rpc.Client(peer, ECHO)
    futures = [client.sleep.future(Msg(text=str(i), delay=0.05 * (i % 7)), timeout=30)
               for i in range(1000)]
    assert [f.get(timeout=30).text for f in futures] == [str(i) for i in range(1000)]
    # And from 1000 greenlets making blocking calls at once.
    results = {}

    def call(i):
        results[i] = client.sleep(Msg(text=f"g{i}", delay=0.01 * (i % 5)), timeout=30).text

    gevent.joinall([gevent.spawn(call, i) for i in range(1000)], timeout=30, raise_error=True)
    assert results == {i: f"g{i}" for i in range(1000)}
    assert not peer.closed


def _code(call, *args, **kwargs):
    with pytest.raises(rpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value


def test_each_error_code_for_real(remote_url, peers):
    peer = peers(remote_url)
    client = rpc.Client(peer, ECHO)
    raw = Msg(text="x").SerializeToString()

    err = _code(peer.call, "/no.such.Service/Echo", raw, Msg.FromString, timeout=5)
    assert err.code == rpc.StatusCode.UNIMPLEMENTED and "unknown service 'no.such.Service'" in err.message
    err = _code(peer.call, ECHO_PATH + "Nope", raw, Msg.FromString, timeout=5)
    assert err.code == rpc.StatusCode.UNIMPLEMENTED and "has no method 'Nope'" in err.message
    err = _code(client.missing, Msg(), timeout=5)
    assert err.code == rpc.StatusCode.UNIMPLEMENTED and "Missing is not implemented" in err.message

    # A string field holding bad UTF-8 does not parse as Msg.
    err = _code(peer.call, ECHO_PATH + "Echo", b"\x0a\x02\xff\xff", Msg.FromString, timeout=5)
    assert err.code == rpc.StatusCode.INVALID_ARGUMENT
    assert "onedrive_rpc.testing.Msg" in err.message

    err = _code(client.fail, Msg(text="disk full"), timeout=5)
    assert err.code == rpc.StatusCode.INTERNAL and err.details is None
    # The exception's text may hold secrets: the caller gets its type and an
    # id to find it in the server's log.
    assert re.fullmatch(r"RuntimeError \(error id [0-9a-f]{12}: the server's log has the "
                        r"details\)", err.message), err.message
    assert "disk full" not in err.message

    err = _code(client.sleep, Msg(delay=30), timeout=0.2)
    assert err.code == rpc.StatusCode.DEADLINE_EXCEEDED

    future = client.sleep.future(Msg(delay=30), timeout=10)
    assert future.cancel()
    err = _code(future.get, timeout=1)
    assert err.code == rpc.StatusCode.CANCELLED

    # The connection survived every error.
    assert client.echo(Msg(text="still here"), timeout=5).text == "still here"


def test_server_killed_mid_call_fails_at_once(server_process, peers):
    client = rpc.Client(peers(server_process.url), ECHO)
    assert client.echo(Msg(text="up"), timeout=5).text == "up"
    pending = [client.sleep.future(Msg(delay=60), timeout=60) for _ in range(10)]
    gevent.spawn_later(0.1, server_process.kill)
    with gevent.Timeout(5):  # at once: the kernel reports the dead socket
        err = _code(client.sleep, Msg(delay=60), timeout=60)
        assert err.code == rpc.StatusCode.UNAVAILABLE and isinstance(err, rpc.PeerLost)
        for future in pending:
            assert _code(future.get, timeout=5).code == rpc.StatusCode.UNAVAILABLE
    # A closed peer refuses new calls at once with the same code.
    assert _code(client.echo, Msg(), timeout=5).code == rpc.StatusCode.UNAVAILABLE


def test_error_text_and_traceback_only_when_the_server_opts_in(transport, url, peers):
    from onedrive_rpc.testing.echo_service import EchoService
    from onedrive_rpc.testing.process import ServerProcess
    if transport == "inproc":
        server = rpc.Server(url, include_error_details=True)
        server.add_service(EchoService())
        server.start()
        try:
            err = _code(rpc.Client(peers(url), ECHO).fail, Msg(text="boom"), timeout=5)
        finally:
            server.stop()
    else:
        with ServerProcess(url, args=["--error-details"]) as proc:
            err = _code(rpc.Client(peers(proc.url), ECHO).fail, Msg(text="boom"), timeout=5)
    assert err.code == rpc.StatusCode.INTERNAL and err.message == "RuntimeError: boom"
    assert "Traceback (most recent call last)" in err.details and "echo_service.py" in err.details


def test_wrong_request_type_is_refused_locally(remote_url, peers):
    client = rpc.Client(peers(remote_url), ECHO)
    with pytest.raises(TypeError, match="takes a onedrive_rpc.testing.Msg"):
        client.echo(echo_pb2.DESCRIPTOR, timeout=1)
