"""One work queue's state, no I/O: each task is with one consumer at a time,
tasks are shared out fairly, failures are retried then dead-lettered, and
nothing is lost, duplicated or acknowledged by a consumer that no longer
holds it."""
from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from onedrive_rpc.core.workqueue import (
    CONSUMER_LOST, MAX_ERROR_CHARS, MAX_PREFETCH, Assignment, DeadLetter, QueueFull, TaskState,
    WorkQueue)

NAME = "/pkg.Svc/UploadQueue"


def queue_with(tasks=0, consumers=(), prefetch=10, **kwargs):
    queue = WorkQueue(NAME, **kwargs)
    for i in range(tasks):
        queue.put(b"t%d" % (i + 1), 0.0)
    for key in consumers:
        queue.add_consumer(key, prefetch)
    return queue


def test_put_numbers_tasks_and_dispatch_waits_for_consumers():
    queue = WorkQueue(NAME)
    assert [queue.put(b"x", 0.0) for _ in range(3)] == [1, 2, 3]
    assert queue.dispatch() == []
    assert queue.stats().ready == 3 and queue.stats().produced == 3
    queue.add_consumer("a", 1)
    assert queue.dispatch() == [Assignment("a", 1, 1, b"x")]
    assert queue.task(1).state is TaskState.IN_FLIGHT and queue.task(1).consumer == "a"
    assert queue.task(2).state is TaskState.READY


def test_each_task_goes_to_exactly_one_consumer():
    queue = queue_with(tasks=50, consumers="abcde", prefetch=7)
    made = queue.dispatch()
    assert len(made) == 35
    assert len({a.task_id for a in made}) == 35
    assert queue.dispatch() == []  # no credit left: nothing is handed out twice
    assert queue.stats().ready == 15 and queue.stats().in_flight == 35


def test_distribution_is_round_robin_not_fill_first():
    queue = queue_with(tasks=8, consumers="abcd", prefetch=10)
    made = queue.dispatch()
    assert [a.consumer for a in made] == list("abcdabcd")
    assert [a.task_id for a in made] == list(range(1, 9))


def test_rotation_carries_over_between_dispatches():
    queue = queue_with(consumers="abcd", prefetch=3)
    delivered: Counter = Counter()
    for round_ in range(200):
        for _ in range(round_ % 3 + 1):  # uneven batches
            queue.put(b"p", float(round_))
        made = queue.dispatch()
        delivered.update(a.consumer for a in made)
        for a in made:
            assert queue.done(a.consumer, a.task_id, True, now=float(round_)) is None
        assert max(delivered.values()) - min(delivered.values()) <= 1
    assert sum(delivered.values()) == queue.stats().completed == queue.stats().produced


def test_prefetch_limits_in_flight_and_done_returns_credit():
    queue = queue_with(tasks=5, consumers="a", prefetch=2)
    assert [a.task_id for a in queue.dispatch()] == [1, 2]
    assert queue.dispatch() == []
    assert queue.consumer("a").credit == 0 and queue.consumer("a").in_flight == (1, 2)
    queue.done("a", 2, True, now=1.0)
    assert queue.consumer("a").credit == 1
    assert [a.task_id for a in queue.dispatch()] == [3]
    queue.grant("a", 2)
    assert [a.task_id for a in queue.dispatch()] == [4, 5]
    assert queue.consumer("a").in_flight == (1, 3, 4, 5)


def test_grant_and_prefetch_are_bounded():
    queue = WorkQueue(NAME)
    for bad in (0, -1, MAX_PREFETCH + 1, 1.5, True):
        with pytest.raises(ValueError, match="prefetch must be an integer from 1 to 10000"):
            queue.add_consumer("a", bad)
    queue.add_consumer("a", MAX_PREFETCH - 1)
    with pytest.raises(ValueError, match="already has a consumer 'a'"):
        queue.add_consumer("a", 1)
    with pytest.raises(ValueError, match="must be an integer >= 1, not 0"):
        queue.grant("a", 0)
    with pytest.raises(ValueError, match="would let it hold 10001 tasks"):
        queue.grant("a", 2)
    queue.grant("a", 1)
    with pytest.raises(KeyError, match="has no consumer 'b'"):
        queue.grant("b", 1)
    with pytest.raises(KeyError, match="has no consumer 'b'"):
        queue.remove_consumer("b", False, 0.0)


def test_constructor_rejects_bad_limits():
    with pytest.raises(ValueError, match="max_attempts must be an integer >= 1, not 0"):
        WorkQueue(NAME, max_attempts=0)
    with pytest.raises(ValueError, match="non-empty string"):
        WorkQueue("")
    with pytest.raises(TypeError, match="payload must be bytes, not str"):
        WorkQueue(NAME).put("text", 0.0)  # type: ignore[arg-type]


def test_failure_requeues_at_front_and_prefers_another_consumer():
    queue = queue_with(tasks=3, consumers="a", prefetch=1)
    first, = queue.dispatch()
    assert first == Assignment("a", 1, 1, b"t1")
    queue.add_consumer("b", 1)
    assert queue.dispatch() == [Assignment("b", 2, 1, b"t2")]
    queue.done("b", 2, True, now=1.0)
    # "a" fails task 1: "b" has credit and is next in turn anyway.
    assert queue.done("a", 1, False, "boom", now=2.0) is None
    assert queue.ready_ids() == [1, 3]
    assert queue.task(1).attempts == 1 and queue.task(1).last_error == "boom"
    assert queue.dispatch() == [Assignment("b", 1, 2, b"t1"), Assignment("a", 3, 1, b"t3")]
    assert queue.stats().failed_attempts == 1 and queue.stats().redelivered == 1


def test_failed_task_skips_its_consumer_even_when_that_one_is_next_in_turn():
    queue = queue_with(tasks=1, consumers="ab", prefetch=2)
    assert queue.dispatch() == [Assignment("a", 1, 1, b"t1")]  # rotation is now b, a
    queue.put(b"t2", 0.0)
    assert queue.dispatch() == [Assignment("b", 2, 1, b"t2")]  # rotation is now a, b
    queue.done("a", 1, False, "boom", now=1.0)
    assert queue.dispatch() == [Assignment("b", 1, 2, b"t1")]


def test_failed_task_returns_to_its_consumer_when_no_other_has_credit():
    queue = queue_with(tasks=1, consumers="ab", prefetch=1)
    queue.put(b"t2", 0.0)
    assert [a.consumer for a in queue.dispatch()] == ["a", "b"]
    queue.done("a", 1, False, "boom", now=1.0)
    assert queue.dispatch() == [Assignment("a", 1, 2, b"t1")]


def test_task_is_dead_lettered_after_max_attempts():
    queue = queue_with(tasks=1, consumers="a", prefetch=1, max_attempts=3)
    for attempt in (1, 2):
        assert queue.dispatch() == [Assignment("a", 1, attempt, b"t1")]
        assert queue.done("a", 1, False, f"fail {attempt}", now=float(attempt)) is None
    assert queue.dispatch() == [Assignment("a", 1, 3, b"t1")]
    letter = queue.done("a", 1, False, "fail 3", now=3.0)
    assert letter == DeadLetter(1, 3, "fail 3", b"t1", 3.0)
    assert queue.dead_letters() == [letter]
    assert queue.task(1).state is TaskState.DEAD
    assert queue.dispatch() == []
    stats = queue.stats()
    assert (stats.ready, stats.in_flight, stats.dead, stats.failed_attempts) == (0, 0, 1, 3)
    assert queue.queued_bytes == 0
    assert queue.consumer("a").credit == 1


def test_dead_lettered_counts_every_task_that_died_even_once_replayed_or_purged():
    queue = queue_with(tasks=3, consumers="a", prefetch=3, max_attempts=1, max_dead_letters=2)
    assert queue.stats().dead_lettered == 0
    for a in queue.dispatch():
        queue.done("a", a.task_id, False, "boom", now=1.0)
    stats = queue.stats()
    assert (stats.dead, stats.dead_lettered) == (2, 3)  # the oldest was let go: still counted
    assert queue.replay() == 2
    for a in queue.dispatch():
        queue.done("a", a.task_id, False, "again", now=2.0)
    queue.purge_dead_letters()
    assert (queue.stats().dead, queue.stats().dead_lettered) == (0, 5)


def test_error_text_is_truncated():
    queue = queue_with(tasks=1, consumers="a", max_attempts=1)
    queue.dispatch()
    letter = queue.done("a", 1, False, "x" * 10_000, now=0.0)
    assert letter.last_error == "x" * MAX_ERROR_CHARS


def test_lost_consumer_requeues_at_front_in_task_order_and_counts_the_attempt():
    queue = queue_with(tasks=4, consumers="ab", prefetch=2)
    queue.put(b"t5", 0.0)
    assert [(a.consumer, a.task_id) for a in queue.dispatch()] == [
        ("a", 1), ("b", 2), ("a", 3), ("b", 4)]
    assert queue.remove_consumer("a", True, 5.0) == []
    assert queue.ready_ids() == [1, 3, 5]
    assert queue.task(1).attempts == 1 and queue.task(1).last_error == CONSUMER_LOST
    assert queue.stats().consumers == 1 and queue.stats().in_flight == 2
    queue.done("b", 2, True, now=6.0)
    assert queue.dispatch() == [Assignment("b", 1, 2, b"t1")]


def test_orderly_remove_requeues_without_counting_an_attempt():
    queue = queue_with(tasks=3, consumers="a", prefetch=3)
    queue.put(b"t4", 0.0)
    queue.dispatch()
    queue.done("a", 2, True, now=1.0)
    assert queue.remove_consumer("a", False, 2.0) == []
    assert queue.ready_ids() == [1, 3, 4]
    assert queue.stats().failed_attempts == 0
    queue.add_consumer("b", 5)
    assert queue.dispatch() == [Assignment("b", 1, 1, b"t1"), Assignment("b", 3, 1, b"t3"),
                                Assignment("b", 4, 1, b"t4")]
    assert queue.stats().redelivered == 2


def test_a_task_that_kills_its_consumers_is_dead_lettered():
    queue = queue_with(tasks=1, max_attempts=2)
    queue.add_consumer("a", 1)
    queue.dispatch()
    assert queue.remove_consumer("a", True, 1.0) == []
    queue.add_consumer("b", 1)
    assert queue.dispatch() == [Assignment("b", 1, 2, b"t1")]
    assert queue.remove_consumer("b", True, 2.0) == [DeadLetter(1, 2, CONSUMER_LOST, b"t1", 2.0)]
    assert queue.stats().ready == 0 and queue.stats().dead == 1


def test_stale_done_is_ignored():
    queue = queue_with(tasks=1, consumers="ab", prefetch=1)
    assert queue.dispatch() == [Assignment("a", 1, 1, b"t1")]
    queue.remove_consumer("a", True, 1.0)
    assert queue.dispatch() == [Assignment("b", 1, 2, b"t1")]
    before = queue.stats()
    # The old holder, gone or back under the same key, cannot settle it.
    assert queue.done("a", 1, True, now=2.0) is None
    queue.add_consumer("a", 1)
    assert queue.done("a", 1, True, now=2.0) is None
    assert queue.done("a", 1, False, "late", now=2.0) is None
    assert queue.done("b", 99, True, now=2.0) is None
    assert queue.stats() == before._replace(consumers=2)
    assert queue.task(1).consumer == "b" and queue.task(1).attempts == 1
    assert queue.done("b", 1, True, now=3.0) is None
    assert queue.task(1) is None and queue.stats().completed == 1
    assert queue.done("b", 1, True, now=3.0) is None  # a second ack
    assert queue.stats().completed == 1


def test_replay_puts_dead_letters_back_at_the_end_with_fresh_attempts():
    queue = queue_with(tasks=3, consumers="a", prefetch=3, max_attempts=1)
    for a in queue.dispatch():
        queue.done("a", a.task_id, False, "bad", now=1.0)
    assert [d.task_id for d in queue.dead_letters()] == [1, 2, 3]
    queue.put(b"t4", 2.0)
    assert queue.replay([3, 1, 42]) == 2
    assert [d.task_id for d in queue.dead_letters()] == [2]
    assert queue.ready_ids() == [4, 1, 3]
    assert queue.task(1).state is TaskState.READY and queue.task(1).attempts == 0
    assert [(a.task_id, a.attempt) for a in queue.dispatch()] == [(4, 1), (1, 1), (3, 1)]
    assert queue.replay() == 1 and queue.dead_letters() == []
    assert queue.replay() == 0


def test_replay_that_does_not_fit_changes_nothing():
    queue = queue_with(tasks=2, consumers="a", prefetch=2, max_attempts=1, max_tasks=2)
    for a in queue.dispatch():
        queue.done("a", a.task_id, False, "bad", now=1.0)
    queue.put(b"t3", 2.0)
    with pytest.raises(QueueFull, match="max_tasks is 2"):
        queue.replay()
    assert len(queue.dead_letters()) == 2 and queue.ready_ids() == [3]


def test_queue_full_by_count_changes_nothing():
    queue = queue_with(tasks=3, max_tasks=3)
    before = queue.stats()
    with pytest.raises(QueueFull, match=r"work queue '/pkg.Svc/UploadQueue' is full: it holds 3 tasks "
                                        r"and max_tasks is 3") as info:
        queue.put(b"x", 1.0)
    assert isinstance(info.value, ValueError) and info.value.limit == "max_tasks"
    assert info.value.queue == NAME
    assert queue.stats() == before
    queue.add_consumer("a", 1)
    queue.dispatch()  # in flight still counts
    with pytest.raises(QueueFull):
        queue.put(b"x", 1.0)
    queue.done("a", 1, True, now=1.0)
    assert queue.put(b"x", 1.0) == 4  # no id was used up by the refusals


def test_queue_full_by_bytes_changes_nothing():
    queue = WorkQueue(NAME, max_bytes=10)
    queue.put(b"123456", 0.0)
    with pytest.raises(QueueFull, match="5 more payload bytes on top of 6 would exceed max_bytes of 10") \
            as info:
        queue.put(b"12345", 0.0)
    assert info.value.limit == "max_bytes"
    assert queue.queued_bytes == 6 and queue.stats().ready == 1
    assert queue.put(b"1234", 0.0) == 2 and queue.queued_bytes == 10


def test_dead_letter_list_is_bounded():
    queue = queue_with(tasks=5, consumers="a", prefetch=5, max_attempts=1, max_dead_letters=3)
    for a in queue.dispatch():
        queue.done("a", a.task_id, False, "bad", now=float(a.task_id))
    assert [d.task_id for d in queue.dead_letters()] == [3, 4, 5]
    assert queue.dead_letters_discarded == 2
    assert queue.task(1) is None
    assert queue.purge_dead_letters() == 3 and queue.dead_letters() == []
    assert queue.purge_dead_letters() == 0


def test_dead_letter_bytes_are_bounded():
    queue = WorkQueue(NAME, max_attempts=1, max_dead_letter_bytes=10)
    queue.add_consumer("a", 5)
    for payload in (b"aaaa", b"bbbb", b"cccc"):
        queue.put(payload, 0.0)
    for a in queue.dispatch():
        queue.done("a", a.task_id, False, "bad", now=0.0)
    assert [d.payload for d in queue.dead_letters()] == [b"bbbb", b"cccc"]
    assert queue.dead_letters_discarded == 1


# ---------------------------------------------------------------- property


class WorkQueueMachine(RuleBasedStateMachine):
    """Random puts, consumers coming and going, outcomes and dispatches,
    checked against a plain model of where every task is."""

    MAX_ATTEMPTS = 2

    @initialize()
    def setup(self):
        self.queue = WorkQueue(NAME, max_attempts=self.MAX_ATTEMPTS, max_tasks=40)
        self.where = {}       # task_id -> "ready" | "dead" | "completed" | consumer key
        self.attempts = {}    # task_id -> attempts counted
        self.window = {}      # consumer key -> credit + in flight
        self.next_key = 0
        self.now = 0.0

    def tick(self):
        self.now += 1.0
        return self.now

    def in_flight(self, key=None):
        return sorted(t for t, w in self.where.items()
                      if w not in ("ready", "dead", "completed") and (key is None or w == key))

    @rule(payload=st.binary(max_size=4))
    def put(self, payload):
        try:
            task_id = self.queue.put(payload, self.tick())
        except QueueFull:
            assert sum(w not in ("dead", "completed") for w in self.where.values()) == 40
            return
        assert task_id == len(self.where) + 1
        self.where[task_id] = "ready"
        self.attempts[task_id] = 0

    @precondition(lambda self: len(self.window) < 5)
    @rule(prefetch=st.integers(1, 3))
    def add_consumer(self, prefetch):
        key = ("conn", self.next_key)
        self.next_key += 1
        self.queue.add_consumer(key, prefetch)
        self.window[key] = prefetch

    @precondition(lambda self: self.window)
    @rule(data=st.data(), lost=st.booleans())
    def remove_consumer(self, data, lost):
        key = data.draw(st.sampled_from(sorted(self.window)))
        held = self.in_flight(key)
        died = self.queue.remove_consumer(key, lost, self.tick())
        del self.window[key]
        dead_ids = {d.task_id for d in died}
        assert dead_ids <= set(held)
        for task_id in held:
            if lost:
                self.attempts[task_id] += 1
            expect_dead = self.attempts[task_id] >= self.MAX_ATTEMPTS
            assert (task_id in dead_ids) == expect_dead
            self.where[task_id] = "dead" if expect_dead else "ready"
        assert self.queue.ready_ids()[:len(held) - len(dead_ids)] == [t for t in held if t not in dead_ids]

    @precondition(lambda self: self.where and self.next_key)
    @rule(data=st.data(), ok=st.booleans())
    def done(self, data, ok):
        key = ("conn", data.draw(st.integers(0, self.next_key - 1)))
        task_id = data.draw(st.sampled_from(sorted(self.where)))
        before = self.queue.stats()
        letter = self.queue.done(key, task_id, ok, "failed", now=self.tick())
        if self.where[task_id] != key:
            assert letter is None and self.queue.stats() == before  # stale: nothing changes
            return
        if ok:
            assert letter is None
            self.where[task_id] = "completed"
            return
        self.attempts[task_id] += 1
        if self.attempts[task_id] >= self.MAX_ATTEMPTS:
            assert letter is not None and letter.task_id == task_id
            self.where[task_id] = "dead"
        else:
            assert letter is None and self.queue.ready_ids()[0] == task_id
            self.where[task_id] = "ready"

    @rule()
    def dispatch(self):
        for a in self.queue.dispatch():
            assert self.where[a.task_id] == "ready"  # never completed, never held elsewhere
            assert a.attempt == self.attempts[a.task_id] + 1
            self.where[a.task_id] = a.consumer

    @rule()
    def replay(self):
        dead = sorted(t for t, w in self.where.items() if w == "dead")
        try:
            assert self.queue.replay() == len(dead)
        except QueueFull:
            return
        for task_id in dead:
            self.where[task_id] = "ready"
            self.attempts[task_id] = 0

    @invariant()
    def every_task_is_in_exactly_one_place(self):
        if not hasattr(self, "queue"):
            return
        counts = Counter("in_flight" if w not in ("ready", "dead", "completed") else w
                         for w in self.where.values())
        stats = self.queue.stats()
        assert (stats.ready, stats.in_flight, stats.dead, stats.completed) == (
            counts["ready"], counts["in_flight"], counts["dead"], counts["completed"])
        assert sorted(self.queue.ready_ids()) == sorted(t for t, w in self.where.items() if w == "ready")
        assert sorted(d.task_id for d in self.queue.dead_letters()) == sorted(
            t for t, w in self.where.items() if w == "dead")
        for key, window in self.window.items():
            info = self.queue.consumer(key)
            assert list(info.in_flight) == self.in_flight(key)
            assert info.credit >= 0 and info.credit + len(info.in_flight) == window  # prefetch holds
        for task_id, w in self.where.items():
            info = self.queue.task(task_id)
            if w == "completed":
                assert info is None
            else:
                assert info.attempts == self.attempts[task_id]

    def teardown(self):
        if not hasattr(self, "queue"):
            return
        # Drained by a healthy consumer, every task ends completed or dead.
        for key in list(self.window):
            for task_id in self.in_flight(key):
                self.where[task_id] = "ready"
            assert self.queue.remove_consumer(key, False, self.tick()) == []
        self.queue.add_consumer("drain", 3)
        while True:
            made = self.queue.dispatch()
            if not made:
                break
            for a in made:
                assert self.where[a.task_id] == "ready"
                self.where[a.task_id] = "completed"
                self.queue.done("drain", a.task_id, True, now=self.tick())
        assert set(self.where.values()) <= {"completed", "dead"}
        stats = self.queue.stats()
        assert stats.ready == stats.in_flight == 0
        assert stats.completed + stats.dead == stats.produced == len(self.where)


WorkQueueMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
test_work_queue_state_machine = WorkQueueMachine.TestCase
