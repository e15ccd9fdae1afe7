"""A hostile peer cannot make the server hold memory it has not sent (issue
10), and metadata over the limits is refused with a clear error both ways.

The attacker runs in its own process; the server, and the bystander whose
calls must keep working, in this one, whose resident memory is measured.
"""
from __future__ import annotations

import json
import os
import sys
import textwrap

import gevent
import pytest
from gevent import subprocess

import onedrive_rpc as rpc
from onedrive_rpc.core import wire_pb2
from onedrive_rpc.core.framing import DEFAULT_MAX_FRAME_SIZE
from onedrive_rpc.core.metadata import DEFAULT_MAX_METADATA_ENTRIES
from onedrive_rpc.errors import MetadataTooLarge
from onedrive_rpc.handshake import write_all
from onedrive_rpc.testing import echo_pb2
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.helpers import child_env, framed, read_envelopes, rss_bytes, wait_until
from onedrive_rpc.transport import connect_stream

Msg = echo_pb2.Msg
ECHO_METHOD = "/onedrive_rpc.testing.Echo/Echo"
CONNECTIONS = 32
MB = 1_000_000

# Opens `count` connections that each send only a 4-byte prefix announcing
# `announced` bytes: right away, or once a handshake is done (a sans-IO
# Session over a blocking socket).
ATTACKER = textwrap.dedent("""
    import socket, sys
    from onedrive_rpc.core.framing import frame_header
    from onedrive_rpc.testing.helpers import blocking_handshake

    host, port, count, announced, handshake = sys.argv[1:6]
    prefix = frame_header(int(announced))
    held = []
    for i in range(int(count)):
        sock = socket.create_connection((host, int(port)))
        if handshake == "yes":
            blocking_handshake(sock, "attacker-%d" % i)
        sock.sendall(prefix)
        held.append(sock)
    print("READY", flush=True)
    sys.stdin.read()  # hold every connection until told to go
""")


@pytest.fixture
def tcp_server():
    # Slow heartbeats: attackers that handshake and go silent are not
    # dropped as lost before the measurement, however slow the machine.
    server = rpc.Server("tcp://127.0.0.1:0", heartbeat=rpc.Heartbeat(interval=10.0))
    service = EchoService()
    server.add_service(service)
    server.start()
    server.service = service
    yield server
    server.stop()


# After a handshake, each of `count` connections sends a prefix announcing
# 16 MiB and then `sent` bytes of that frame, and holds it there; prints
# the Close statuses the server sent, one JSON list.
TRICKLER = textwrap.dedent("""
    import json, socket, sys
    from onedrive_rpc.core.framing import DEFAULT_MAX_FRAME_SIZE, frame_header
    from onedrive_rpc.testing.helpers import blocking_handshake, envelopes

    host, port, count, sent = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    held, closes = [], []
    chunk = frame_header(DEFAULT_MAX_FRAME_SIZE) + bytes(sent)
    for i in range(count):
        sock = socket.create_connection((host, port))
        blocking_handshake(sock, "trickler-%d" % i)
        try:
            sock.sendall(chunk)
        except OSError:
            pass  # closed on us: its Close is read below
        held.append(sock)
    for sock in held:
        sock.settimeout(0.5)
        data = b""
        try:
            while True:
                more = sock.recv(65536)
                if not more:
                    break
                data += more
        except OSError:
            pass
        try:
            closes += [[e.close.status.code, e.close.status.message] for e in envelopes(data)
                       if e.WhichOneof("kind") == "close"]
        except ValueError:
            pass
    print(json.dumps(closes), flush=True)
    sys.stdin.read()  # hold every connection until told to go
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_peers_trickling_large_frames_hold_no_more_than_the_servers_read_budget():
    """32 connections each send 12 MiB of a 16 MiB frame and stop there:
    the server holds at most max_server_read_bytes for them (here 64 MiB;
    it held ~512 MiB before), closes those that would need more with
    RESOURCE_EXHAUSTED, and serves a bystander meanwhile."""
    budget = 64 * 1024 * 1024
    server = rpc.Server("tcp://127.0.0.1:0", heartbeat=rpc.Heartbeat(interval=10.0),
                        limits=rpc.Limits(max_server_read_bytes=budget))
    server.add_service(EchoService())
    server.start()
    peer = rpc.connect(server.url, timeout=5)
    client = rpc.Client(peer, ECHO)
    assert client.echo(Msg(text="warm"), timeout=5).text == "warm"
    host, port = server.url[len("tcp://"):].rsplit(":", 1)
    before = rss_bytes()
    attacker = subprocess.Popen(
        [sys.executable, "-c", TRICKLER, host, port, str(CONNECTIONS), str(12 * 1024 * 1024)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env())
    try:
        with gevent.Timeout(60, AssertionError("the attacker did not finish")):
            closes = json.loads(attacker.stdout.readline())
        grown = rss_bytes() - before
        assert grown < budget + 32 * MB, f"RSS grew by {grown / MB:.0f} MB"
        assert closes and all(code == rpc.StatusCode.RESOURCE_EXHAUSTED for code, _ in closes)
        assert "(max_server_read_bytes)" in closes[0][1]
        assert len(closes) < CONNECTIONS  # those within the budget go on
        assert client.echo(Msg(text="still here"), timeout=5).text == "still here"
    finally:
        attacker.stdin.close()
        attacker.kill()
        attacker.wait()
        peer.close()
        server.stop()


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
@pytest.mark.parametrize("handshake", ["no", "yes"], ids=["before-handshake", "after-handshake"])
def test_length_prefixes_alone_do_not_make_the_server_hold_what_they_announce(tcp_server, handshake):
    peer = rpc.connect(tcp_server.url, timeout=5)
    client = rpc.Client(peer, ECHO)
    assert client.echo(Msg(text="warm"), timeout=5).text == "warm"
    host, port = tcp_server.url[len("tcp://"):].rsplit(":", 1)
    before = rss_bytes()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    attacker = subprocess.Popen(
        [sys.executable, "-c", ATTACKER, host, port, str(CONNECTIONS), str(DEFAULT_MAX_FRAME_SIZE),
         handshake],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        with gevent.Timeout(30, AssertionError("the attacker did not get its connections up")):
            assert attacker.stdout.readline() == b"READY\n"
        if handshake == "yes":  # all are connections now (+ the bystander)
            wait_until(lambda: len(tcp_server.connections) == CONNECTIONS + 1, timeout=10)
        gevent.sleep(0.5)  # every prefix read
        grown = rss_bytes() - before
        assert grown < 16 * MB, f"RSS grew by {grown / MB:.0f} MB for {CONNECTIONS} length prefixes"
        assert client.echo(Msg(text="still here"), timeout=5).text == "still here"
    finally:
        attacker.stdin.close()
        attacker.kill()
        attacker.wait()
        peer.close()


# ------------------------------------------------------------- metadata

def test_a_call_with_metadata_over_the_limits_fails_at_the_call_site(tcp_server):
    peer = rpc.connect(tcp_server.url, timeout=5)
    client = rpc.Client(peer, ECHO)
    too_many = {f"k{i}": "v" for i in range(DEFAULT_MAX_METADATA_ENTRIES + 1)}
    with pytest.raises(rpc.RpcError) as info:
        client.echo(Msg(text="x"), timeout=5, metadata=too_many)
    assert info.value.code == rpc.StatusCode.RESOURCE_EXHAUSTED
    assert "request metadata of 65 entries exceeds the limit of 64 entries" in info.value.message
    with pytest.raises(rpc.RpcError) as info:
        peer.notify(ECHO_METHOD, b"", metadata={"k": "v" * 9000})
    assert info.value.code == rpc.StatusCode.RESOURCE_EXHAUSTED
    # Nothing was sent: the connection is fine.
    assert client.echo(Msg(text="y"), timeout=5, metadata={"k": "v"}).text == "y"
    peer.close()


def test_hello_metadata_over_the_limits_is_refused_before_connecting(tcp_server):
    with pytest.raises(MetadataTooLarge, match="hello metadata of 9001 bytes"):
        rpc.connect(tcp_server.url, timeout=5, metadata={"k": "v" * 9000})


def _raw_hello(metadata=None) -> bytes:
    env = wire_pb2.Envelope()
    env.hello.version = wire_pb2.PROTOCOL_VERSION_1
    env.hello.identity.peer_id = "raw"
    env.hello.metadata.update(metadata or {})
    return framed(env)


def test_a_raw_hello_with_too_much_metadata_is_closed_with_resource_exhausted(tcp_server):
    stream = connect_stream(tcp_server.url, timeout=5)
    hello = _raw_hello({"k": "v" * (14 * 1024 * 1024)})
    write_all(stream, [hello[:100]])
    [close] = read_envelopes(stream, 1, closed=True)
    # A 14 MiB Hello is refused by its prefix alone, before the handshake.
    assert close.close.status.code == rpc.StatusCode.INTERNAL
    assert "before the handshake" in close.close.status.message
    stream.close()
    stream = connect_stream(tcp_server.url, timeout=5)
    write_all(stream, [_raw_hello({f"k{i}": "v" for i in range(1000)})])
    [close] = read_envelopes(stream, 1, closed=True)
    assert close.close.status.code == rpc.StatusCode.RESOURCE_EXHAUSTED
    assert close.close.status.message == "hello metadata of 1000 entries exceeds the limit of 64 entries"
    stream.close()


def test_a_raw_request_with_too_much_metadata_is_answered_without_running_the_handler(tcp_server):
    stream = connect_stream(tcp_server.url, timeout=5)
    write_all(stream, [_raw_hello()])
    [welcome] = read_envelopes(stream, 1)
    assert welcome.WhichOneof("kind") == "welcome"
    env = wire_pb2.Envelope()
    env.payload = Msg(text="x").SerializeToString()
    env.seq = 1
    env.request.call_id = 1
    env.request.method = ECHO_METHOD
    env.request.metadata.update({"k": "v" * (1024 * 1024)})
    write_all(stream, [framed(env)])
    [answer] = read_envelopes(stream, 1)
    assert answer.response.call_id == 1
    assert answer.response.status.code == rpc.StatusCode.RESOURCE_EXHAUSTED
    assert answer.response.status.message == \
        "request metadata of 1048577 bytes exceeds the limit of 8192 bytes"
    assert tcp_server.service.calls["echo"] == 0
    stream.close()


def test_limits_set_the_metadata_limits_of_each_side():
    server = rpc.Server("tcp://127.0.0.1:0", limits=rpc.Limits(max_metadata_entries=2))
    server.add_service(EchoService())
    server.start()
    try:
        # The client allows more than the server: the server answers.
        peer = rpc.connect(server.url, timeout=5, limits=rpc.Limits(max_metadata_entries=100))
        client = rpc.Client(peer, ECHO)
        with pytest.raises(rpc.RpcError) as info:
            client.echo(Msg(text="x"), timeout=5, metadata={"a": "1", "b": "2", "c": "3"})
        assert info.value.code == rpc.StatusCode.RESOURCE_EXHAUSTED
        assert info.value.message == "request metadata of 3 entries exceeds the limit of 2 entries"
        assert client.echo(Msg(text="y"), timeout=5, metadata={"a": "1", "b": "2"}).text == "y"
        peer.close()
        # A client allowing less refuses locally.
        peer = rpc.connect(server.url, timeout=5, limits=rpc.Limits(max_metadata_size=4))
        with pytest.raises(rpc.RpcError, match="request metadata of 5 bytes exceeds the limit of 4 bytes"):
            rpc.Client(peer, ECHO).echo(Msg(text="z"), timeout=5, metadata={"k": "long"})
        peer.close()
    finally:
        server.stop()
