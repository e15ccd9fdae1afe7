"""Publish/subscribe, work queues and broadcasts end to end: over every
transport with peers in this process, across OS processes over tcp and
unix, and through connections cut in the middle (nothing lost, nothing
twice)."""
from __future__ import annotations

import collections

import gevent
import pytest
from gevent.event import AsyncResult
from google.protobuf import empty_pb2

import onedrive_rpc as rpc
from onedrive_rpc.core.pattern_frames import Credit
from onedrive_rpc.testing import echo_pb2
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.faults import FaultProxy
from onedrive_rpc.testing.helpers import wait_until
from onedrive_rpc.testing.process import PatternPeerProcess

Msg = echo_pb2.Msg
HB = rpc.Heartbeat(interval=0.2, misses=3)
WORK = "/onedrive_rpc.testing.Echo/Work"


@pytest.fixture
def served(url):
    """An EchoService server in this process; its broker can be inspected."""
    server = rpc.Server(url, heartbeat=HB, session_grace=2.0)
    server.add_service(EchoService())
    server.start()
    yield server
    server.stop()


def echo(peer_or_server):
    return rpc.Client(peer_or_server, ECHO)


def texts(items):
    return [item.message.text for item in items]


def collect(subscription, count, timeout=10):
    with gevent.Timeout(timeout):
        return [subscription.get() for _ in range(count)]


# --------------------------------------------------------- publish/subscribe


def test_each_subscriber_gets_what_its_pattern_matches_once_in_order(served, peers):
    subscriber = echo(peers(served.url))
    exact = subscriber.changed.subscribe("drive.a.doc", timeout=5)
    one_level = subscriber.changed.subscribe("drive.*.doc", timeout=5)
    rest = echo(peers(served.url)).changed.subscribe("drive.>", timeout=5)
    publisher_peer = peers(served.url)
    publisher = echo(publisher_peer)
    topics = ["drive.a.doc", "drive.b.doc", "drive.a.img", "drive.a.doc.v2", "other.a.doc"]
    for i in range(100):
        publisher.changed.publish(topics[i % 5], Msg(text=str(i)))
    echo(served).changed.publish("drive.a.doc", Msg(text="from the server"))
    expected = {
        exact: [str(i) for i in range(100) if i % 5 == 0],
        one_level: [str(i) for i in range(100) if i % 5 in (0, 1)],
        rest: [str(i) for i in range(100) if i % 5 != 4],
    }
    for subscription, wanted in expected.items():
        got = collect(subscription, len(wanted) + 1)
        # Order holds per publisher (the peer's session, and the server).
        from_peer = [r for r in got if r.publisher == publisher_peer.session_id]
        from_server = [r for r in got if r.publisher != publisher_peer.session_id]
        assert texts(from_peer) == wanted and texts(from_server) == ["from the server"]
        seqs = [r.publisher_seq for r in from_peer]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # Nothing more arrives, and cancel stops delivery.
    rest.cancel()
    publisher.changed.publish("drive.a.doc", Msg(text="after"), confirm=True, timeout=5)
    assert texts(collect(exact, 1)) == ["after"]
    assert list(rest) == []


def test_a_callback_subscription_and_a_server_side_one(served, peers):
    got = []
    done = AsyncResult()

    def on_message(received):
        got.append(received.message.text)
        if len(got) == 50:
            done.set()

    echo(peers(served.url)).changed.subscribe("t.>", on_message, timeout=5)
    local = echo(served).changed.subscribe("t.x")
    publisher = echo(peers(served.url))
    for i in range(50):
        publisher.changed.publish("t.x", Msg(text=str(i)))
    done.get(timeout=10)
    assert got == [str(i) for i in range(50)]
    assert texts(collect(local, 50)) == [str(i) for i in range(50)]


def test_a_slow_subscriber_drops_the_oldest_and_can_count_them(served, peers):
    subscriber = echo(peers(served.url)).changed.subscribe("slow", queue_limit=4, timeout=5)
    publisher = echo(peers(served.url))
    for i in range(100):
        publisher.changed.publish("slow", Msg(text=str(i)), confirm=True, timeout=5)
    got = []
    while not got or got[-1].message.text != "99":
        got.append(subscriber.get(timeout=5))
    numbers = [int(t) for t in texts(got)]
    assert numbers == sorted(numbers) and len(numbers) < 100  # in order, some dropped
    assert subscriber.dropped == got[-1].dropped == 100 - len(numbers)
    state = served._broker._topics[ECHO_CHANGED].subscriptions()
    assert all(s.queued <= 4 for s in state)  # the server's queue stayed bounded


def test_drop_newest_keeps_the_first_ones(served, peers):
    subscriber = echo(peers(served.url)).changed.subscribe("slow", queue_limit=4, policy="drop_newest",
                                                           timeout=5)
    publisher = echo(peers(served.url))
    for i in range(50):
        publisher.changed.publish("slow", Msg(text=str(i)), confirm=True, timeout=5)
    first = texts(collect(subscriber, 8))
    assert first == [str(i) for i in range(8)]  # 4 in flight + 4 queued; the rest dropped
    assert subscriber.dropped == 42


def test_the_disconnect_policy_closes_a_slow_subscriber(served, peers):
    slow_peer = peers(served.url)
    closed = AsyncResult()
    slow_peer.on_disconnected(closed.set)
    echo(slow_peer).changed.subscribe("slow", queue_limit=2, policy="disconnect", timeout=5)
    publisher = echo(peers(served.url))
    for i in range(10):
        publisher.changed.publish("slow", Msg(text=str(i)), confirm=True, timeout=5)
    reason = closed.get(timeout=5)
    assert reason.code == rpc.StatusCode.RESOURCE_EXHAUSTED and "slow consumer" in reason.message
    assert publisher.echo(Msg(text="fine"), timeout=5).text == "fine"


def test_closing_the_peer_ends_its_subscriptions_and_listeners(served, peers):
    peer = peers(served.url)
    sub = echo(peer).changed.subscribe("x.>", timeout=5)
    listener = echo(peer).announce.listen()
    results = []

    def read(what):
        try:
            for _ in what:
                pass
        except rpc.PeerLost as exc:
            results.append(exc.message)

    readers = [gevent.spawn(read, sub), gevent.spawn(read, listener)]
    gevent.sleep(0)
    peer.close()
    gevent.joinall(readers, timeout=5, raise_error=True)
    assert results == ["the peer was closed"] * 2
    wait_until(lambda: not served._broker._subscribed)  # the server forgot it too


def test_stopping_the_server_ends_its_own_receivers(url):
    server = rpc.Server(url)
    server.add_service(EchoService())
    server.start()
    sub = echo(server).changed.subscribe("x")
    listener = echo(server).announce.listen()
    server.stop()
    for receiver in (sub, listener):
        with pytest.raises(rpc.RpcError) as info:
            receiver.get(timeout=1)
        assert info.value.code == rpc.StatusCode.UNAVAILABLE and "the server stopped" in info.value.message


def test_bad_subscriptions_and_publishes_get_specific_errors(served, peers):
    client = echo(peers(served.url))
    with pytest.raises(ValueError, match="'>' is level 1 of 2; it may only be the last level"):
        client.changed.subscribe(">.a")
    with pytest.raises(ValueError, match="contains whitespace"):
        client.changed.publish("a b", Msg())
    peer = client.peer
    with pytest.raises(rpc.RpcError) as info:
        peer.subscribe("/onedrive_rpc.testing.Echo/Echo", "a", Msg.FromString, timeout=5)
    assert info.value.code == rpc.StatusCode.UNIMPLEMENTED
    assert "is a REQUEST_RESPONSE method, not PUBLISH_SUBSCRIBE" in info.value.message
    with pytest.raises(rpc.RpcError) as info:
        peer.publish("/no.Such/Thing", "a", b"", confirm=True, timeout=5)
    assert info.value.code == rpc.StatusCode.UNIMPLEMENTED and "unknown service" in info.value.message
    with pytest.raises(ValueError, match="policy must be"):
        client.changed.subscribe("a", policy="block_everyone")
    assert client.echo(Msg(text="still"), timeout=5).text == "still"


ECHO_CHANGED = "/onedrive_rpc.testing.Echo/Changed"


def test_subscribers_in_other_processes_get_every_message_once_in_order(transport, tmp_path, served):
    if transport == "inproc":
        pytest.skip("inproc cannot cross processes")
    with PatternPeerProcess(served.url, "subscribe", "p.>") as a, \
            PatternPeerProcess(served.url, "subscribe", "p.even") as b:
        publisher = echo(served)
        for i in range(300):
            publisher.changed.publish("p.even" if i % 2 == 0 else "p.odd", Msg(text=str(i)))
        wait_until(lambda: len(a.received) == 300 and len(b.received) == 150, timeout=20)
        assert [r["text"] for r in a.received] == [str(i) for i in range(300)]
        assert [r["text"] for r in b.received] == [str(i) for i in range(0, 300, 2)]
        assert all(r["dropped"] == 0 for r in a.received + b.received)


def test_subscriptions_get_every_message_exactly_once_across_cuts(served, peers):
    proxy = FaultProxy(served.url).start()
    try:
        peer = peers(proxy.url, heartbeat=HB)
        resumed = []
        peer.on_resumed(resumed.append)
        subscription = echo(peer).changed.subscribe("cut.>", queue_limit=64, timeout=5)
        publisher = echo(peers(served.url))
        received = []

        def read():
            for r in subscription:
                received.append(r)
                if len(received) == 2000:
                    return

        reader = gevent.spawn(read)
        for i in range(2000):
            publisher.changed.publish("cut.x", Msg(text=str(i)))
            if i % 500 == 250:
                proxy.cut()  # with up to a batch of messages in flight
            if i % 32 == 31:
                # Never more than the subscription's queue ahead of it: a
                # drop here would be the slow-consumer policy, not a loss.
                wait_until(lambda: len(received) > i - 32, timeout=10)
        reader.join(timeout=20)
        assert texts(received) == [str(i) for i in range(2000)]
        assert all(r.dropped == 0 for r in received)
        assert len(resumed) >= 1
    finally:
        proxy.stop()


def test_subscriptions_and_consumers_come_back_in_a_new_session(tmp_path, transport, peers):
    if transport == "inproc":
        pytest.skip("a new server on the same inproc name is another test's business")
    url = f"unix://{tmp_path}/restart.sock" if transport == "unix" else "tcp://127.0.0.1:0"
    first = rpc.Server(url, heartbeat=HB)
    first.add_service(EchoService())
    first.start()
    url = first.url
    peer = peers(url, heartbeat=HB)
    reconnected = AsyncResult()
    peer.on_reconnected(reconnected.set)
    sub = echo(peer).changed.subscribe("r.>", timeout=5)
    done = []
    echo(peer).work.consume(lambda task, context: done.append(task.text), prefetch=2, timeout=5)
    echo(first).changed.publish("r.1", Msg(text="old"))
    assert texts(collect(sub, 1)) == ["old"]
    first.stop()
    second = rpc.Server(url, heartbeat=HB)
    second.add_service(EchoService())
    second.start()
    try:
        reconnected.get(timeout=10)
        wait_until(lambda: len(second._broker._topics.get(ECHO_CHANGED, ())) == 1
                   and second.queue_stats(WORK).consumers == 1, timeout=10)
        echo(second).changed.publish("r.2", Msg(text="new"))
        assert texts(collect(sub, 1)) == ["new"]
        assert sub.restarts == 1  # the subscriber can tell it may have missed some
        echo(second).work.produce(Msg(text="task for the new session"))
        wait_until(lambda: done == ["task for the new session"])
    finally:
        second.stop()


# ---------------------------------------------------------------- work queues


def test_each_task_goes_to_exactly_one_consumer_fairly(served, peers):
    done = collections.Counter()
    by_consumer = collections.Counter()
    finished = AsyncResult()

    def consumer(name):
        def handle(task, context):
            gevent.sleep(0.001)
            done[task.text] += 1
            by_consumer[name] += 1
            if sum(done.values()) == 300:
                finished.set()
        return handle

    for name in "abc":
        echo(peers(served.url)).work.consume(consumer(name), prefetch=2, timeout=5)
    producer = echo(peers(served.url))
    for i in range(300):
        producer.work.produce(Msg(text=str(i)), timeout=5)
    finished.get(timeout=20)
    assert done == {str(i): 1 for i in range(300)}
    assert min(by_consumer.values()) >= 60, by_consumer  # fair, not one consumer first
    wait_until(lambda: served.queue_stats(WORK).completed == 300)  # the last acks are on their way
    assert served.queue_stats(WORK).ready == 0 and served.queue_stats(WORK).in_flight == 0


def test_a_failing_task_is_retried_with_its_attempt_then_dead_lettered_and_replayed(served, peers):
    attempts = collections.defaultdict(list)
    healed = AsyncResult()

    def handle(task, context):
        attempts[task.text].append(context.attempt)
        if task.text == "poison" and not healed.ready():
            raise RuntimeError("cannot digest")
        if task.text == "flaky" and context.attempt == 1:
            raise RuntimeError("first time unlucky")

    served.configure_queue(WORK, max_attempts=4)
    echo(peers(served.url)).work.consume(handle, prefetch=1, timeout=5)
    echo(served).work.consume(handle, prefetch=1)  # the server consumes too
    producer = echo(peers(served.url))
    producer.work.produce(Msg(text="flaky"), timeout=5)
    producer.work.produce(Msg(text="poison"), timeout=5)
    wait_until(lambda: len(served.dead_letters(WORK)) == 1 and attempts["flaky"] == [1, 2])
    [letter] = served.dead_letters(WORK)
    assert letter.attempts == 4 and "cannot digest" in letter.last_error
    assert Msg.FromString(letter.payload).text == "poison"
    assert attempts["poison"] == [1, 2, 3, 4]
    healed.set(True)
    assert served.replay_dead_letters(WORK) == 1
    wait_until(lambda: attempts["poison"] == [1, 2, 3, 4, 1]
               and served.queue_stats(WORK).completed == 2)
    assert served.dead_letters(WORK) == []


def test_a_full_queue_refuses_with_resource_exhausted(served, peers):
    served.configure_queue(WORK, max_tasks=3)
    with pytest.raises(ValueError, match="max_tasks must be an integer >= 1, not 0"):
        served.configure_queue(WORK, max_tasks=0)
    producer = echo(peers(served.url))
    for i in range(3):
        producer.work.produce(Msg(text=str(i)), timeout=5)
    with pytest.raises(rpc.RpcError) as info:
        producer.work.produce(Msg(text="one too many"), timeout=5)
    assert info.value.code == rpc.StatusCode.RESOURCE_EXHAUSTED and "max_tasks" in info.value.message


def test_a_consumer_killed_mid_task_has_it_done_exactly_once_by_another(transport, served):
    if transport == "inproc":
        pytest.skip("inproc cannot cross processes")
    with PatternPeerProcess(served.url, "consume", "1", heartbeat=(0.2, 3)) as doomed:
        echo(served).work.produce(Msg(text="the task", delay=60))
        wait_until(lambda: doomed.received, timeout=10)
        assert doomed.received == [{"event": "start", "text": "the task", "attempt": 1}]
        # The survivor does tasks at once (its sleep is capped at 0 s).
        with PatternPeerProcess(served.url, "consume", "1", "0") as survivor:
            doomed.kill()
            # The server gives the task back once the dead consumer's
            # session is over (grace 2 s): never while it could come back.
            wait_until(lambda: served.queue_stats(WORK).completed == 1
                       and len(survivor.received) == 2, timeout=15)
            assert survivor.received == [
                {"event": "start", "text": "the task", "attempt": 2},
                {"event": "done", "text": "the task", "attempt": 2}]
        assert doomed.received == [{"event": "start", "text": "the task", "attempt": 1}]
        stats = served.queue_stats(WORK)
        assert stats.redelivered == 1 and stats.completed == 1 and stats.ready == 0
        assert stats.in_flight == 0 and stats.dead == 0


def test_tasks_are_done_exactly_once_across_cuts(served, peers):
    proxy = FaultProxy(served.url).start()
    try:
        done = collections.Counter()
        consumer_peer = peers(proxy.url, heartbeat=HB)
        echo(consumer_peer).work.consume(lambda task, ctx: done.update([task.text]), prefetch=8,
                                         timeout=5)
        producer = echo(peers(served.url))
        for i in range(1000):
            producer.work.produce(Msg(text=str(i)), timeout=5)
            if i % 250 == 100:
                proxy.cut()
        wait_until(lambda: served.queue_stats(WORK).completed == 1000, timeout=20)
        assert done == {str(i): 1 for i in range(1000)}
        assert served.queue_stats(WORK).redelivered == 0  # resumed, never handed to anyone twice
    finally:
        proxy.stop()


# ----------------------------------------------------------------- broadcasts


def test_a_broadcast_reaches_every_peer_and_a_peer_can_broadcast_to_the_others(served, peers):
    listeners = []
    for _ in range(3):
        listeners.append(echo(peers(served.url)).announce.listen())
    local = echo(served).announce.listen()
    sender_peer = peers(served.url)
    sender = echo(sender_peer)
    own = sender.announce.listen()
    assert echo(served).announce.broadcast(Msg(text="from server")) == 4
    for i in range(20):
        sender.announce.broadcast(Msg(text=str(i)))
    sender.announce.broadcast(Msg(text="last"), confirm=True, timeout=5)
    expected = ["from server"] + [str(i) for i in range(20)] + ["last"]
    for listener in listeners:
        got = collect(listener, len(expected))
        assert texts(got) == expected
        assert got[0].publisher == "" and {r.publisher for r in got[1:]} == {sender_peer.session_id}
    assert texts(collect(local, len(expected) - 1)) == expected[1:]
    # The sender hears the server, never itself.
    assert texts(collect(own, 1)) == ["from server"]
    with pytest.raises(rpc.RpcError):
        own.get(timeout=0.2)


def test_listeners_in_other_processes_hear_broadcasts_in_order(transport, served):
    if transport == "inproc":
        pytest.skip("inproc cannot cross processes")
    with PatternPeerProcess(served.url, "listen") as a, PatternPeerProcess(served.url, "listen") as b:
        wait_until(lambda: len(served.connections) == 2)
        for i in range(200):
            echo(served).announce.broadcast(Msg(text=str(i)))
        wait_until(lambda: len(a.received) == 200 and len(b.received) == 200, timeout=20)
        assert [r["text"] for r in a.received] == [str(i) for i in range(200)]
        assert a.received == b.received


def test_broadcasts_arrive_exactly_once_across_cuts(served, peers):
    proxy = FaultProxy(served.url).start()
    try:
        listener = echo(peers(proxy.url, heartbeat=HB)).announce.listen()
        wait_until(lambda: len(served.connections) == 1)
        server_side = echo(served)
        for i in range(1000):
            server_side.announce.broadcast(Msg(text=str(i)))
            if i % 300 == 150:
                proxy.cut()
                gevent.sleep(0)
        assert texts(collect(listener, 1000, timeout=20)) == [str(i) for i in range(1000)]
        with pytest.raises(rpc.RpcError):
            listener.get(timeout=0.2)
    finally:
        proxy.stop()


def test_misuse_of_each_pattern_gets_a_specific_error(served, peers):
    peer = peers(served.url)
    client = echo(peer)
    with pytest.raises(ValueError, match="stream window must be 1..65536 items, not 0"):
        client.count(Msg(count=1), window=0)
    with pytest.raises(ValueError, match="prefetch must be 1..10000, not 0"):
        client.work.consume(lambda task, context: None, prefetch=0)
    with pytest.raises(rpc.RpcError) as info:
        peer.produce("/onedrive_rpc.testing.Echo/Changed", b"", timeout=5)
    assert info.value.code == rpc.StatusCode.UNIMPLEMENTED
    assert "is a PUBLISH_SUBSCRIBE method, not PRODUCER_CONSUMER" in info.value.message
    with pytest.raises(rpc.RpcError) as info:
        peer.broadcast("/onedrive_rpc.testing.Echo/Work", b"", confirm=True, timeout=5)
    assert "is a PRODUCER_CONSUMER method, not BROADCAST" in info.value.message
    with pytest.raises(rpc.RpcError) as info:
        list(peer.open_stream("/onedrive_rpc.testing.Echo/Echo", b"", Msg.FromString, timeout=5))
    assert info.value.code == rpc.StatusCode.UNIMPLEMENTED
    assert "Echo is a REQUEST_RESPONSE method, sent a stream call: call it" in info.value.message
    with pytest.raises(rpc.RpcError) as info:
        peer.call("/onedrive_rpc.testing.Echo/Count", b"", Msg.FromString, timeout=5)
    assert "Count is a SERVER_STREAM method, sent a call: call it and iterate" in info.value.message
    with pytest.raises(TypeError, match="takes a onedrive_rpc.testing.Msg, not Empty"):
        client.changed.publish("a", empty_pb2.Empty())
    with pytest.raises(AttributeError, match="service onedrive_rpc.testing.Echo has no method 'nope'; "
                                             "it has: announce, changed, count"):
        client.nope
    peer.close()
    with pytest.raises(rpc.PeerLost):
        client.note(Msg(text="too late"))
    with pytest.raises(rpc.PeerLost):
        client.changed.subscribe("a.>")


def test_a_subscription_stays_bounded_even_against_a_server_ignoring_credit():
    from onedrive_rpc.patterns import Subscription
    sub = Subscription(1, "/a.B/C", "x", 4, 1, Msg.FromString, None,
                       grant=lambda items: None, unsubscribe=lambda s: None)
    for i in range(100):
        sub.deliver(Msg(text=str(i)).SerializeToString(), "x", "p", i + 1, 0)
    assert len(sub) == 8 and sub.overflowed == 92
    assert sub.get(timeout=1).message.text == "92"


def test_a_frozen_subscriber_costs_bounded_memory_and_delays_no_one(transport, url):
    if transport == "inproc":
        pytest.skip("inproc cannot cross processes")
    server = rpc.Server(url, heartbeat=rpc.Heartbeat(1.0, 3))
    server.add_service(EchoService())
    server.start()
    try:
        with PatternPeerProcess(server.url, "subscribe", "f.>") as healthy, \
                PatternPeerProcess(server.url, "subscribe", "f.>") as frozen:
            frozen.stop()  # SIGSTOP: its socket stays open, it reads nothing
            publisher = echo(server)
            for i in range(3000):
                publisher.changed.publish("f.x", Msg(text=str(i)))
                if i % 256 == 255:
                    wait_until(lambda: len(healthy.received) > i - 256, timeout=10)
            wait_until(lambda: len(healthy.received) == 3000, timeout=10)
            assert [r["text"] for r in healthy.received] == [str(i) for i in range(3000)]
            states = server._broker._topics[ECHO_CHANGED].subscriptions()
            assert max(s.queued for s in states) <= 1024  # the frozen one's queue is bounded
            assert max(s.dropped for s in states) > 0
            frozen.cont()
            wait_until(lambda: frozen.received and frozen.received[-1]["text"] == "2999", timeout=10)
            assert frozen.received[-1]["dropped"] > 0  # it can tell what it missed
            numbers = [int(r["text"]) for r in frozen.received]
            assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    finally:
        server.stop()


def test_a_slow_listener_keeps_the_newest_broadcasts_up_to_its_limit(served, peers):
    listener = echo(peers(served.url)).announce.listen(queue_limit=3)
    wait_until(lambda: len(served.connections) == 1)
    for i in range(10):
        echo(served).announce.broadcast(Msg(text=str(i)))
    wait_until(lambda: listener.dropped == 7)
    assert texts(collect(listener, 3)) == ["7", "8", "9"]
    with pytest.raises(ValueError, match="queue_limit must be at least 1, not 0"):
        echo(served).announce.listen(queue_limit=0)


def test_a_peer_granting_absurd_credit_is_refused_not_crashed(served, peers, caplog):
    peer = peers(served.url)
    consumer = echo(peer).work.consume(lambda task, context: None, prefetch=1, timeout=5)
    peer._connection.grant(Credit(4_000_000_000, consumer_id=consumer.id))
    wait_until(lambda: any("refused" in r.getMessage() for r in caplog.records))
    assert echo(peer).echo(Msg(text="still here"), timeout=5).text == "still here"
    echo(peer).work.produce(Msg(text="t"), timeout=5)
    wait_until(lambda: served.queue_stats(WORK).completed == 1)


def test_stopping_a_consumer_while_disconnected_does_not_wait_for_the_server(served, peers):
    proxy = FaultProxy(served.url).start()
    try:
        # A 4 s liveness bound: what waits on the server would fail only then.
        peer = peers(proxy.url, heartbeat=rpc.Heartbeat(0.2, 20))
        lost = AsyncResult()
        peer.on_lost(lost.set)
        consumer = echo(peer).work.consume(lambda task, context: None, prefetch=1, timeout=5)
        proxy.blackhole()
        proxy.cut()
        lost.get(timeout=5)
        with gevent.Timeout(1):  # not the seconds a withdrawal could wait for its answer
            consumer.stop(grace=0)
        proxy.heal()
        # Once the session resumes, the withdrawal queued meanwhile reaches the server.
        wait_until(lambda: served.queue_stats(WORK).consumers == 0, timeout=10)
    finally:
        proxy.stop()


def test_a_listener_and_a_subscription_hold_at_most_queue_bytes_unhandled(served, peers):
    """queue_bytes bounds what waits unhandled at the receiving peer in
    payload bytes, as queue_limit does in messages."""
    peer = peers(served.url)
    listener = echo(peer).announce.listen(queue_bytes=3000)
    sub = echo(peer).changed.subscribe("q.*", queue_bytes=3000, timeout=5)
    sender = echo(peers(served.url))
    for i in range(10):  # 1 KiB each, nobody takes them
        sender.announce.broadcast(Msg(text=f"{i}".ljust(1024, ".")), confirm=True, timeout=5)
        sender.changed.publish("q.x", Msg(text=f"{i}".ljust(1024, ".")), confirm=True, timeout=5)
    wait_until(lambda: listener.dropped + len(listener) == 10 and sub.overflowed + len(sub) == 10)
    assert listener.queued_bytes <= 3000 and sub.queued_bytes <= 3000
    assert [r.message.text[0] for r in collect(listener, len(listener))] == ["8", "9"]
    assert [r.message.text[0] for r in collect(sub, len(sub))] == ["8", "9"]
