"""Dead and hung peers are found within interval x misses; healthy ones never
are. The peer is always another OS process (or behind a proxy)."""
from __future__ import annotations

import time

import gevent
import pytest
from gevent.event import AsyncResult

import onedrive_rpc as rpc
from onedrive_rpc.testing import echo_pb2
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.faults import FaultProxy
from onedrive_rpc.testing.process import ClientProcess, ServerProcess

Msg = echo_pb2.Msg
HB = rpc.Heartbeat(interval=0.2, misses=3)
BOUND = HB.timeout
# Scheduling noise on a shared 2-core machine: how late a detection may be.
SLACK = 0.5


def failure_time(client, request, start_fault):
    """Start a call, inject the fault, return (seconds until the call failed, error)."""
    future = client.sleep.future(request)
    gevent.sleep(0.05)  # the call is on the wire and being served
    assert not future.ready()
    start = time.monotonic()
    start_fault()
    with pytest.raises(rpc.RpcError) as info:
        future.get(timeout=BOUND + 10)
    return time.monotonic() - start, info.value


@pytest.fixture(params=["tcp", "unix"])
def proc_url(request, tmp_path):
    return "tcp://127.0.0.1:0" if request.param == "tcp" else f"unix://{tmp_path}/live.sock"


def test_a_frozen_server_is_lost_within_the_bound(proc_url, peers):
    with ServerProcess(proc_url) as server:
        peer = peers(server.url, heartbeat=HB)
        lost = AsyncResult()
        peer.on_lost(lost.set)
        try:
            elapsed, error = failure_time(rpc.Client(peer, ECHO), Msg(delay=60), server.stop)
        finally:
            server.kill()  # its call would hold a graceful stop for seconds
        assert isinstance(error, rpc.PeerLost) and "no sign of life" in error.message
        assert BOUND - HB.interval <= elapsed <= BOUND + SLACK, elapsed
        assert "no sign of life" in lost.get(timeout=5).message


def test_a_killed_server_is_lost_at_once(proc_url, peers):
    with ServerProcess(proc_url) as server:
        client = rpc.Client(peers(server.url, heartbeat=HB), ECHO)
        elapsed, error = failure_time(client, Msg(delay=60), server.kill)
    assert isinstance(error, rpc.PeerLost)
    assert elapsed <= SLACK, elapsed  # the kernel closes its sockets: no need to wait


def test_a_server_whose_event_loop_is_blocked_is_lost_within_the_bound(proc_url, peers):
    with ServerProcess(proc_url) as server:
        peer = peers(server.url, heartbeat=HB)
        client = rpc.Client(peer, ECHO)
        hog = client.hog.future(Msg(delay=BOUND + 3))  # CPU-bound code in the server
        start = time.monotonic()
        with pytest.raises(rpc.PeerLost, match="no sign of life"):
            hog.get(timeout=BOUND + 10)
        elapsed = time.monotonic() - start
        assert elapsed <= BOUND + SLACK, elapsed
        server.kill()


def test_a_black_holed_link_is_lost_within_the_bound(proc_url, peers):
    with ServerProcess(proc_url) as server, FaultProxy(server.url) as proxy:
        client = rpc.Client(peers(proxy.url, heartbeat=HB), ECHO)
        assert client.echo(Msg(text="through the proxy"), timeout=5).text == "through the proxy"
        elapsed, error = failure_time(client, Msg(delay=60), proxy.blackhole)
        assert isinstance(error, rpc.PeerLost) and "no sign of life" in error.message
        assert BOUND - HB.interval <= elapsed <= BOUND + SLACK, elapsed
        assert proxy.dropped > 0  # heartbeats went into the hole
        server.kill()


def test_a_frozen_client_is_lost_by_the_server_within_the_bound():
    server = rpc.Server("tcp://127.0.0.1:0", heartbeat=HB)
    server.add_service(EchoService())
    connected, lost = AsyncResult(), AsyncResult()
    server.on_peer_connected(connected.set)
    server.on_peer_lost(lambda peer, reason: lost.set((peer, reason, time.monotonic())))
    server.start()
    try:
        with ClientProcess(server.url, heartbeat=(HB.interval, HB.misses)) as client:
            who = connected.get(timeout=10)
            assert who.name == "test-client" and who.pid == client.pid
            start = time.monotonic()
            client.stop()
            try:
                peer, reason, at = lost.get(timeout=BOUND + 10)
            finally:
                client.cont()
        assert peer.pid == client.pid and "no sign of life" in reason.message
        assert BOUND - HB.interval <= at - start <= BOUND + SLACK, at - start
    finally:
        server.stop()


def test_a_busy_healthy_peer_is_never_declared_lost(proc_url, peers):
    with ServerProcess(proc_url) as server:
        peer = peers(server.url, heartbeat=rpc.Heartbeat(interval=0.05, misses=4))
        client = rpc.Client(peer, ECHO)
        done = [0]
        deadline = time.monotonic() + 2.0  # 10x the 0.2 s bound of heavy load

        def worker():
            while time.monotonic() < deadline:
                client.echo(Msg(data=b"x" * 512), timeout=5)
                done[0] += 1

        gevent.joinall([gevent.spawn(worker) for _ in range(64)], timeout=20, raise_error=True)
        assert not peer.closed and done[0] > 1000


def test_a_handler_running_ten_times_the_bound_keeps_its_peer(proc_url, peers):
    with ServerProcess(proc_url) as server:
        peer = peers(server.url, heartbeat=HB)
        start = time.monotonic()
        reply = rpc.Client(peer, ECHO).sleep(Msg(text="patience", delay=10 * BOUND), timeout=30)
        assert reply.text == "patience" and time.monotonic() - start >= 10 * BOUND
        assert not peer.closed


def test_a_blocked_loop_of_our_own_is_reported_and_not_blamed_on_the_peer(
        peers, caplog, monkeypatch):
    from onedrive_rpc.driver import ticker
    # Reported once a second at most: another test's report must not hide ours.
    monkeypatch.setattr(ticker, "_last_blocked_report", [float("-inf")])
    server = rpc.Server("tcp://127.0.0.1:0", heartbeat=HB)
    server.add_service(EchoService())
    server.start()
    try:
        peer = peers(server.url, heartbeat=HB)
        client = rpc.Client(peer, ECHO)
        assert client.echo(Msg(text="before"), timeout=5).text == "before"
        time.sleep(BOUND + 0.3)  # block this whole process, both ends with it
        assert client.echo(Msg(text="after"), timeout=5).text == "after"
        assert not peer.closed
        assert "event loop of this process was blocked" in caplog.text
    finally:
        server.stop()


def test_settings_are_validated():
    with pytest.raises(ValueError):
        rpc.Heartbeat(interval=0)
    with pytest.raises(ValueError):
        rpc.Heartbeat(misses=0)
    with pytest.raises(ValueError, match="misses must be in 2..1000, not 1"):
        rpc.Heartbeat(misses=1)
