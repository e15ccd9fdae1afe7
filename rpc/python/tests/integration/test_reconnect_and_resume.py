"""A connection cut in the middle of calls comes back by itself and resumes
its session: every call completes, and no handler runs twice."""
from __future__ import annotations

import gevent
import pytest
from gevent.event import AsyncResult

import onedrive_rpc as rpc
from onedrive_rpc.testing.helpers import wait_until
from onedrive_rpc.testing import echo_pb2
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.faults import FaultProxy
from onedrive_rpc.testing.process import ServerProcess

Msg = echo_pb2.Msg
HB = rpc.Heartbeat(interval=0.2, misses=3)


@pytest.fixture
def served(url):
    """An EchoService in this process (to count handler runs) behind a proxy."""
    server = rpc.Server(url, heartbeat=HB)
    service = EchoService()
    server.add_service(service)
    server.start()
    proxy = FaultProxy(server.url).start()
    yield server, service, proxy
    proxy.stop()
    server.stop()


def test_calls_in_flight_complete_once_across_a_cut(served, peers):
    server, service, proxy = served
    resumed, lost = AsyncResult(), AsyncResult()
    server_resumed = AsyncResult()
    server.on_peer_resumed(server_resumed.set)
    peer = peers(proxy.url, heartbeat=HB)
    peer.on_resumed(resumed.set)
    peer.on_lost(lost.set)
    session = peer.session_id
    client = rpc.Client(peer, ECHO)
    futures = [client.sleep.future(Msg(text=str(i), delay=0.3), timeout=20) for i in range(50)]
    wait_until(lambda: service.calls["sleep"] == 50, timeout=10)
    proxy.cut()  # every call is running on the server; none has answered
    assert [f.get(timeout=20).text for f in futures] == [str(i) for i in range(50)]
    assert service.calls["sleep"] == 50  # no handler ran twice
    assert resumed.get(timeout=5) == session == peer.session_id
    assert isinstance(lost.get(timeout=5), rpc.PeerLost)
    assert server_resumed.get(timeout=5).name
    assert client.echo(Msg(text="still the same session"), timeout=5).text == "still the same session"


@pytest.mark.parametrize("cut_after", [3, 50, 700, 4000, 20000])
def test_a_cut_at_any_byte_loses_and_duplicates_nothing(served, peers, cut_after):
    server, service, proxy = served
    peer = peers(proxy.url, heartbeat=HB)
    client = rpc.Client(peer, ECHO)
    assert client.echo(Msg(text="warm"), timeout=5).text == "warm"
    proxy.cut_after(cut_after)  # mid-frame, mid-handshake or mid-batch
    data = [bytes([i]) * 1000 for i in range(40)]
    futures = [client.echo.future(Msg(data=d), timeout=20) for d in data]
    assert [f.get(timeout=20).data for f in futures] == data
    assert service.calls["echo"] == 41
    assert not peer.closed


def test_a_restarted_server_is_a_new_session_clearly_reported(tmp_path, peers):
    url = f"unix://{tmp_path}/restart.sock"
    reconnected = AsyncResult()
    with ServerProcess(url) as first:
        peer = peers(first.url, heartbeat=HB)
        peer.on_reconnected(reconnected.set)
        old_session = peer.session_id
        client = rpc.Client(peer, ECHO)
        in_flight = client.sleep.future(Msg(delay=60))
        gevent.sleep(0.05)
        first.kill()
        with pytest.raises(rpc.PeerLost, match="is gone") as info:
            in_flight.get(timeout=5)  # at once: nobody listens any more
        assert "session ended" in info.value.message
    with ServerProcess(url):
        new_session = reconnected.get(timeout=10)
        assert new_session != old_session and peer.session_id == new_session
        assert client.echo(Msg(text="back"), timeout=5).text == "back"


def test_without_reconnect_a_cut_ends_the_peer(served, peers):
    server, service, proxy = served
    peer = peers(proxy.url, heartbeat=HB, reconnect=rpc.Reconnect(enabled=False))
    client = rpc.Client(peer, ECHO)
    future = client.sleep.future(Msg(delay=5))
    wait_until(lambda: service.calls["sleep"] == 1)
    proxy.cut()
    with pytest.raises(rpc.PeerLost):
        future.get(timeout=2)
    assert peer.closed


def test_after_the_grace_period_the_session_is_gone(url, peers):
    server = rpc.Server(url, heartbeat=HB, session_grace=0.3)
    server.add_service(EchoService())
    server.start()
    proxy = FaultProxy(server.url).start()
    try:
        reconnected = AsyncResult()
        peer = peers(proxy.url, heartbeat=HB, timeout=0.5)
        peer.on_reconnected(reconnected.set)
        client = rpc.Client(peer, ECHO)
        stranded = client.sleep.future(Msg(delay=30))
        gevent.sleep(0.05)
        proxy.blackhole()  # reconnects get nowhere...
        proxy.cut()
        with pytest.raises(rpc.PeerLost):
            stranded.get(timeout=5)  # ...so the call fails within the liveness bound
        wait_until(lambda: not server.connections, timeout=10)  # the server's grace ran out
        proxy.heal()
        new_session = reconnected.get(timeout=10)  # a new session, said so
        assert peer.session_id == new_session
        assert client.echo(Msg(text="fresh start"), timeout=5).text == "fresh start"
    finally:
        proxy.stop()
        server.stop()


def test_a_frozen_client_is_lost_then_resumes_when_it_thaws():
    from onedrive_rpc.testing.process import ClientProcess
    server = rpc.Server("tcp://127.0.0.1:0", heartbeat=HB)
    server.add_service(EchoService())
    connected, lost, resumed = AsyncResult(), AsyncResult(), AsyncResult()
    server.on_peer_connected(connected.set)
    server.on_peer_lost(lambda peer, reason: lost.set(reason))
    server.on_peer_resumed(resumed.set)
    server.start()
    try:
        with ClientProcess(server.url, heartbeat=(HB.interval, HB.misses)) as client:
            connected.get(timeout=10)
            session = next(iter(server._sessions))
            client.stop()
            assert "no sign of life" in lost.get(timeout=5).message
            wait_until(lambda: server.connections[0].suspended)
            client.cont()
            assert resumed.get(timeout=10).pid == client.pid
            assert list(server._sessions) == [session]  # the same session, not a new one
            assert not server.connections[0].suspended and len(server.connections) == 1
    finally:
        server.stop()


def test_closing_while_disconnected_still_ends_the_session_in_order(served):
    server, _, proxy = served
    disconnected = AsyncResult()
    server.on_peer_disconnected(lambda peer, reason: disconnected.set(reason))
    lost = AsyncResult()
    peer = rpc.connect(proxy.url, heartbeat=HB)
    peer.on_lost(lost.set)
    assert rpc.Client(peer, ECHO).echo(Msg(text="hi"), timeout=5).text == "hi"
    proxy.blackhole()  # reconnects get nowhere...
    proxy.cut()
    lost.get(timeout=5)
    proxy.heal()  # ...until now, when the peer is closed
    peer.close()
    # The server hears an orderly close at once, not a loss after its 10 s grace.
    reason = disconnected.get(timeout=5)
    assert "peer closed the connection" in reason.message
    wait_until(lambda: not server.connections)
