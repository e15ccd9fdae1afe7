"""The "block" slow-consumer policy end to end (spec §8.3): a publisher
flooding a subscriber that cannot keep up loses nothing, because the server
holds it back through its publish window, never by ceasing to read its
connection; publish(timeout=) raises DEADLINE_EXCEEDED; a block subscriber
that is frozen (SIGSTOP) or killed (SIGKILL) stops holding anyone back once
its connection is lost; a publisher that ignores its window is refused."""
from __future__ import annotations

import gevent
import pytest
from gevent.event import Event

import onedrive_rpc as rpc
from onedrive_rpc.testing import echo_pb2
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.helpers import wait_until
from onedrive_rpc.testing.process import PatternPeerProcess

Msg = echo_pb2.Msg
CHANGED = "/onedrive_rpc.testing.Echo/Changed"
HB = rpc.Heartbeat(interval=0.2, misses=3)
#: A small window, so that tests reach it with few messages.
WINDOW = 16 * 1024


@pytest.fixture
def served(url):
    server = rpc.Server(url, heartbeat=HB, session_grace=5.0,
                        limits=rpc.Limits(publish_window=WINDOW))
    server.add_service(EchoService())
    server.start()
    yield server
    server.stop()


def echo(endpoint):
    return rpc.Client(endpoint, ECHO)


def test_a_flooding_publisher_loses_nothing_to_a_slow_block_subscriber(served, peers):
    received = []
    done = Event()
    count = 5000

    def slow(item):
        received.append(item.message.text)
        if len(received) % 50 == 0:
            gevent.sleep(0.001)  # slower than the publisher
        if len(received) == count:
            done.set()

    sub = echo(peers(served.url)).changed.subscribe(">", slow, policy="block", queue_limit=32,
                                                    timeout=5)
    fast = echo(peers(served.url)).changed.subscribe(">", policy="drop_oldest", queue_limit=32,
                                                     timeout=5)
    publisher_peer = peers(served.url)
    publisher = echo(publisher_peer)
    held = 0
    for i in range(count):
        credit = publisher_peer._connection.outgoing.publish_credit
        held += not credit.may_send(64 + 8)
        publisher.changed.publish("flood", Msg(text=str(i)), timeout=10)
    assert done.wait(30), f"{len(received)} of {count} arrived"
    assert received == [str(i) for i in range(count)]
    assert sub.dropped == 0 and sub.overflowed == 0
    assert held > 0, "the publisher was never held back: the test proves nothing"
    # A drop_oldest subscriber of the same topic that never read lost
    # messages, as its policy says; it did not hold anyone back.
    wait_until(lambda: len(fast) >= 32, timeout=5)
    # Publishing goes on as before once the subscriber caught up.
    publisher.changed.publish("flood", Msg(text="after"), confirm=True, timeout=5)
    wait_until(lambda: received[-1:] == ["after"], timeout=5)


def test_publish_waits_for_a_block_subscriber_and_times_out(served, peers):
    sub = echo(peers(served.url)).changed.subscribe("t", policy="block", queue_limit=4,
                                                    timeout=5)
    publisher = echo(peers(served.url))
    other = echo(peers(served.url))
    payload = "x" * 1000
    sent = 0
    with pytest.raises(rpc.RpcError) as held:
        for sent in range(1, 200):
            publisher.changed.publish("t", Msg(text=payload), timeout=0.5)
    assert held.value.code == rpc.StatusCode.DEADLINE_EXCEEDED
    assert "holds publishers back" in held.value.message
    assert sent < 100, "held back only once its window was spent"
    # The server kept reading the held publisher: its calls still work,
    # and so do everyone else's.
    assert rpc.Client(publisher.peer, ECHO).echo(Msg(text="alive"), timeout=5).text == "alive"
    assert other.echo(Msg(text="hi"), timeout=5).text == "hi"
    # The subscriber catches up: everything that was published arrives, in
    # order, and the publisher may go on.
    texts = [sub.get(timeout=5).message.text for _ in range(sent - 1)]
    assert texts == [payload] * (sent - 1)
    publisher.changed.publish("t", Msg(text="next"), timeout=5)
    assert sub.get(timeout=5).message.text == "next"
    assert sub.dropped == 0


def test_a_publish_from_the_server_itself_waits_too(served, peers):
    sub = echo(peers(served.url)).changed.subscribe("t", policy="block", queue_limit=2,
                                                    timeout=5)
    local = echo(served)
    published = 0
    with pytest.raises(rpc.RpcError) as held:
        for published in range(50):
            local.changed.publish("t", Msg(text=str(published)), timeout=0.3)
    assert held.value.code == rpc.StatusCode.DEADLINE_EXCEEDED
    waiting = gevent.spawn(local.changed.publish, "t", Msg(text="last"), timeout=5)
    got = []
    while got[-1:] != ["last"]:
        got.append(sub.get(timeout=5).message.text)
    waiting.get(timeout=5)
    assert got == [str(i) for i in range(published)] + ["last"]
    assert sub.dropped == 0


@pytest.mark.parametrize("fault", ["sigstop", "sigkill"])
def test_a_frozen_or_dead_block_subscriber_stops_holding_publishers(url, fault):
    """Past the heartbeat bound (frozen) or at once (killed) the subscriber's
    connection is lost: its block subscription ends as by disconnect."""
    if url.startswith("inproc:"):
        pytest.skip("inproc cannot cross processes")
    server = rpc.Server(url, heartbeat=HB, session_grace=30.0,
                        limits=rpc.Limits(publish_window=WINDOW))
    server.add_service(EchoService())
    server.start()
    try:
        publisher_peer = rpc.connect(server.url, heartbeat=HB)
        publisher = echo(publisher_peer)
        with PatternPeerProcess(server.url, "subscribe", ">", "block", "4",
                                heartbeat=(0.2, 3)) as subscriber:
            publisher.changed.publish("a", Msg(text="first"), confirm=True, timeout=5)
            wait_until(lambda: subscriber.received, timeout=10)
            if fault == "sigstop":
                subscriber.stop()
            else:
                subscriber.kill()
            with gevent.Timeout(15):
                for i in range(1000):  # far past queue_limit + window
                    publisher.changed.publish("a", Msg(text="y" * 500), timeout=10)
            if fault == "sigstop":
                subscriber.cont()
        assert not publisher_peer.closed
    finally:
        publisher_peer.close()
        server.stop()


def test_a_publisher_that_ignores_its_window_is_refused(served, peers):
    echo(peers(served.url)).changed.subscribe("t", policy="block", queue_limit=2, timeout=5)
    rogue_peer = peers(served.url)
    rogue_peer._connection.outgoing.publish_credit.window = 0  # it ignores the window
    rogue = echo(rogue_peer)
    with pytest.raises(rpc.RpcError) as refused:
        for _ in range(1000):
            rogue.changed.publish("t", Msg(text="z" * 500), confirm=True, timeout=5)
    assert refused.value.code == rpc.StatusCode.RESOURCE_EXHAUSTED
    assert "published past the publish window" in refused.value.message
    assert rpc.Client(rogue_peer, ECHO).echo(Msg(text="still served"), timeout=5).text


def test_block_needs_a_window_on_the_server(url, peers):
    server = rpc.Server(url, limits=rpc.Limits(publish_window=0))
    server.add_service(EchoService())
    server.start()
    try:
        with pytest.raises(rpc.RpcError) as refused:
            echo(peers(server.url)).changed.subscribe("t", policy="block", timeout=5)
        assert refused.value.code == rpc.StatusCode.INVALID_ARGUMENT
        assert "publish_window is 0" in refused.value.message
    finally:
        server.stop()


class Indexer(EchoService):
    """The server's own subscriber to Changed, "block": it must lose none."""

    def __init__(self):
        super().__init__()
        self.seen = []
        self.go = Event()

    @rpc.policy("block", queue_limit=4)
    def changed(self, request, received):
        self.go.wait(10)
        self.seen.append(request.text)


def test_a_service_method_marked_block_holds_remote_publishers_back(url, peers):
    indexer = Indexer()
    server = rpc.Server(url, heartbeat=HB, limits=rpc.Limits(publish_window=WINDOW))
    server.add_service(indexer)
    server.start()
    try:
        publisher = echo(peers(server.url))
        sent = 0
        with pytest.raises(rpc.RpcError) as held:
            for sent in range(1000):
                publisher.changed.publish("x", Msg(text=str(sent)), timeout=0.5)
        assert held.value.code == rpc.StatusCode.DEADLINE_EXCEEDED
        indexer.go.set()
        publisher.changed.publish("x", Msg(text="last"), timeout=5)
        wait_until(lambda: indexer.seen[-1:] == ["last"], timeout=10)
        assert indexer.seen == [str(i) for i in range(sent)] + ["last"]
    finally:
        server.stop()


def test_policies_by_name():
    assert rpc.policy("block")(lambda: None)
    with pytest.raises(ValueError, match="policy must be 'drop_oldest', 'drop_newest', "
                                         "'disconnect' or 'block', not 'lossless'"):
        rpc.policy("lossless")


def test_a_block_subscriber_that_takes_nothing_is_ended_after_the_stall_timeout(url, peers):
    server = rpc.Server(url, heartbeat=HB, limits=rpc.Limits(publish_window=WINDOW,
                                                             block_stall_timeout=0.5))
    server.add_service(EchoService())
    server.start()
    try:
        stuck_peer = peers(server.url, reconnect=rpc.Reconnect(enabled=False))
        stuck = echo(stuck_peer).changed.subscribe("t", policy="block", queue_limit=2, timeout=5)
        publisher = echo(peers(server.url))
        with gevent.Timeout(10):
            for i in range(200):  # far past queue_limit + window
                publisher.changed.publish("t", Msg(text="s" * 500), timeout=10)
        wait_until(lambda: stuck_peer.closed, timeout=5)
        assert stuck_peer.close_reason.code == rpc.StatusCode.RESOURCE_EXHAUSTED
        assert "took no message for 0.5 s" in stuck_peer.close_reason.message
        assert stuck.dropped == 0
    finally:
        server.stop()
