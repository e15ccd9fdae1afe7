"""Admission under bursts and abuse: each connection counted once, suspended
sessions in a pool of their own (not connection slots), per-peer limits.
The attackers run in child processes, as they would."""
from __future__ import annotations

import json
import os
import sys

import gevent
import pytest
from gevent import subprocess

import onedrive_rpc as rpc
from onedrive_rpc.logs import Throttled
from onedrive_rpc.testing.echo_pb2 import Msg
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.helpers import child_env, wait_until

_CHILD_ENV = child_env()

# Opens `count` sessions at once (all connects in flight together) and
# prints how many were refused and how each failed.
_BURST = """
import json, sys, gevent, onedrive_rpc as rpc
url, count = sys.argv[1], int(sys.argv[2])
peers, refused = [], []
def one():
    try:
        peers.append(rpc.connect(url, timeout=20, reconnect=rpc.Reconnect(enabled=False)))
    except rpc.RpcError as exc:
        refused.append(exc.code.name + ": " + exc.message)
gevent.joinall([gevent.spawn(one) for _ in range(count)], timeout=60)
print(json.dumps({"connected": len(peers), "refused": refused}), flush=True)
sys.stdin.read()  # hold them until the parent is done counting
"""

# Handshakes `count` times, each time resetting the connection (RST) right after.
_RESET = """
import socket, struct, sys, onedrive_rpc as rpc
url, count = sys.argv[1], int(sys.argv[2])
for _ in range(count):
    peer = rpc.connect(url, timeout=20, reconnect=rpc.Reconnect(enabled=False))
    sock = peer._connection.stream._sock
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
print("done", flush=True)
"""


def _run(code: str, *args: str, stdin=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stdin=stdin, env=_CHILD_ENV, text=True)


@pytest.fixture
def served(servers):
    return lambda **limits: servers("tcp://127.0.0.1:0", EchoService(),
                                    limits=rpc.Limits(**limits))


def test_a_burst_of_connects_under_the_limit_is_never_refused(served):
    server = served(max_connections=1024)
    children = [_run(_BURST, server.url, "100", stdin=subprocess.PIPE) for _ in range(8)]
    try:
        with gevent.Timeout(90):
            results = [json.loads(child.stdout.readline()) for child in children]
        refused = [reason for result in results for reason in result["refused"]]
        assert refused == [] and sum(r["connected"] for r in results) == 800
        assert len(server.connections) == 800
    finally:
        for child in children:
            child.kill()
            child.wait()


def test_the_connection_limit_still_holds(served):
    server = served(max_connections=20)
    child = _run(_BURST, server.url, "30", stdin=subprocess.PIPE)
    try:
        with gevent.Timeout(60):
            result = json.loads(child.stdout.readline())
        assert result["connected"] == 20 and len(result["refused"]) == 10
        assert all("RESOURCE_EXHAUSTED: server has too many connections (20)" == reason
                   for reason in result["refused"])
    finally:
        child.kill()
        child.wait()


def test_peers_that_reset_after_their_handshake_lock_nobody_out(served):
    # Each reset leaves a suspended session (it may still resume): those
    # must not hold connection slots, and their pool stays bounded.
    server = served(max_connections=16, max_suspended_sessions=8)
    child = _run(_RESET, server.url, "100")
    with gevent.Timeout(60):
        assert child.stdout.readline().strip() == "done"
    child.wait()
    with gevent.Timeout(1.0):  # a new client gets in, and is served, at once
        peer = rpc.connect(server.url, timeout=1.0)
        assert rpc.Client(peer, ECHO).echo(Msg(text="in"), timeout=1.0).text == "in"
    suspended = [conn for conn in server.connections if conn.suspended]
    assert len(suspended) <= 8
    peer.close()


def test_connections_per_peer_are_bounded(served, tmp_path):
    server = rpc.Server(f"unix://{tmp_path}/s.sock",
                        limits=rpc.Limits(max_connections_per_peer=2))
    server.add_service(EchoService())
    server.start()
    try:
        peers = [rpc.connect(server.url, timeout=5) for _ in range(2)]
        with pytest.raises(rpc.RpcError) as info:
            rpc.connect(server.url, timeout=5)
        assert info.value.code == rpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"too many connections from uid {os.getuid()} (2 per peer)" in info.value.message
        peers.pop().close()
        # The slot is free again once the server saw the close.
        wait_until(lambda: len(server.connections) == 1)
        rpc.connect(server.url, timeout=5).close()
    finally:
        server.stop()


def test_repeated_warnings_are_rate_limited_with_a_count(caplog):
    import logging
    now = [100.0]
    warn = Throttled(logging.getLogger("test.throttled"), every=1.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.throttled"):
        for i in range(50):
            warn.warning("refused", "refusing %s", i)
        warn.warning("other", "another kind")
        now[0] += 1.5
        warn.warning("refused", "refusing %s", "late")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["refusing 0", "another kind",
                        "refusing late (and 49 more like it in the last 2s)"]


# Holds `count` idle sessions asking for a 10 ms heartbeat.
_FAST_HEARTBEATS = """
import sys, gevent, onedrive_rpc as rpc
url, count = sys.argv[1], int(sys.argv[2])
peers = [rpc.connect(url, timeout=20, heartbeat=rpc.Heartbeat(interval=0.01, misses=50))
         for _ in range(count)]
print(len(peers), flush=True)
sys.stdin.readline()
"""


def test_peers_asking_for_fast_heartbeats_get_the_servers_minimum(served):
    import time
    server = served(min_heartbeat_interval=0.05)
    child = _run(_FAST_HEARTBEATS, server.url, "100", stdin=subprocess.PIPE)
    try:
        with gevent.Timeout(60):
            assert int(child.stdout.readline()) == 100
        wait_until(lambda: len(server.connections) == 100)
        assert {conn.session.liveness.interval for conn in server.connections} == {0.05}
        # Idle, the server spends a small part of a core on 100 such peers
        # (at the 10 ms they asked for: nearly all of one).
        cpu, wall = time.process_time(), time.monotonic()
        gevent.sleep(2.0)  # the measurement window itself, not a wait for a condition
        share = (time.process_time() - cpu) / (time.monotonic() - wall)
        assert share < 0.30, f"server used {share:.0%} of a core"
    finally:
        child.kill()
        child.wait()
