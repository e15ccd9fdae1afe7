"""The work queues of a server's broker, as its front sees them: one per
PRODUCER_CONSUMER method, their state in the broker's backend.

Tasks go to the consumers that have credit, peers' and this process's
alike; a task comes back to its queue when its consumer withdraws or its
session ends, and becomes a dead letter after too many attempts. Those
decisions are the backend's (brokers.InProcess: core/workqueue.py's). This
module is the front's side: it checks that a method is a work queue, knows
which consumers belong to which session, turns frames into backend calls,
and delivers what the backend assigns: frames to a peer's connection
without waiting, tasks of this process's own consumers to their receivers
(patterns.Consumer).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Hashable, Iterable, Iterator, List, Optional, Protocol, cast

from . import options_pb2
from .brokers import Backend, ConsumerKey
from .calls import CallOrigin
from .core import events as ev
from .core.pattern_frames import OutFrame, Task
from .core.workqueue import DeadLetter, QueueStats
from .errors import RpcError, StatusCode
from .logs import Throttled
from .patterns import Consumer, Receivers, TaskContext

__all__ = ["WorkQueues", "TaskOutlet"]

log = logging.getLogger(__name__)
warn = Throttled(log)


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
    """The work queues of one broker, kept by `backend`. `check(method,
    pattern)` raises RpcError unless `method` is served with that pattern;
    `local` is the owner that stands for this process, whose consumers live
    in `receivers` and take their ids from `local_ids` (shared with its
    subscriptions)."""

    def __init__(self, backend: Backend, check: Callable[[str, int], Any], local: Hashable,
                 receivers: Receivers, local_ids: Iterator[int]) -> None:
        self._backend = backend
        self._check = check
        self._local = local
        self._receivers = receivers
        self._local_ids = local_ids
        #: The methods checked to be work queues.
        self._methods: Dict[str, None] = {}
        #: The consumers, peers' and this process's: (owner, consumer id) -> method.
        self._consuming: Dict[ConsumerKey, str] = {}

    @property
    def consumers(self) -> int:
        """How many consumers there are, of every queue."""
        return len(self._consuming)

    # ------------------------------------------------------ from connections

    def on_produce(self, outlet: TaskOutlet, event: ev.ProduceReceived) -> None:
        self.produce(event.method, bytes(event.payload))

    def on_consume(self, outlet: TaskOutlet, event: ev.ConsumeReceived) -> None:
        key = (outlet, event.consumer_id)
        if event.stop:
            self._remove_consumer(key, lost=False)
            return
        self._add_consumer(key, event.method, event.prefetch or 1)

    def on_task_done(self, outlet: TaskOutlet, event: ev.TaskDoneReceived) -> None:
        self._backend.done((outlet, event.consumer_id), event.task_id,
                           event.code == StatusCode.OK, event.message)

    def grant(self, outlet: TaskOutlet, consumer_id: int, items: int) -> None:
        """A peer's consumer's credit (ValueError past its maximum)."""
        self._backend.grant((outlet, consumer_id), items)

    def forget(self, outlet: TaskOutlet, lost: bool) -> None:
        """`outlet`'s session ended: its consumers' unfinished tasks go back
        to their queues (an attempt used if it was `lost`)."""
        for key in [key for key in self._consuming if key[0] is outlet]:
            self._remove_consumer(key, lost=lost)

    # ---------------------------------------------------- what the backend does

    def on_task(self, key: ConsumerKey, task_id: int, attempt: int, payload: bytes) -> None:
        """The backend gave task `task_id` to consumer `key`: deliver it."""
        owner, consumer_id = key
        if owner is self._local:
            consumer = self._receivers.consumer(consumer_id)
            if consumer is not None:  # else ended with the broker
                consumer.task(task_id, attempt, payload)
        elif not cast(TaskOutlet, owner).push(Task(consumer_id, task_id, attempt, payload)):
            # Closed under us: forget() will hand the task back.
            log.debug("task %d of %s not sent: connection gone", task_id,
                      self._consuming.get(key))

    def on_dead(self, method: str, key: ConsumerKey, dead: List[DeadLetter]) -> None:
        """A line per dead letter, naming the consumer of its last attempt
        (a producer of poison tasks can make many: rate-limited)."""
        owner = key[0]
        origin = None if owner is self._local else cast(TaskOutlet, owner).origin
        by = "this process" if origin is None else origin.who
        for letter in dead:
            warn.warning("dead letter", "dead letter: task %d of %s after %d attempts, the last "
                         "by %s: %s", letter.task_id, method, letter.attempts, by,
                         letter.last_error, extra=origin.fields if origin is not None else None)

    # ------------------------------------------------------------ the queues

    def _method(self, method: str) -> str:
        """`method`, checked to be a work queue (RpcError if it is not)."""
        if method not in self._methods:
            self._check(method, options_pb2.PRODUCER_CONSUMER)
            self._methods[method] = None
        return method

    def configure_queue(self, method: str, **limits: int) -> None:
        """Set `max_attempts`, `max_tasks`, `max_bytes`, `max_dead_letters`
        or `max_dead_letter_bytes` of the queue of `method`."""
        self._backend.configure_queue(self._method(method), **limits)

    def queue_stats(self, method: str) -> QueueStats:
        return self._backend.queue_stats(self._method(method))

    def every_queue_stats(self) -> Dict[str, QueueStats]:
        """The counts of every queue used so far (produced to or consumed), by method."""
        return self._backend.every_queue_stats()

    def dead_letters(self, method: str) -> List[DeadLetter]:
        return self._backend.dead_letters(self._method(method))

    def replay(self, method: str, task_ids: Optional[Iterable[int]] = None) -> int:
        """Put dead letters (all, or those named) back on the queue."""
        return self._backend.replay(self._method(method), task_ids)

    def purge(self, method: str) -> int:
        return self._backend.purge(self._method(method))

    def produce(self, method: str, payload: bytes, timeout: Optional[float] = None) -> int:
        """Put a task on the queue; returns its id."""
        return self._backend.produce(self._method(method), payload, timeout)

    def _add_consumer(self, key: ConsumerKey, method: str, prefetch: int) -> None:
        self._backend.add_consumer(key, self._method(method), prefetch)
        self._consuming[key] = method

    def _remove_consumer(self, key: ConsumerKey, lost: bool) -> None:
        if self._consuming.pop(key, None) is not None:
            self._backend.remove_consumer(key, lost)

    # ------------------------------------------------- this process's consumers

    def consume(self, method: str, decode: Callable[[Any], Any],
                handler: Callable[[Any, TaskContext], Any], prefetch: int = 1) -> Consumer:
        """Consume tasks of `method` in this process (see Peer.consume)."""
        consumer_id = next(self._local_ids)
        key = (self._local, consumer_id)
        backend = self._backend
        consumer = Consumer(
            consumer_id, method, prefetch, decode, handler,
            done=lambda task_id, code, message: backend.done(key, task_id,
                                                             code == StatusCode.OK, message),
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
        self._remove_consumer((self._local, consumer.id), lost=False)
