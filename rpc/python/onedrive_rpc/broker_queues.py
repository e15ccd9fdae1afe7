"""The work queues of a server's broker: one per PRODUCER_CONSUMER method.

Tasks go to the consumers that have credit, peers' and this process's
alike; a task comes back to its queue when its consumer withdraws or its
session ends, and becomes a dead letter after too many attempts. The
decisions are core/workqueue.py's; this module only relays them: frames
go to a peer's connection without waiting, tasks of this process's own
consumers to their receivers (patterns.Consumer).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Hashable, Iterable, Iterator, List, Optional, Protocol, Tuple, cast

from . import options_pb2
from .calls import CallOrigin
from .core import events as ev
from .core.pattern_frames import OutFrame, Task
from .core.workqueue import DeadLetter, QueueFull, QueueStats, WorkQueue
from .errors import RpcError, StatusCode
from .logs import Throttled
from .patterns import Consumer, Receivers, TaskContext

__all__ = ["WorkQueues", "TaskOutlet"]

log = logging.getLogger(__name__)
warn = Throttled(log)

_monotonic = time.monotonic

_QUEUE_LIMITS = ("max_attempts", "max_tasks", "max_bytes", "max_dead_letters",
                 "max_dead_letter_bytes")

#: A consumer: (owner, consumer id); an owner is a peer's Outlet, or the
#: broker's token for this process.
ConsumerKey = Tuple[object, int]


class TaskOutlet(Protocol):
    """What the work queues need of a consumer's connection (a part of
    broker.Outlet): a push that does not block."""

    def push(self, frame: OutFrame) -> bool:
        """Send `frame`; False if it did not go out."""
        ...

    @property
    def origin(self) -> CallOrigin:
        """Who the peer is (for logs)."""
        ...


class WorkQueues:
    """The work queues of one broker. `check(method, pattern)` raises
    RpcError unless `method` is served with that pattern; `local` is the
    owner that stands for this process, whose consumers live in `receivers`
    and take their ids from `local_ids` (shared with its subscriptions)."""

    def __init__(self, check: Callable[[str, int], Any], local: Hashable, receivers: Receivers,
                 local_ids: Iterator[int]) -> None:
        self._check = check
        self._local = local
        self._receivers = receivers
        self._local_ids = local_ids
        self._queues: Dict[str, WorkQueue] = {}
        # (owner, consumer id) -> method.
        self._consuming: Dict[ConsumerKey, str] = {}

    # ------------------------------------------------------ from connections

    def on_produce(self, outlet: TaskOutlet, event: ev.ProduceReceived) -> None:
        self.produce(event.method, bytes(event.payload))

    def on_consume(self, outlet: TaskOutlet, event: ev.ConsumeReceived) -> None:
        key = (outlet, event.consumer_id)
        if event.stop:
            if key in self._consuming:
                self._remove_consumer(key, lost=False)
            return
        self._add_consumer(key, event.method, event.prefetch or 1)

    def on_task_done(self, outlet: TaskOutlet, event: ev.TaskDoneReceived) -> None:
        self._task_done((outlet, event.consumer_id), event.task_id, event.code, event.message)

    def grant(self, outlet: TaskOutlet, consumer_id: int, items: int) -> None:
        """A peer's consumer's credit (ValueError past its maximum)."""
        key = (outlet, consumer_id)
        method = self._consuming.get(key)
        if method is not None:
            self._queues[method].grant(key, items)
            self._dispatch(method)

    def forget(self, outlet: TaskOutlet, lost: bool) -> None:
        """`outlet`'s session ended: its consumers' unfinished tasks go back
        to their queues (an attempt used if it was `lost`)."""
        for key in [key for key in self._consuming if key[0] is outlet]:
            self._remove_consumer(key, lost=lost)

    # ------------------------------------------------------------ the queues

    def _queue(self, method: str) -> WorkQueue:
        queue = self._queues.get(method)
        if queue is None:
            self._check(method, options_pb2.PRODUCER_CONSUMER)
            queue = self._queues[method] = WorkQueue(method)
        return queue

    def configure_queue(self, method: str, **limits: int) -> None:
        """Set `max_attempts`, `max_tasks`, `max_bytes`, `max_dead_letters`
        or `max_dead_letter_bytes` of the queue of `method`."""
        queue = self._queue(method)
        for name, value in limits.items():
            if name not in _QUEUE_LIMITS:
                raise TypeError(f"unknown work queue setting {name!r} (known: {', '.join(_QUEUE_LIMITS)})")
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"work queue {method}: {name} must be an integer >= 1, not {value!r}")
        for name, value in limits.items():
            setattr(queue, name, value)

    def queue_stats(self, method: str) -> QueueStats:
        return self._queue(method).stats()

    def every_queue_stats(self) -> Dict[str, QueueStats]:
        """The counts of every queue used so far (produced to or consumed), by method."""
        return {method: queue.stats() for method, queue in self._queues.items()}

    def dead_letters(self, method: str) -> List[DeadLetter]:
        return self._queue(method).dead_letters()

    def replay(self, method: str, task_ids: Optional[Iterable[int]] = None) -> int:
        """Put dead letters (all, or those named) back on the queue."""
        try:
            count = self._queue(method).replay(task_ids)
        except QueueFull as exc:
            raise RpcError(StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        self._dispatch(method)
        return count

    def purge(self, method: str) -> int:
        return self._queue(method).purge_dead_letters()

    def produce(self, method: str, payload: bytes) -> int:
        """Put a task on the queue; returns its id."""
        queue = self._queue(method)
        try:
            task_id = queue.put(payload, _monotonic())
        except QueueFull as exc:
            raise RpcError(StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        self._dispatch(method)
        return task_id

    def _add_consumer(self, key: ConsumerKey, method: str, prefetch: int) -> None:
        queue = self._queue(method)
        try:
            queue.add_consumer(key, prefetch)
        except ValueError as exc:
            raise RpcError(StatusCode.INVALID_ARGUMENT, str(exc)) from None
        self._consuming[key] = method
        self._dispatch(method)

    def _remove_consumer(self, key: ConsumerKey, lost: bool) -> None:
        method = self._consuming.pop(key)
        self._report_dead(method, key, self._queues[method].remove_consumer(key, lost, _monotonic()))
        self._dispatch(method)

    def _task_done(self, key: ConsumerKey, task_id: int, code: int, message: str) -> None:
        method = self._consuming.get(key)
        if method is None:
            return  # a consumer that withdrew, or was given up on
        dead = self._queues[method].done(key, task_id, code == StatusCode.OK, message,
                                         now=_monotonic())
        if dead is not None:
            self._report_dead(method, key, [dead])
        self._dispatch(method)

    def _dispatch(self, method: str) -> None:
        for a in self._queues[method].dispatch():
            key = cast(ConsumerKey, a.consumer)  # the keys made here
            owner, consumer_id = key
            if owner is self._local:
                consumer = self._receivers.consumer(consumer_id)
                if consumer is not None:  # else ended with the broker
                    consumer.task(a.task_id, a.attempt, a.payload)
            elif not cast(TaskOutlet, owner).push(Task(consumer_id, a.task_id, a.attempt,
                                                       a.payload)):
                # Closed under us: forget() will hand the task back.
                log.debug("task %d of %s not sent: connection gone", a.task_id, method)

    def _report_dead(self, method: str, key: ConsumerKey, dead: List[DeadLetter]) -> None:
        """A line per dead letter, naming the consumer of its last attempt
        (a producer of poison tasks can make many: rate-limited)."""
        if not dead:
            return
        owner = key[0]
        origin = None if owner is self._local else cast(TaskOutlet, owner).origin
        by = "this process" if origin is None else origin.who
        for letter in dead:
            warn.warning("dead letter", "dead letter: task %d of %s after %d attempts, the last "
                         "by %s: %s", letter.task_id, method, letter.attempts, by,
                         letter.last_error, extra=origin.fields if origin is not None else None)

    # ------------------------------------------------- this process's consumers

    def consume(self, method: str, decode: Callable[[Any], Any],
                handler: Callable[[Any, TaskContext], Any], prefetch: int = 1) -> Consumer:
        """Consume tasks of `method` in this process (see Peer.consume)."""
        consumer_id = next(self._local_ids)
        key = (self._local, consumer_id)
        consumer = Consumer(
            consumer_id, method, prefetch, decode, handler,
            done=lambda task_id, code, message: self._task_done(key, task_id, code, message),
            withdraw=self._local_withdraw)
        self._receivers.add_consumer(consumer)
        try:
            self._add_consumer(key, method, prefetch)
        except RpcError:
            self._receivers.remove_consumer(consumer_id)
            raise
        return consumer

    def _local_withdraw(self, consumer: Consumer) -> None:
        self._receivers.remove_consumer(consumer.id)
        key = (self._local, consumer.id)
        if key in self._consuming:
            self._remove_consumer(key, lost=False)
