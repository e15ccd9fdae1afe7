"""brokers.InProcess through the Backend interface only, as the broker's
front uses it: a fake Inbound records what the backend hands back (tasks,
dead letters); no server, no sockets, no gevent waits."""
from __future__ import annotations

from typing import Any, List, NamedTuple, Tuple

import pytest

from onedrive_rpc.brokers import Backend, ConsumerKey, Inbound, InProcess
from onedrive_rpc.core.workqueue import CONSUMER_LOST, MAX_PREFETCH, DeadLetter
from onedrive_rpc.errors import RpcError, StatusCode

WORK = "/onedrive_rpc.testing.Echo/Work"
A: ConsumerKey = ("peer a", 1)
B: ConsumerKey = ("peer b", 1)


class Given(NamedTuple):
    key: ConsumerKey
    task_id: int
    attempt: int
    payload: bytes


class FakeInbound:
    """The front: records the tasks and dead letters it is given."""

    def __init__(self) -> None:
        self.tasks: List[Given] = []
        self.dead: List[Tuple[str, ConsumerKey, List[DeadLetter]]] = []
        self.other: List[Tuple[Any, ...]] = []

    def take(self) -> List[Given]:
        tasks, self.tasks = self.tasks, []
        return tasks

    def on_task(self, key: ConsumerKey, task_id: int, attempt: int, payload: bytes) -> None:
        self.tasks.append(Given(key, task_id, attempt, payload))

    def on_dead(self, method: str, key: ConsumerKey, letters: List[DeadLetter]) -> None:
        self.dead.append((method, key, letters))

    def on_message(self, method: str, topic: str, payload: bytes, publisher: str,
                   seq: int) -> None:
        self.other.append(("message", method, topic, payload, publisher, seq))

    def on_hold(self, method: str, publisher: str, held: bool) -> None:
        self.other.append(("hold", method, publisher, held))

    def on_broadcast(self, method: str, payload: bytes, origin: str) -> None:
        self.other.append(("broadcast", method, payload, origin))


@pytest.fixture
def front() -> FakeInbound:
    return FakeInbound()


@pytest.fixture
def backend(front: FakeInbound) -> Backend:
    inbound: Inbound = front  # the fake satisfies the Protocol (mypy checks it)
    backend: Backend = InProcess()
    backend.start("server-1", inbound)
    return backend


def test_a_produced_task_goes_to_a_consumer_with_credit_then_done_completes_it(backend, front):
    assert backend.produce(WORK, b"job", None) == 1
    assert front.take() == []  # nobody to take it yet
    backend.add_consumer(A, WORK, 1)
    assert front.take() == [Given(A, 1, 1, b"job")]
    backend.done(A, 1, True, "")
    stats = backend.queue_stats(WORK)
    assert (stats.ready, stats.in_flight, stats.completed, stats.consumers) == (0, 0, 1, 1)


def test_done_gives_credit_back_and_grant_adds_more(backend, front):
    backend.add_consumer(A, WORK, 1)
    for payload in (b"one", b"two", b"three"):
        backend.produce(WORK, payload, None)
    assert [t.task_id for t in front.take()] == [1]
    backend.done(A, 1, True, "")
    assert [t.task_id for t in front.take()] == [2]
    backend.grant(A, 1)
    assert [t.task_id for t in front.take()] == [3]
    with pytest.raises(ValueError):
        backend.grant(A, MAX_PREFETCH)
    backend.grant(("nobody", 9), 1)  # a consumer that withdrew: ignored


def test_a_failed_task_goes_to_another_consumer_with_its_attempt_counted(backend, front):
    backend.add_consumer(A, WORK, 1)
    backend.add_consumer(B, WORK, 1)
    backend.produce(WORK, b"job", None)
    [first] = front.take()
    backend.done(first.key, 1, False, "boom")
    [second] = front.take()
    assert (second.task_id, second.attempt) == (1, 2) and second.key != first.key
    assert backend.queue_stats(WORK).failed_attempts == 1


def test_only_the_holder_of_a_task_acknowledges_it(backend, front):
    backend.add_consumer(A, WORK, 1)
    backend.produce(WORK, b"job", None)
    front.take()
    backend.done(B, 1, True, "")               # not its task
    backend.done(("nobody", 9), 1, True, "")   # not a consumer
    assert backend.queue_stats(WORK).completed == 0


def test_a_task_that_fails_every_attempt_becomes_a_dead_letter_then_replays(backend, front):
    backend.configure_queue(WORK, max_attempts=2)
    backend.add_consumer(A, WORK, 1)
    task_id = backend.produce(WORK, b"poison", None)
    for _ in range(2):
        [given] = front.take()
        backend.done(A, given.task_id, False, "bad input")
    [(method, key, [letter])] = front.dead
    assert (method, key) == (WORK, A)
    assert (letter.task_id, letter.attempts, letter.last_error) == (task_id, 2, "bad input")
    assert backend.dead_letters(WORK) == [letter]

    assert backend.replay(WORK, None) == 1
    assert front.take() == [Given(A, task_id, 1, b"poison")]  # attempts afresh
    assert backend.dead_letters(WORK) == []


def test_purge_drops_the_dead_letters(backend, front):
    backend.configure_queue(WORK, max_attempts=1)
    backend.add_consumer(A, WORK, 2)
    backend.produce(WORK, b"one", None)
    backend.produce(WORK, b"two", None)
    for given in front.take():
        backend.done(A, given.task_id, False, "no")
    assert backend.purge(WORK) == 2
    assert backend.dead_letters(WORK) == [] and backend.queue_stats(WORK).dead_lettered == 2


@pytest.mark.parametrize("lost", [False, True], ids=["withdrew", "lost"])
def test_a_removed_consumer_hands_its_tasks_to_another(backend, front, lost):
    backend.add_consumer(A, WORK, 1)
    backend.produce(WORK, b"job", None)
    front.take()
    backend.add_consumer(B, WORK, 1)
    backend.remove_consumer(A, lost)
    assert front.take() == [Given(B, 1, 2 if lost else 1, b"job")]
    assert backend.queue_stats(WORK).failed_attempts == (1 if lost else 0)
    backend.remove_consumer(A, lost)  # gone already: nothing
    backend.done(A, 1, True, "")      # what it says of its old task counts for nothing
    assert backend.queue_stats(WORK).completed == 0


def test_a_consumer_lost_on_the_last_attempt_leaves_a_dead_letter(backend, front):
    backend.configure_queue(WORK, max_attempts=1)
    backend.add_consumer(A, WORK, 1)
    backend.produce(WORK, b"killer", None)
    front.take()
    backend.remove_consumer(A, True)
    [(_, key, [letter])] = front.dead
    assert key == A and letter.last_error == CONSUMER_LOST


def test_refusals_are_rpc_errors(backend, front):
    backend.configure_queue(WORK, max_tasks=1)
    backend.produce(WORK, b"one", None)
    with pytest.raises(RpcError) as full:
        backend.produce(WORK, b"two", None)
    assert full.value.code == StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(RpcError) as bad:
        backend.add_consumer(A, WORK, MAX_PREFETCH + 1)
    assert bad.value.code == StatusCode.INVALID_ARGUMENT
    with pytest.raises(TypeError):
        backend.configure_queue(WORK, max_size=1)
    with pytest.raises(ValueError):
        backend.configure_queue(WORK, max_attempts=0)


def test_every_queue_stats_lists_the_queues_used(backend, front):
    assert backend.every_queue_stats() == {}
    backend.produce(WORK, b"job", None)
    assert list(backend.every_queue_stats()) == [WORK]


def test_publish_subscribe_and_broadcasts_cross_nothing(backend, front):
    backend.interest("/pkg.S/Changed")
    backend.publish("/pkg.S/Changed", "a.b", b"x", "peer", 1)
    backend.hold("/pkg.S/Changed", "peer", True)
    backend.broadcast("/pkg.S/Announce", b"x", "peer")
    backend.no_interest("/pkg.S/Changed")
    assert front.other == [] and front.tasks == []


def test_a_backend_serves_one_server(backend, front):
    with pytest.raises(RuntimeError):
        backend.start("server-2", front)
    backend.close()
