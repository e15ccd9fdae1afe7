"""The Broker with no sockets and no driver: peers are list-backed fake
Outlets, and every frame pushed to one is read back through the wire
codec (the Envelope bytes a Session would send, decoded as the receiving
peer decodes them), so these tests check bytes, not just calls.

The server's own receivers (Broker.subscribe/consume/listen) are real;
waits on them are bounded, never sleeps."""
from __future__ import annotations

from typing import Any, List, NamedTuple, Optional, Tuple

import pytest
from gevent.event import Event

from onedrive_rpc.calls import CallOrigin, Identity
from onedrive_rpc.config import Limits
from onedrive_rpc.core import wire_pb2
from onedrive_rpc.broker import Broker
from onedrive_rpc.brokers import Backend, InProcess
from onedrive_rpc.core import events as ev
from onedrive_rpc.core.pattern_frames import DECODERS, encode
from onedrive_rpc.core.publish_window import publish_cost
from onedrive_rpc.core.pubsub import MAX_QUEUE_LIMIT, Policy
from onedrive_rpc.core.workqueue import CONSUMER_LOST, MAX_PREFETCH
from onedrive_rpc.errors import RpcError, StatusCode
from onedrive_rpc.interceptors import Interception, interception
from onedrive_rpc.service import Registry
from onedrive_rpc.testing.echo_service import EchoService

CHANGED = "/onedrive_rpc.testing.Echo/Changed"    # PUBLISH_SUBSCRIBE
WORK = "/onedrive_rpc.testing.Echo/Work"          # PRODUCER_CONSUMER
ANNOUNCE = "/onedrive_rpc.testing.Echo/Announce"  # BROADCAST
ECHO = "/onedrive_rpc.testing.Echo/Echo"          # REQUEST_RESPONSE

OK = StatusCode.OK
FAILED = int(StatusCode.INTERNAL)


class Answer(NamedTuple):
    call_id: int
    code: StatusCode
    message: str


class FakeOutlet:
    """A peer's connection as the broker sees it. Pushed frames become the
    events the peer would decode from them; `gone` makes pushes fail."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.address = f"fake://{session_id}"
        self.origin = CallOrigin(None, self.address, None)
        self.frames: List[Any] = []
        self.answers: List[Answer] = []
        self.violations: List[Tuple[Any, ...]] = []
        self.slow_closes: List[Tuple[StatusCode, str]] = []
        self.gone = False
        self.suspended = False
        #: What Credit{publish} gave back, in order.
        self.grants: List[int] = []

    def push(self, frame: Any) -> bool:
        if self.gone:
            return False
        # The frame's Envelope field, as Session.send frames it (the payload
        # travels in Envelope.payload, field 1, which the decoders are handed).
        envelope = wire_pb2.Envelope.FromString(encode(frame))
        kind = envelope.WhichOneof("kind")
        self.frames.append(DECODERS[kind](envelope, bytes(getattr(frame, "payload", b""))))
        return True

    def answer(self, call_id: int, code: StatusCode = StatusCode.OK, message: str = "",
               violations: Tuple[Any, ...] = ()) -> None:
        self.answers.append(Answer(call_id, code, message))
        self.violations.append(violations)

    def close_slow_consumer(self, code: StatusCode, reason: str) -> None:
        self.slow_closes.append((code, reason))

    def grant_publish(self, amount: int) -> None:
        self.grants.append(amount)

    def take(self) -> List[Any]:
        """The frames pushed since the last take."""
        frames, self.frames = self.frames, []
        return frames

    def __repr__(self) -> str:
        return f"<FakeOutlet {self.session_id}>"


class World:
    """A broker serving EchoService, and the fake peers connected to it."""

    def __init__(self, interception: Optional[Interception] = None,
                 limits: Optional[Limits] = None, backend: Optional[Backend] = None) -> None:
        registry = Registry()
        registry.add(EchoService())
        self.outlets: List[FakeOutlet] = []
        self.broker = Broker(registry, lambda: self.outlets, identity="the-server",
                             limits=limits, interception=interception, backend=backend)

    def peer(self, session_id: str) -> FakeOutlet:
        outlet = FakeOutlet(session_id)
        self.outlets.append(outlet)
        return outlet

    def subscribe(self, outlet: FakeOutlet, sid: int, pattern: str, queue_limit: int = 0,
                  policy: int = 0, call_id: int = 1) -> Answer:
        self.broker.handle(outlet, ev.SubscribeReceived(call_id, sid, CHANGED, pattern,
                                                        queue_limit, policy))
        return outlet.answers.pop()

    def publish(self, outlet: FakeOutlet, topic: str, payload: bytes, call_id: int = 0) -> None:
        self.broker.handle(outlet, ev.PublishReceived(call_id, CHANGED, topic, payload))

    def consume(self, outlet: FakeOutlet, cid: int, prefetch: int = 1, call_id: int = 1) -> Answer:
        self.broker.handle(outlet, ev.ConsumeReceived(call_id, cid, WORK, prefetch, False))
        return outlet.answers.pop()

    def produce(self, outlet: FakeOutlet, payload: bytes, call_id: int = 1) -> Answer:
        self.broker.handle(outlet, ev.ProduceReceived(call_id, WORK, payload))
        return outlet.answers.pop()

    def done(self, outlet: FakeOutlet, cid: int, task_id: int, code: int = 0,
             message: str = "") -> None:
        self.broker.handle(outlet, ev.TaskDoneReceived(cid, task_id, code, message))


@pytest.fixture
def world() -> World:
    return World()


def deliver(sid: int, topic: str, publisher: str, seq: int, payload: bytes,
            dropped: int = 0) -> ev.DeliverReceived:
    return ev.DeliverReceived(sid, topic, publisher, seq, dropped, payload)


def task(cid: int, task_id: int, attempt: int, payload: bytes) -> ev.TaskReceived:
    return ev.TaskReceived(cid, task_id, attempt, payload)


# --------------------------------------------------------- publish/subscribe


def test_a_publish_reaches_each_matching_subscription_of_each_peer_once(world):
    a, b, publisher = world.peer("a"), world.peer("b"), world.peer("pub")
    assert world.subscribe(a, 1, "drive.*.doc", call_id=11) == Answer(11, OK, "")
    assert world.subscribe(b, 7, "drive.a.doc", call_id=12) == Answer(12, OK, "")
    assert world.subscribe(b, 8, "drive.>", call_id=13) == Answer(13, OK, "")
    assert world.subscribe(b, 9, "other.>", call_id=14) == Answer(14, OK, "")

    world.publish(publisher, "drive.a.doc", b"first", call_id=21)
    world.publish(publisher, "drive.b.doc", b"second")
    world.publish(publisher, "nothing.matches", b"third")

    assert publisher.answers == [Answer(21, OK, "")]
    # publisher_seq counts the publisher's messages of the method: 1, 2, 3.
    assert a.take() == [deliver(1, "drive.a.doc", "pub", 1, b"first"),
                        deliver(1, "drive.b.doc", "pub", 2, b"second")]
    assert sorted(b.take()) == sorted([deliver(7, "drive.a.doc", "pub", 1, b"first"),
                                       deliver(8, "drive.a.doc", "pub", 1, b"first"),
                                       deliver(8, "drive.b.doc", "pub", 2, b"second")])
    assert publisher.take() == []


def test_the_server_publishes_as_itself(world):
    a = world.peer("a")
    world.subscribe(a, 1, ">")
    assert world.broker.publish(CHANGED, "t", b"x") == 1
    assert a.take() == [deliver(1, "t", "the-server", 1, b"x")]


def test_unsubscribed_and_forgotten_subscriptions_get_nothing(world):
    a, b = world.peer("a"), world.peer("b")
    world.subscribe(a, 1, ">")
    world.subscribe(b, 1, ">")
    world.broker.handle(a, ev.UnsubscribeReceived(1))
    world.broker.forget(b, lost=True)
    assert world.broker._subscribed == {}
    assert world.broker.publish(CHANGED, "t", b"x") == 0
    assert a.take() == b.take() == []


@pytest.mark.parametrize("policy, kept", [(Policy.DROP_OLDEST, [b"3", b"4"]),
                                          (Policy.DROP_NEWEST, [b"2", b"3"])])
def test_without_credit_the_policy_drops_and_the_deliveries_count_it(world, policy, kept):
    a, publisher = world.peer("a"), world.peer("pub")
    world.subscribe(a, 1, ">", queue_limit=2, policy=int(policy))
    for n in range(5):  # credit 2: two go out, two wait, one is dropped
        world.publish(publisher, "t", str(n).encode())
    assert [(f.payload, f.dropped) for f in a.take()] == [(b"0", 0), (b"1", 0)]
    state = world.broker._topics[CHANGED].subscription(a, 1)
    assert (state.credit, state.queued, state.dropped) == (0, 2, 1)

    world.broker.handle(a, ev.CreditReceived(0, 1, 0, 10))

    assert [(f.payload, f.dropped) for f in a.take()] == [(kept[0], 1), (kept[1], 1)]
    assert a.slow_closes == []
    world.publish(publisher, "t", b"later")  # within the credit left: no drop
    assert [(f.payload, f.dropped) for f in a.take()] == [(b"later", 1)]


def test_the_disconnect_policy_closes_the_slow_consumer_once(world):
    a, b, publisher = world.peer("a"), world.peer("b"), world.peer("pub")
    world.subscribe(a, 1, ">", queue_limit=1, policy=int(Policy.DISCONNECT))
    world.subscribe(b, 1, ">")
    for n in range(6):
        world.publish(publisher, "t", str(n).encode())
    assert len(a.slow_closes) == 1
    code, reason = a.slow_closes[0]
    assert code == StatusCode.RESOURCE_EXHAUSTED and "DISCONNECT" in reason
    assert [f.payload for f in a.take()] == [b"0"]
    assert (a, 1) not in world.broker._subscribed
    # The others miss nothing.
    assert [f.payload for f in b.take()] == [str(n).encode() for n in range(6)]


def test_a_peer_whose_pushes_fail_costs_the_others_nothing(world):
    gone, b, c, publisher = world.peer("gone"), world.peer("b"), world.peer("c"), world.peer("pub")
    for outlet in (gone, b, c):
        world.subscribe(outlet, 1, ">")
    gone.gone = True
    for n in range(3):
        world.publish(publisher, "t", str(n).encode())
    expected = [deliver(1, "t", "pub", n + 1, str(n).encode()) for n in range(3)]
    assert b.take() == expected and c.take() == expected
    assert gone.take() == [] and gone.slow_closes == []


def test_publishing_to_a_bad_topic_or_subscribing_with_a_bad_pattern_is_refused(world):
    a = world.peer("a")
    assert world.subscribe(a, 1, "a..b").code == StatusCode.INVALID_ARGUMENT
    world.publish(a, "a.*", b"x", call_id=5)
    assert a.answers.pop().code == StatusCode.INVALID_ARGUMENT
    assert world.broker._subscribed == {}


def test_a_peer_forgotten_starts_its_publisher_count_again(world):
    a, publisher = world.peer("a"), world.peer("pub")
    world.subscribe(a, 1, ">")
    world.publish(publisher, "t", b"1")
    world.publish(publisher, "t", b"2")
    world.broker.forget(publisher, lost=False)
    world.publish(publisher, "t", b"again")
    assert [f.publisher_seq for f in a.take()] == [1, 2, 1]


# ---------------------------------------------------------------- work queues


def test_a_produced_task_goes_to_a_consumer_and_done_completes_it(world):
    producer, worker = world.peer("producer"), world.peer("worker")
    assert world.consume(worker, 4, call_id=31) == Answer(31, OK, "")
    assert world.produce(producer, b"job", call_id=32) == Answer(32, OK, "")
    assert worker.take() == [task(4, 1, 1, b"job")]

    world.done(worker, 4, 1)

    stats = world.broker.queue_stats(WORK)
    assert (stats.ready, stats.in_flight, stats.completed) == (0, 0, 1)
    world.produce(producer, b"next")  # the credit came back with done
    assert worker.take() == [task(4, 2, 1, b"next")]


def test_tasks_go_round_robin_between_consumers(world):
    producer, a, b = world.peer("producer"), world.peer("a"), world.peer("b")
    world.consume(a, 1, prefetch=5)
    world.consume(b, 2, prefetch=5)
    for n in range(1, 7):
        world.produce(producer, b"job %d" % n)
    assert [f.task_id for f in a.take()] == [1, 3, 5]
    assert [f.task_id for f in b.take()] == [2, 4, 6]


def test_a_failed_task_is_redelivered_with_the_next_attempt(world):
    producer, a, b = world.peer("producer"), world.peer("a"), world.peer("b")
    world.consume(a, 1)
    world.produce(producer, b"flaky")
    assert a.take() == [task(1, 1, 1, b"flaky")]
    world.consume(b, 2)

    world.done(a, 1, 1, FAILED, "boom")

    # To the other consumer when there is one.
    assert a.take() == [] and b.take() == [task(2, 1, 2, b"flaky")]
    world.done(b, 2, 1, FAILED, "boom again")
    assert a.take() == [task(1, 1, 3, b"flaky")]


def test_a_task_that_fails_max_attempts_times_is_a_dead_letter(world):
    producer, a = world.peer("producer"), world.peer("a")
    world.broker.configure_queue(WORK, max_attempts=2)
    world.consume(a, 1)
    world.produce(producer, b"poison")
    world.done(a, 1, 1, FAILED, "first")
    assert a.take() == [task(1, 1, 1, b"poison"), task(1, 1, 2, b"poison")]

    world.done(a, 1, 1, FAILED, "second")

    assert a.take() == []
    [letter] = world.broker.dead_letters(WORK)
    assert (letter.task_id, letter.attempts, letter.last_error, letter.payload) \
        == (1, 2, "second", b"poison")
    assert world.broker.replay(WORK) == 1
    assert a.take() == [task(1, 1, 1, b"poison")]  # attempts counted afresh


@pytest.mark.parametrize("lost, attempt", [(True, 2), (False, 1)])
def test_a_forgotten_consumers_tasks_go_to_the_others(world, lost, attempt):
    producer, a, b = world.peer("producer"), world.peer("a"), world.peer("b")
    world.consume(a, 1, prefetch=2)
    world.produce(producer, b"one")
    world.produce(producer, b"two")
    assert len(a.take()) == 2
    world.consume(b, 2, prefetch=2)

    world.broker.forget(a, lost=lost)

    assert b.take() == [task(2, 1, attempt, b"one"), task(2, 2, attempt, b"two")]
    if lost:
        assert world.broker.queue_stats(WORK).failed_attempts == 2
    # What a forgotten consumer says about its old tasks counts for nothing.
    world.done(a, 1, 1, 0)
    assert world.broker.queue_stats(WORK).completed == 0


def test_a_task_that_could_not_be_pushed_waits_for_the_peer_to_be_forgotten(world):
    producer, gone, b = world.peer("producer"), world.peer("gone"), world.peer("b")
    world.consume(gone, 1)
    gone.gone = True
    world.produce(producer, b"job")
    world.consume(b, 2)
    assert b.take() == []  # still in flight at the one that is gone

    world.broker.forget(gone, lost=True)

    assert b.take() == [task(2, 1, 2, b"job")]
    info = world.broker._backend._queues[WORK].task(1)
    assert (info.attempts, info.last_error) == (1, CONSUMER_LOST)


def test_a_consumer_that_withdraws_in_order_hands_its_tasks_back_without_an_attempt(world):
    producer, a, b = world.peer("producer"), world.peer("a"), world.peer("b")
    world.consume(a, 1)
    world.produce(producer, b"job")
    a.take()
    world.consume(b, 2)
    world.broker.handle(a, ev.ConsumeReceived(41, 1, WORK, 0, True))
    assert a.answers == [Answer(41, OK, "")]
    assert b.take() == [task(2, 1, 1, b"job")]


def test_a_full_queue_refuses_the_producer(world):
    producer = world.peer("producer")
    world.broker.configure_queue(WORK, max_tasks=1)
    assert world.produce(producer, b"one").code == OK
    assert world.produce(producer, b"two").code == StatusCode.RESOURCE_EXHAUSTED


# ------------------------------------------------------------------ broadcast


def test_a_broadcast_reaches_everyone_but_its_sender_and_the_servers_listeners(world):
    sender, b, c = world.peer("sender"), world.peer("b"), world.peer("c")
    heard = world.broker.listen(ANNOUNCE, bytes)

    world.broker.handle(sender, ev.BroadcastReceived(51, ANNOUNCE, "", b"hello"))

    assert sender.answers == [Answer(51, OK, "")]
    assert sender.take() == []
    expected = [ev.BroadcastReceived(0, ANNOUNCE, "sender", b"hello")]
    assert b.take() == expected and c.take() == expected
    received = heard.get(timeout=2)
    assert (received.message, received.publisher) == (b"hello", "sender")


def test_the_servers_own_broadcast_reaches_every_peer_but_not_itself(world):
    a, gone = world.peer("a"), world.peer("gone")
    gone.gone = True
    heard = world.broker.listen(ANNOUNCE, bytes)
    assert world.broker.broadcast(ANNOUNCE, b"all") == 1  # the one still there
    assert a.take() == [ev.BroadcastReceived(0, ANNOUNCE, "", b"all")]
    assert len(heard) == 0


# ------------------------------------------------------------ refused frames


@pytest.mark.parametrize("event", [
    ev.ConsumeReceived(61, 1, WORK, MAX_PREFETCH + 1, False),
    ev.SubscribeReceived(61, 1, CHANGED, ">", MAX_QUEUE_LIMIT + 1, 0),
    ev.SubscribeReceived(61, 1, CHANGED, ">", 0, 9),
], ids=["prefetch", "queue_limit", "policy"])
def test_a_frame_asking_for_absurd_credit_is_answered_invalid_argument(world, event):
    a = world.peer("a")
    world.broker.handle(a, event)
    [answer] = a.answers
    assert (answer.call_id, answer.code) == (61, StatusCode.INVALID_ARGUMENT)
    assert world.broker._subscribed == {} and world.broker._work.consumers == 0


def test_a_credit_grant_past_the_maximum_is_refused_without_an_answer(world):
    a, producer = world.peer("a"), world.peer("producer")
    world.consume(a, 1, prefetch=1)
    world.broker.handle(a, ev.CreditReceived(0, 0, 1, MAX_PREFETCH))  # no call to answer
    assert a.answers == []
    world.produce(producer, b"one")
    world.produce(producer, b"two")
    assert [f.task_id for f in a.take()] == [1]  # the credit it had, no more


@pytest.mark.parametrize("event", [
    ev.SubscribeReceived(71, 1, "/no.Such/Method", ">", 0, 0),
    ev.ProduceReceived(71, "/onedrive_rpc.testing.Echo/Nope", b""),
    ev.ConsumeReceived(71, 1, CHANGED, 1, False),   # not a work queue
    ev.BroadcastReceived(71, ECHO, "", b""),        # not a broadcast
    ev.PublishReceived(71, WORK, "t", b""),         # not publish/subscribe
], ids=["unknown", "unknown-queue", "subscribe-to-queue", "broadcast-a-call", "publish-to-queue"])
def test_an_unknown_method_or_one_of_another_pattern_is_answered_unimplemented(world, event):
    a = world.peer("a")
    world.broker.handle(a, event)
    [answer] = a.answers
    assert (answer.call_id, answer.code) == (71, StatusCode.UNIMPLEMENTED)
    assert a.take() == []


def test_a_frame_a_server_does_not_take_is_refused(world):
    a = world.peer("a")
    world.broker.handle(a, ev.DeliverReceived(1, "t", "x", 1, 0, b""))  # no call: logged
    world.broker.handle(a, ev.NotifyReceived(ECHO, b"", {}))
    assert a.answers == [] and a.take() == []


# ------------------------------------------------- the server's own receivers


def test_the_servers_own_subscription_hears_what_peers_publish(world):
    publisher = world.peer("pub")
    sub = world.broker.subscribe(CHANGED, "drive.>", bytes)
    world.publish(publisher, "drive.a", b"x")
    world.publish(publisher, "other", b"y")
    received = sub.get(timeout=2)
    assert (received.message, received.topic, received.publisher, received.publisher_seq) \
        == (b"x", "drive.a", "pub", 1)
    assert len(sub) == 0
    sub.cancel()
    assert world.broker._subscribed == {}


def test_the_servers_own_consumer_takes_tasks_and_acknowledges_them(world):
    producer = world.peer("producer")
    finished = Event()
    seen = []

    def handle(payload, context):
        seen.append((payload, context.task_id, context.attempt))
        finished.set()

    world.broker.consume(WORK, bytes, handle)
    world.produce(producer, b"job")
    assert finished.wait(timeout=2)
    assert seen == [(b"job", 1, 1)]
    stats = world.broker.queue_stats(WORK)
    assert (stats.completed, stats.in_flight) == (1, 0)


def test_closing_the_broker_ends_the_servers_own_receivers(world):
    sub = world.broker.subscribe(CHANGED, ">", bytes)
    heard = world.broker.listen(ANNOUNCE, bytes)
    consumer = world.broker.consume(WORK, bytes, lambda payload, context: None)
    world.broker.close()
    for receiver in (sub, heard):
        with pytest.raises(RpcError) as raised:
            receiver.get(timeout=2)
        assert raised.value.code == StatusCode.UNAVAILABLE
    assert consumer.stopped
    # Nothing for them afterwards, and nothing fails.
    world.broker.publish(CHANGED, "t", b"x")
    world.broker.produce(WORK, b"job")
    world.broker.broadcast(ANNOUNCE, b"x", skip=world.peer("a"))


# ------------------------------------------- interceptors and authorize=


class Asked:
    """authorize=: records the questions, refuses the subjects in `deny`."""

    def __init__(self, *deny):
        self.deny = set(deny)
        self.asked = []

    def __call__(self, identity, action, method, target):
        self.asked.append((identity.subject, action, method, target))
        return identity.subject not in self.deny


@pytest.fixture
def asked():
    return Asked("mallory")


@pytest.fixture
def guarded(asked):
    """A World whose broker asks `asked` before each peer's action."""
    world = World(interception([], asked))
    for name in ("alice", "mallory"):
        world.peer(name).origin = CallOrigin(None, f"fake://{name}", None,
                                             Identity("token", name))
    return world


def test_the_broker_asks_before_each_pattern_action_and_not_for_what_follows(guarded, asked):
    alice, mallory = guarded.outlets
    assert guarded.subscribe(alice, 1, "a.>").code == StatusCode.OK
    guarded.publish(alice, "a.b", b"p")
    assert guarded.consume(alice, 7).code == StatusCode.OK
    assert guarded.produce(alice, b"t").code == StatusCode.OK
    (task,) = [frame for frame in alice.take() if isinstance(frame, ev.TaskReceived)]
    guarded.done(alice, 7, task.task_id)
    guarded.broker.handle(alice, ev.CreditReceived(0, 5, 1, 0))
    guarded.broker.handle(alice, ev.ConsumeReceived(2, 7, WORK, 0, True))
    guarded.broker.handle(alice, ev.UnsubscribeReceived(1))
    assert asked.asked == [("alice", "subscribe", CHANGED, "a.>"),
                           ("alice", "publish", CHANGED, "a.b"),
                           ("alice", "consume", WORK, WORK),
                           ("alice", "produce", WORK, WORK)]


def test_a_refused_pattern_action_is_answered_permission_denied_and_changes_nothing(guarded):
    alice, mallory = guarded.outlets
    guarded.subscribe(alice, 1, ">")
    answer = guarded.subscribe(mallory, 1, ">")
    assert answer.code == StatusCode.PERMISSION_DENIED
    assert "may not subscribe" in answer.message
    guarded.publish(mallory, "a.b", b"forged", call_id=9)
    assert mallory.answers.pop().code == StatusCode.PERMISSION_DENIED
    assert guarded.produce(mallory, b"forged").code == StatusCode.PERMISSION_DENIED
    assert guarded.consume(mallory, 3).code == StatusCode.PERMISSION_DENIED
    assert alice.take() == [] and mallory.take() == []
    assert guarded.broker.queue_stats(WORK).produced == 0


def test_listen_is_asked_once_per_connection_and_method_and_forgotten_with_it(guarded, asked):
    alice, mallory = guarded.outlets
    for text in ("one", "two"):
        assert guarded.broker.broadcast(ANNOUNCE, text.encode()) == 1
    assert [frame.payload for frame in alice.take()] == [b"one", b"two"]
    assert mallory.take() == []
    listens = [question for question in asked.asked if question[1] == "listen"]
    assert sorted(listens) == [("alice", "listen", ANNOUNCE, ""), ("mallory", "listen", ANNOUNCE, "")]
    guarded.broker.forget(mallory, lost=False)
    asked.deny.clear()
    assert guarded.broker.broadcast(ANNOUNCE, b"three") == 2
    assert [frame.payload for frame in mallory.take()] == [b"three"]


# ------------------------------------------------------------------ block

BLOCK = int(Policy.BLOCK_PUBLISHER)
COST = publish_cost(100)


@pytest.fixture
def windowed() -> World:
    """A broker giving each publisher a window of 4 messages of 100 bytes."""
    return World(limits=Limits(publish_window=4 * COST))


def test_a_block_subscriber_past_its_limit_holds_its_publishers_window(windowed):
    sub, pub = windowed.peer("sub"), windowed.peer("pub")
    assert windowed.subscribe(sub, 1, ">", queue_limit=2, policy=BLOCK).code == StatusCode.OK
    for _ in range(4):  # 2 within credit, 2 queued: cost back by halves
        windowed.publish(pub, "t", bytes(100))
    assert pub.grants == [2 * COST, 2 * COST]
    for _ in range(3):  # past the queue's limit: queued, and held
        windowed.publish(pub, "t", bytes(100))
    state = windowed.broker._topics[CHANGED].subscription(sub, 1)
    assert (state.queued, state.dropped) == (5, 0)
    assert pub.grants == [2 * COST, 2 * COST]
    windowed.broker.handle(sub, ev.CreditReceived(0, 1, 0, 2))
    assert pub.grants == [2 * COST, 2 * COST]  # 3 queued: still past its limit
    windowed.broker.handle(sub, ev.CreditReceived(0, 1, 0, 1))
    assert pub.grants == [2 * COST, 2 * COST, 2 * COST]  # within it: back, by halves
    assert [frame.payload for frame in sub.take()] == [bytes(100)] * 5


def test_a_publish_past_the_window_is_refused(windowed):
    sub, pub = windowed.peer("sub"), windowed.peer("pub")
    windowed.subscribe(sub, 1, ">", queue_limit=1, policy=BLOCK)
    answers = []
    for call_id in range(1, 12):
        windowed.publish(pub, "t", bytes(100), call_id=call_id)
        answers.append(pub.answers.pop().code)
    assert StatusCode.RESOURCE_EXHAUSTED in answers
    refused = answers.index(StatusCode.RESOURCE_EXHAUSTED)
    assert set(answers[:refused]) == {StatusCode.OK}
    assert windowed.broker._topics[CHANGED].subscription(sub, 1).queued <= 1 + 4


def test_a_lost_block_subscriber_ends_and_lets_publishers_go(windowed):
    sub, pub = windowed.peer("sub"), windowed.peer("pub")
    windowed.subscribe(sub, 1, ">", queue_limit=1, policy=BLOCK)
    for _ in range(4):  # one delivered, one queued, two held
        windowed.publish(pub, "t", bytes(100))
    assert pub.grants == [2 * COST]
    sub.suspended = True
    windowed.broker.suspended(sub)
    assert pub.grants == [2 * COST, 2 * COST]
    assert [code for code, _ in sub.slow_closes] == [StatusCode.RESOURCE_EXHAUSTED]
    assert "its connection was lost" in sub.slow_closes[0][1]
    # A publish that would be held by a suspended subscriber ends it at once.
    windowed.subscribe(sub, 2, ">", queue_limit=1, policy=BLOCK)
    sub.slow_closes.clear()
    for _ in range(3):
        windowed.publish(pub, "t", bytes(100))
    assert sub.slow_closes and windowed.broker._topics[CHANGED].subscriptions() == []


def test_a_gone_publisher_or_subscriber_frees_what_the_holds_kept(windowed):
    sub, pub = windowed.peer("sub"), windowed.peer("pub")
    windowed.subscribe(sub, 1, ">", queue_limit=1, policy=BLOCK)
    for _ in range(4):
        windowed.publish(pub, "t", bytes(100))
    windowed.broker.forget(pub, lost=True)
    windowed.broker.forget(sub, lost=True)
    assert windowed.broker._holds._holds == {} and windowed.broker._holds._windows == {}


# ------------------------------------------- the backend's cross-server hooks


class RelayRecorder(InProcess):
    """The in-process backend, recording what the front asks it to relay
    to other servers."""

    def __init__(self) -> None:
        super().__init__()
        self.relayed: List[Tuple[Any, ...]] = []

    def interest(self, method: str) -> None:
        self.relayed.append(("interest", method))

    def no_interest(self, method: str) -> None:
        self.relayed.append(("no_interest", method))

    def publish(self, method: str, topic: str, payload: bytes, publisher: str,
                seq: int) -> None:
        self.relayed.append(("publish", method, topic, payload, publisher, seq))

    def hold(self, method: str, publisher: str, held: bool) -> None:
        self.relayed.append(("hold", method, publisher, held))

    def broadcast(self, method: str, payload: bytes, origin: str) -> None:
        self.relayed.append(("broadcast", method, payload, origin))

    def take(self) -> List[Tuple[Any, ...]]:
        relayed, self.relayed = self.relayed, []
        return relayed


@pytest.fixture
def relay() -> RelayRecorder:
    return RelayRecorder()


@pytest.fixture
def linked(relay) -> World:
    return World(backend=relay)


def test_the_backend_hears_of_the_first_and_last_subscription_of_a_method(linked, relay):
    a, b = linked.peer("a"), linked.peer("b")
    linked.subscribe(a, 1, ">")
    linked.subscribe(b, 1, "x.>")
    assert relay.take() == [("interest", CHANGED)]
    linked.broker.handle(a, ev.UnsubscribeReceived(1))
    assert relay.take() == []
    linked.broker.forget(b, lost=True)
    assert relay.take() == [("no_interest", CHANGED)]


def test_every_publish_here_is_handed_to_the_backend_with_its_seq(linked, relay):
    pub = linked.peer("pub")
    linked.publish(pub, "a.b", b"one")  # no subscriber here: relayed all the same
    linked.publish(pub, "a.b", b"two")
    linked.broker.publish(CHANGED, "c", b"mine")
    assert relay.take() == [("publish", CHANGED, "a.b", b"one", "pub", 1),
                            ("publish", CHANGED, "a.b", b"two", "pub", 2),
                            ("publish", CHANGED, "c", b"mine", "the-server", 1)]


def test_a_message_from_another_server_reaches_the_subscribers_here_only(linked, relay):
    a = linked.peer("a")
    linked.subscribe(a, 1, ">")
    relay.take()
    linked.broker.on_message(CHANGED, "t", b"far", "elsewhere", 7)
    assert a.take() == [deliver(1, "t", "elsewhere", 7, b"far")]
    assert relay.take() == []  # not sent back out


def test_a_block_subscriber_behind_on_a_remote_publisher_holds_it_there(linked, relay):
    a = linked.peer("a")
    linked.subscribe(a, 1, ">", queue_limit=1, policy=BLOCK)
    relay.take()
    for seq in (1, 2, 3):  # 1 within credit, 1 queued, 1 past the limit
        linked.broker.on_message(CHANGED, "t", b"m", "far", seq)
    assert relay.take() == [("hold", CHANGED, "far", True)]
    linked.broker.handle(a, ev.CreditReceived(0, 1, 0, 2))
    assert relay.take() == [("hold", CHANGED, "far", False)]


def test_broadcasts_cross_both_ways(linked, relay):
    sender, b = linked.peer("sender"), linked.peer("b")
    heard = linked.broker.listen(ANNOUNCE, bytes)
    linked.broker.handle(sender, ev.BroadcastReceived(51, ANNOUNCE, "", b"out"))
    assert relay.take() == [("broadcast", ANNOUNCE, b"out", "sender")]
    heard.get(timeout=2)
    sender.take(), b.take()

    linked.broker.on_broadcast(ANNOUNCE, b"in", "far")
    expected = [ev.BroadcastReceived(0, ANNOUNCE, "far", b"in")]
    assert sender.take() == expected and b.take() == expected
    assert heard.get(timeout=2).message == b"in"
    assert relay.take() == []
