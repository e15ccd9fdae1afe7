"""Clients that fail over: rpc.connect([url, ...]). A peer whose server
dies (SIGKILL) starts a new session on the next one: calls in flight fail
UNAVAILABLE, subscriptions and consumers come back there; a server that
comes back within the grace is resumed, not left; the resume token never
reaches another server."""
from __future__ import annotations

import socket
import time

import gevent
import pytest
from gevent.event import AsyncResult, Event

import onedrive_rpc as rpc
from onedrive_rpc.testing import echo_pb2
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.faults import FaultProxy
from onedrive_rpc.testing.helpers import wait_until
from onedrive_rpc.testing.process import ServerProcess

Msg = echo_pb2.Msg
HB = rpc.Heartbeat(interval=0.2, misses=3)
CHILD_HB = (HB.interval, HB.misses)
#: Failing over after a SIGKILL: the loss is seen at once (the kernel resets
#: the connection), the first round starts without waiting; generous for CI.
MOVE_BOUND = HB.interval * HB.misses + 2.0


def echo(peer_or_server):
    return rpc.Client(peer_or_server, ECHO)


def dead_tcp_url() -> str:
    """A loopback port nobody listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


class RecordingProxy(FaultProxy):
    """A proxy that keeps every byte a client sends through it."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.received = bytearray()

    def forward(self, link, dst, data) -> None:
        if dst is link.streams[1]:  # towards the server
            self.received += data
        super().forward(link, dst, data)


@pytest.fixture
def local_servers(servers):
    """n EchoServices on loopback TCP in this process."""
    def make(n, **options):
        options.setdefault("heartbeat", HB)
        return [servers("tcp://127.0.0.1:0", EchoService(), **options) for _ in range(n)]
    return make


class Traffic:
    """Echo calls one after another until stopped; each ends, one way or
    the other, within its deadline: none is lost silently."""

    def __init__(self, client) -> None:
        self.client = client
        self.answered = 0
        self.failed = []
        self.sent = 0
        self._stop = Event()
        self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sent += 1
            text = str(self.sent)
            try:
                assert self.client.echo(Msg(text=text), timeout=5).text == text
                self.answered += 1
            except rpc.RpcError as exc:
                self.failed.append(exc)
                self._stop.wait(0.01)  # not connected yet: try again soon

    def stop(self) -> None:
        self._stop.set()
        self._greenlet.get(timeout=10)
        assert self.answered + len(self.failed) == self.sent


def test_a_killed_server_moves_the_peer_on_with_its_subscriptions_and_consumers(peers, capsys):
    with ServerProcess("tcp://127.0.0.1:0", heartbeat=CHILD_HB) as a, \
            ServerProcess("tcp://127.0.0.1:0", heartbeat=CHILD_HB) as b, \
            ServerProcess("tcp://127.0.0.1:0", heartbeat=CHILD_HB) as c:
        peer = peers([a.url, b.url, c.url], heartbeat=HB)
        assert peer.url == a.url and peer.urls == (a.url, b.url, c.url)
        lost, reconnected = AsyncResult(), AsyncResult()
        peer.on_lost(lost.set)
        peer.on_reconnected(reconnected.set)
        old_session = peer.session_id
        client = echo(peer)
        got, tasks = [], []
        arrived, worked = Event(), Event()
        client.changed.subscribe("f.>", lambda r: (got.append(r.message.text), arrived.set()),
                                 timeout=5)
        client.work.consume(lambda task, context: (tasks.append(task.text), worked.set()),
                            timeout=5)
        traffic = Traffic(client)
        wait_until(lambda: traffic.answered >= 20, timeout=10)
        in_flight = client.sleep.future(Msg(delay=60))
        killed = time.monotonic()
        a.kill()

        with pytest.raises(rpc.PeerLost) as info:
            in_flight.get(timeout=5)
        assert info.value.code == rpc.StatusCode.UNAVAILABLE
        new_session = reconnected.get(timeout=MOVE_BOUND)
        moved = time.monotonic() - killed
        assert isinstance(lost.get(timeout=1), rpc.PeerLost)
        assert peer.url == b.url and new_session == peer.session_id != old_session
        answered = traffic.answered
        wait_until(lambda: traffic.answered >= answered + 20, timeout=10)  # calls go on, on b
        traffic.stop()
        assert all(exc.code == rpc.StatusCode.UNAVAILABLE for exc in traffic.failed)

        # What was subscribed and consumed before comes back on b.
        publisher = echo(peers(b.url))
        with gevent.Timeout(10):
            while not arrived.wait(0.05):  # until the subscription is registered again
                publisher.changed.publish("f.x", Msg(text="on b"))
        publisher.work.produce(Msg(text="task on b"), timeout=5)
        assert worked.wait(10) and tasks == ["task on b"]
        assert set(got) == {"on b"}

        # b dies too: on to c.
        reconnected = AsyncResult()
        peer.on_reconnected(reconnected.set)
        killed = time.monotonic()
        b.kill()
        reconnected.get(timeout=MOVE_BOUND)
        moved_again = time.monotonic() - killed
        assert peer.url == c.url
        assert client.echo(Msg(text="on c"), timeout=5).text == "on c"
    with capsys.disabled():
        print(f"\nfailover after SIGKILL: a->b {moved * 1000:.0f} ms, "
              f"b->c {moved_again * 1000:.0f} ms")


def test_pick_first_wraps_around_to_a_server_that_came_back(tmp_path, peers):
    a_url, b_url = f"unix://{tmp_path}/a.sock", f"unix://{tmp_path}/b.sock"
    with ServerProcess(b_url, heartbeat=CHILD_HB) as b:
        with ServerProcess(a_url, heartbeat=CHILD_HB) as a:
            peer = peers([a_url, b_url], heartbeat=HB)
            moves = []
            peer.on_reconnected(lambda session: moves.append(peer.url))
            a.kill()
            wait_until(lambda: moves == [b_url], timeout=MOVE_BOUND)
        with ServerProcess(a_url, heartbeat=CHILD_HB):  # a again, at the same address
            b.kill()  # b refuses: the next after b is a
            wait_until(lambda: moves == [b_url, a_url], timeout=MOVE_BOUND)
            assert echo(peer).echo(Msg(text="back on a"), timeout=5).text == "back on a"


def test_the_same_server_back_within_the_grace_is_resumed_not_left(local_servers, peers):
    a, b = local_servers(2)
    a_proxy, b_proxy = FaultProxy(a.url).start(), RecordingProxy(b.url).start()
    try:
        peer = peers([a_proxy.url, b_proxy.url], heartbeat=HB, timeout=0.3)
        lost, resumed = AsyncResult(), AsyncResult()
        peer.on_lost(lost.set)
        peer.on_resumed(resumed.set)
        session = peer.session_id
        a_proxy.blackhole()  # a dead link: resumes get no answer, and no refusal...
        a_proxy.cut()
        lost.get(timeout=5)
        wait_until(lambda: a_proxy.connections >= 1, timeout=5)  # ...a resume is being tried
        a_proxy.heal()  # ...until the link is back, well within the grace
        assert resumed.get(timeout=10) == session == peer.session_id
        assert peer.url == a_proxy.url
        assert echo(peer).echo(Msg(text="same session"), timeout=5).text == "same session"
        assert b_proxy.received == b""  # b was never tried
    finally:
        a_proxy.stop()
        b_proxy.stop()


@pytest.mark.parametrize("how", ["killed", "hung"])
def test_the_resume_token_goes_to_no_other_server(how, local_servers, peers, capsys):
    """Killed: the session ends with its server. Hung: the link is dead, the
    session waits out its grace (resumes tried on its server only), then
    the peer moves. Either way b hears a fresh Hello, nothing of a's."""
    b = local_servers(1)[0]
    b_proxy = RecordingProxy(b.url).start()
    a_proxy = None
    try:
        if how == "killed":
            a = ServerProcess("tcp://127.0.0.1:0", heartbeat=CHILD_HB).start()
            a_url = a.url
        else:
            a_server = local_servers(1)[0]
            a_proxy = FaultProxy(a_server.url).start()
            a_url = a_proxy.url
        peer = peers([a_url, b_proxy.url], heartbeat=HB, timeout=0.3,
                     reconnect=rpc.Reconnect(grace=1.0))
        reconnected = AsyncResult()
        peer.on_reconnected(reconnected.set)
        token = peer._connection.session.reliability.resume_token
        session = peer.session_id
        assert len(token) >= 16 and session
        started = time.monotonic()
        if how == "killed":
            a.kill()
        else:
            assert a_proxy is not None
            a_proxy.blackhole()
            a_proxy.cut()
        reconnected.get(timeout=10)
        moved = time.monotonic() - started
        if how == "hung":  # not before the session's grace was over
            assert moved >= 1.0
        with capsys.disabled():
            print(f"\nfailover from a {how} server (grace 1 s, timeout 0.3 s): "
                  f"{moved * 1000:.0f} ms")
        assert peer.url == b_proxy.url
        assert b_proxy.received  # b did get a Hello...
        assert token not in b_proxy.received  # ...that asks to resume nothing
        assert session.encode() not in b_proxy.received
    finally:
        if how == "killed":
            a.kill()
        if a_proxy is not None:
            a_proxy.stop()
        b_proxy.stop()


def test_the_first_connection_skips_dead_addresses(tmp_path, local_servers, peers):
    live = local_servers(1)[0]
    dead_unix = f"unix://{tmp_path}/nobody.sock"
    peer = peers([dead_tcp_url(), dead_unix, live.url])
    assert peer.url == live.url
    assert echo(peer).echo(Msg(text="hi"), timeout=5).text == "hi"


def test_all_dead_is_one_clear_error_naming_each_address(tmp_path, local_servers):
    dead = [dead_tcp_url(), f"unix://{tmp_path}/nobody.sock"]
    with pytest.raises(rpc.PeerLost) as info:
        rpc.connect(dead, timeout=2)
    message = info.value.message
    assert "any of 2 servers" in message
    refused, missing = message.split(": ", 1)[1].split("; ")
    assert refused.startswith(f"{dead[0]}: ") and "Connection refused" in refused
    assert missing.startswith(f"{dead[1]}: ") and "No such file or directory" in missing
    # Refused alike by every server: the code says why, not "unavailable".
    guarded = local_servers(2, auth=rpc.SharedSecret("s" * 32))
    with pytest.raises(rpc.RpcError) as info:
        rpc.connect([server.url for server in guarded], auth=rpc.SharedSecret("x" * 32),
                    timeout=2)
    assert info.value.code == rpc.StatusCode.UNAUTHENTICATED
    assert all(server.url in info.value.message for server in guarded)


def test_round_robin_spreads_peers_over_the_servers(local_servers, peers):
    servers = local_servers(3)
    urls = [server.url for server in servers]
    spread = [peers(urls, balance="round_robin") for _ in range(6)]
    assert sorted(len(server.connections) for server in servers) == [2, 2, 2]
    assert sorted(urls.index(peer.url) for peer in spread) == [0, 0, 1, 1, 2, 2]
    first = [peers(urls) for _ in range(3)]  # pick_first: all on the first
    assert {peer.url for peer in first} == {urls[0]}


def test_round_robin_starts_a_new_session_at_the_next_server(local_servers, peers):
    servers = local_servers(3)
    urls = [server.url for server in servers]
    proxies = [FaultProxy(url).start() for url in urls]
    try:
        proxied = [proxy.url for proxy in proxies]
        # No grace: a broken connection ends the session, so a new one starts.
        peer = peers(proxied, balance="round_robin", heartbeat=HB,
                     reconnect=rpc.Reconnect(grace=0.0))
        home = proxied.index(peer.url)
        reconnected = AsyncResult()
        peer.on_reconnected(reconnected.set)
        proxies[home].cut()  # its server lives on, but the session is gone: move on
        reconnected.get(timeout=10)
        assert peer.url == proxied[(home + 1) % 3]
    finally:
        for proxy in proxies:
            proxy.stop()


def test_tls_and_a_shared_secret_apply_to_every_server(certificates, servers, peers):
    secret = rpc.SharedSecret("t" * 32)
    server_tls = rpc.TLS(certfile=str(certificates / "server.pem"))
    a, b = (servers("tls://127.0.0.1:0", EchoService(), tls=server_tls, auth=secret,
                    heartbeat=HB) for _ in range(2))
    peer = peers([a.url, b.url], tls=rpc.TLS(cafile=str(certificates / "ca.pem")), auth=secret,
                 heartbeat=HB)
    reconnected = AsyncResult()
    peer.on_reconnected(reconnected.set)
    a.stop()
    reconnected.get(timeout=10)
    assert peer.url == b.url
    assert echo(peer).echo(Msg(text="secure on b"), timeout=5).text == "secure on b"
