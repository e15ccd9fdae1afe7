"""The default backend: the work queues live in this server's memory, and
there is no other server to relay publishes, holds or broadcasts to.

Delivery guarantee of its work queues: core/workqueue.py's (at least once,
acknowledged exactly once, dead letters after `max_attempts`); tasks last as
long as the server process. The decisions are core/workqueue.py's; this
module keeps one WorkQueue per method and hands each assignment to the
front at once (Inbound.on_task).
"""
from __future__ import annotations

import time
from typing import Dict, Iterable, List, Optional, cast

from ..core.workqueue import DeadLetter, QueueFull, QueueStats, WorkQueue
from ..errors import RpcError, StatusCode
from .base import ConsumerKey, Inbound

__all__ = ["InProcess"]

_monotonic = time.monotonic

_QUEUE_LIMITS = ("max_attempts", "max_tasks", "max_bytes", "max_dead_letters",
                 "max_dead_letter_bytes")


class InProcess:
    """Work queues in this process (see brokers.Backend)."""

    def __init__(self) -> None:
        self._inbound: Optional[Inbound] = None
        self._queues: Dict[str, WorkQueue] = {}
        # consumer -> the method it consumes.
        self._consuming: Dict[ConsumerKey, str] = {}

    def __repr__(self) -> str:
        return f"<InProcess queues={len(self._queues)} consumers={len(self._consuming)}>"

    # ------------------------------------------------------------ lifecycle

    def start(self, node_id: str, inbound: Inbound) -> None:
        if self._inbound is not None:
            raise RuntimeError("a broker backend serves one server: this one is started already")
        self._inbound = inbound

    def close(self) -> None:
        """Nothing to release: the queues go with the server."""

    # ------------------------------- publish/subscribe: no other server

    def interest(self, method: str) -> None:
        pass

    def no_interest(self, method: str) -> None:
        pass

    def publish(self, method: str, topic: str, payload: bytes, publisher: str,
                seq: int) -> None:
        pass

    def hold(self, method: str, publisher: str, held: bool) -> None:
        pass

    def broadcast(self, method: str, payload: bytes, origin: str) -> None:
        pass

    # ---------------------------------------------------------- work queues

    def _queue(self, method: str) -> WorkQueue:
        queue = self._queues.get(method)
        if queue is None:
            queue = self._queues[method] = WorkQueue(method)
        return queue

    def configure_queue(self, method: str, **limits: int) -> None:
        queue = self._queue(method)
        for name, value in limits.items():
            if name not in _QUEUE_LIMITS:
                raise TypeError(f"unknown work queue setting {name!r} (known: {', '.join(_QUEUE_LIMITS)})")
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"work queue {method}: {name} must be an integer >= 1, not {value!r}")
        for name, value in limits.items():
            setattr(queue, name, value)

    def produce(self, method: str, payload: bytes, timeout: Optional[float] = None) -> int:
        queue = self._queue(method)
        try:
            task_id = queue.put(payload, _monotonic())
        except QueueFull as exc:
            raise RpcError(StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        self._dispatch(method, queue)
        return task_id

    def add_consumer(self, key: ConsumerKey, method: str, prefetch: int) -> None:
        queue = self._queue(method)
        try:
            queue.add_consumer(key, prefetch)
        except ValueError as exc:
            raise RpcError(StatusCode.INVALID_ARGUMENT, str(exc)) from None
        self._consuming[key] = method
        self._dispatch(method, queue)

    def grant(self, key: ConsumerKey, items: int) -> None:
        method = self._consuming.get(key)
        if method is not None:
            queue = self._queues[method]
            queue.grant(key, items)
            self._dispatch(method, queue)

    def done(self, key: ConsumerKey, task_id: int, ok: bool, error: str = "") -> None:
        method = self._consuming.get(key)
        if method is None:
            return  # a consumer that withdrew, or was given up on
        queue = self._queues[method]
        dead = queue.done(key, task_id, ok, error, now=_monotonic())
        if dead is not None:
            self._report_dead(method, key, [dead])
        self._dispatch(method, queue)

    def remove_consumer(self, key: ConsumerKey, lost: bool) -> None:
        method = self._consuming.pop(key, None)
        if method is None:
            return
        queue = self._queues[method]
        self._report_dead(method, key, queue.remove_consumer(key, lost, _monotonic()))
        self._dispatch(method, queue)

    def queue_stats(self, method: str) -> QueueStats:
        return self._queue(method).stats()

    def every_queue_stats(self) -> Dict[str, QueueStats]:
        return {method: queue.stats() for method, queue in self._queues.items()}

    def dead_letters(self, method: str) -> List[DeadLetter]:
        return self._queue(method).dead_letters()

    def replay(self, method: str, task_ids: Optional[Iterable[int]] = None) -> int:
        queue = self._queue(method)
        try:
            count = queue.replay(task_ids)
        except QueueFull as exc:
            raise RpcError(StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        self._dispatch(method, queue)
        return count

    def purge(self, method: str) -> int:
        return self._queue(method).purge_dead_letters()

    # ------------------------------------------------------------- inside

    def _front(self) -> Inbound:
        inbound = self._inbound
        if inbound is None:
            raise RuntimeError("the broker backend is not started (Backend.start)")
        return inbound

    def _dispatch(self, method: str, queue: WorkQueue) -> None:
        assignments = queue.dispatch()
        if assignments:
            on_task = self._front().on_task
            for a in assignments:
                on_task(cast(ConsumerKey, a.consumer), a.task_id, a.attempt, a.payload)

    def _report_dead(self, method: str, key: ConsumerKey, dead: List[DeadLetter]) -> None:
        if dead:
            self._front().on_dead(method, key, dead)
