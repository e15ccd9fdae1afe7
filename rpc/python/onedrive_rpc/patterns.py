"""What a subscriber, a work queue consumer and a broadcast listener hold:
the receiving ends of the publish/subscribe, producer/consumer and
broadcast patterns, the same whether the sender is across a connection or
in this process (a server subscribing to its own topics).

Each keeps what arrived in a bounded inbox worked in order by one greenlet
(or by the caller iterating it), so a slow callback delays only its own
messages and never the connection's reader. Subscription and listener
inboxes are bounded in messages and in payload bytes (`queue_bytes`). `Receivers` is the registry of
them that a peer and a server's broker each hold.
"""
from __future__ import annotations

import logging
from collections import deque
from typing import (Any, Callable, Deque, Dict, Generic, Iterator, List, NamedTuple, Optional,
                    TypeVar)

import gevent
from gevent.event import Event
from gevent.pool import Group
from gevent.queue import Queue
from google.protobuf.message import DecodeError

from .calls import fresh
from .core.pubsub import Policy
from .errors import RpcError, StatusCode
from .logs import Throttled

__all__ = ["Received", "Subscription", "BroadcastListener", "Consumer", "TaskContext",
           "Receivers", "DEFAULT_LISTENER_QUEUE", "DEFAULT_RECEIVER_QUEUE_BYTES"]

log = logging.getLogger(__name__)
warn = Throttled(log)  # a sender that floods us makes one line a second

MsgT = TypeVar("MsgT")

#: Broadcasts a listener keeps unhandled before it drops the oldest.
DEFAULT_LISTENER_QUEUE = 1024
#: Payload bytes a subscription or listener keeps unhandled: its message
#: count alone would let 1,024 large messages (16 MiB frames) wait here.
DEFAULT_RECEIVER_QUEUE_BYTES = 32 * 1024 * 1024


class Received(NamedTuple):
    """One published message (or broadcast) as a subscriber sees it.

    `topic` is empty for broadcasts; `publisher` is the sender's peer id
    (for a broadcast, the peer that sent it, or empty for the server itself)
    and `publisher_seq` its per-publisher counter, which only increases;
    `dropped` is how many messages this subscription lost to its
    slow-consumer policy so far.
    """

    message: Any
    topic: str
    publisher: str
    publisher_seq: int
    dropped: int


class _Inbox(Generic[MsgT]):
    """Arrivals in order, worked by a callback greenlet or by iteration."""

    def __init__(self, description: str, decode: Callable[[Any], Any],
                 callback: Optional[Callable[[Received], None]]) -> None:
        self.description = description
        self._decode = decode
        self._items: Deque[Received] = deque()
        # The payload size of each item, and their sum.
        self._sizes: Deque[int] = deque()
        self.queued_bytes = 0
        self._event = Event()
        self.closed: Optional[RpcError] = None
        self._callback = callback
        self._worker: Optional[gevent.Greenlet] = None
        if callback is not None:
            self._worker = gevent.spawn(self._work)

    def put(self, payload: Any, topic: str, publisher: str, seq: int, dropped: int) -> None:
        if self.closed is not None:
            return
        try:
            message = self._decode(payload)
        except DecodeError as exc:
            log.warning("%s: a message does not parse, skipped: %s", self.description, exc)
            message = None
        size = len(payload)
        self._items.append(Received(message, topic, publisher, seq, dropped))
        self._sizes.append(size)
        self.queued_bytes += size
        self._event.set()

    def drop_oldest(self) -> None:
        self._items.popleft()
        self.queued_bytes -= self._sizes.popleft()

    def __len__(self) -> int:
        return len(self._items)

    def close(self, reason: RpcError) -> None:
        if self.closed is None:
            self.closed = reason
            self._event.set()
            worker = self._worker
            if worker is not None and worker is not gevent.getcurrent():
                worker.kill(block=False)

    def take(self, timeout: Optional[float] = None) -> Received:
        """The next arrival; raises the closing reason once closed and empty."""
        while not self._items:
            if self.closed is not None:
                raise self.closed
            self._event.clear()
            if not self._event.wait(timeout):
                raise RpcError(StatusCode.DEADLINE_EXCEEDED,
                               f"{self.description}: nothing arrived within {timeout}s")
        received = self._items.popleft()
        self.queued_bytes -= self._sizes.popleft()
        self._taken()
        return received

    def _taken(self) -> None:
        """One arrival left the inbox (flow control hooks in here)."""

    def get(self, timeout: Optional[float] = None) -> Received:
        """The next arrival; RpcError once cancelled (CANCELLED), after
        `timeout` (DEADLINE_EXCEEDED), or when no session can carry it any
        more (UNAVAILABLE)."""
        return self.take(timeout)

    def __iter__(self) -> Iterator[Received]:
        """Arrivals as they come; the loop ends when cancelled."""
        while True:
            try:
                yield self.take()
            except RpcError as exc:
                if exc.code == StatusCode.CANCELLED:
                    return
                raise

    def cancel(self) -> None:
        """Stop receiving: the sender forgets it."""
        if self.closed is None:
            self._stop()
            self.close(RpcError(StatusCode.CANCELLED, f"{self.description} was cancelled"))

    def _stop(self) -> None:
        """Tell the sending side (cancel() calls it once)."""

    def __enter__(self) -> "_Inbox[MsgT]":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.cancel()

    def _work(self) -> None:
        callback = self._callback
        assert callback is not None
        while True:
            try:
                received = self.take()
            except RpcError:
                return
            if received.message is None:
                continue
            try:
                callback(received)
            except Exception:
                log.exception("%s: the callback failed", self.description)


class Subscription(_Inbox[MsgT]):
    """Messages published on topics matching `pattern`.

    With a callback, a greenlet calls `callback(received)` for each message
    in order; without one, iterate the subscription (`for r in sub:`) or
    call `get(timeout)`. Each item is a `Received`. `cancel()` stops it;
    `dropped` counts the messages the server dropped for it (its
    slow-consumer policy) so far.

    At most `queue_limit` messages wait here (the server sends no more
    than the credit granted) and at most `queue_bytes` payload bytes
    (DEFAULT_RECEIVER_QUEUE_BYTES, 32 MiB; an attribute that may be
    changed; a larger message is kept alone). Past the bytes, the
    subscription's own policy applies here too: DROP_OLDEST drops the
    oldest waiting, DROP_NEWEST the new message (both counted in
    `overflowed` and given back to the server as credit), DISCONNECT ends
    the subscription with RESOURCE_EXHAUSTED, BLOCK keeps it and grants no
    credit until less waits (the server then holds its publishers back).
    Logged, at most once a second.
    """

    def __init__(self, subscription_id: int, method: str, pattern: str, queue_limit: int,
                 policy: int, decode: Callable[[Any], Any],
                 callback: Optional[Callable[[Received], None]],
                 grant: Callable[[int], None], unsubscribe: Callable[["Subscription"], None],
                 queue_bytes: int = DEFAULT_RECEIVER_QUEUE_BYTES) -> None:
        super().__init__(f"subscription {subscription_id} to {pattern!r} of {method}",
                         decode, callback)
        self.id = subscription_id
        self.method = method
        self.pattern = pattern
        self.queue_limit = queue_limit
        self.queue_bytes = queue_bytes
        self.policy = policy
        self._grant = grant
        self._unsubscribe = unsubscribe
        self._consumed = 0
        # Arrivals from an earlier session, consumed without granting credit
        # to the current one (which never sent them).
        self._ungranted = 0
        self.dropped = 0
        self.received = 0
        #: Messages dropped here: the server sent past its credit, or
        #: more than `queue_bytes` waited.
        self.overflowed = 0
        #: Times it was subscribed again in a new session (the server
        #: restarted, or the old session outlived its grace period): what was
        #: published in between did not reach it.
        self.restarts = 0

    def deliver(self, payload: Any, topic: str, publisher: str, seq: int, dropped: int) -> None:
        self.received += 1
        self.dropped = dropped
        if len(self) >= 2 * self.queue_limit:
            # A server that ignores our credit (ours never does: at most
            # queue_limit wait here, twice that across a new session) must
            # not make memory grow: drop the oldest, and say so once.
            self.drop_oldest()
            self.overflowed += 1
            if self.overflowed == 1:
                log.warning("%s: the server sends past its credit; dropping the oldest",
                            self.description)
        elif self.queued_bytes + len(payload) > self.queue_bytes and len(self):
            if not self._make_room(len(payload)):
                return
        self.put(payload, topic, publisher, seq, dropped)

    def _make_room(self, size: int) -> bool:
        """More than `queue_bytes` would wait: apply the policy. True if
        the new message is to be kept."""
        if self.policy == Policy.DISCONNECT:
            reason = (f"{self.description}: {self.queued_bytes} bytes wait unhandled and a "
                      f"message of {size} bytes would exceed queue_bytes ({self.queue_bytes}); "
                      f"its policy is DISCONNECT")
            warn.warning("receiver-overflow", "%s", reason)
            self.close(RpcError(StatusCode.RESOURCE_EXHAUSTED, reason))
            gevent.spawn(self._stop)  # tells the server; never blocks the reader
            return False
        if self.policy == Policy.DROP_NEWEST:
            self._overflow(1)
            return False
        if self.policy == Policy.BLOCK_PUBLISHER:
            return True  # kept: no credit goes back until below queue_bytes (_taken)
        dropped = 0
        while len(self) and self.queued_bytes + size > self.queue_bytes:
            self.drop_oldest()
            dropped += 1
        self._overflow(dropped)
        return True

    def _overflow(self, count: int) -> None:
        """`count` messages within credit were dropped here: they count as
        consumed, so the server's credit is given back as for those taken."""
        self.overflowed += count
        for _ in range(count):
            self._release()
        warn.warning("receiver-overflow", "%s: more than %d bytes wait unhandled; %d dropped "
                     "(%d so far)", self.description, self.queue_bytes, count, self.overflowed)

    def restarted(self) -> None:
        """Subscribed again in a new session: credit starts afresh there."""
        self._ungranted = len(self)
        self._consumed = 0
        self.restarts += 1

    def _release(self) -> None:
        """One arrival left the inbox, taken or dropped here."""
        if self._ungranted:
            self._ungranted -= 1
        else:
            self._consumed += 1

    def _taken(self) -> None:
        self._release()
        if (self._consumed >= max(1, self.queue_limit // 2) and self.closed is None
                and (self.policy != Policy.BLOCK_PUBLISHER or self.queued_bytes <= self.queue_bytes)):
            consumed, self._consumed = self._consumed, 0
            self._grant(consumed)

    def _stop(self) -> None:
        self._unsubscribe(self)

    def __enter__(self) -> "Subscription[MsgT]":
        return self

    def __repr__(self) -> str:
        return f"<Subscription {self.id} {self.pattern!r} {self.method}>"


class BroadcastListener(_Inbox[MsgT]):
    """Broadcasts of one method, handled like a subscription's messages
    (`callback(received)`, or iterate); at most `queue_limit` wait
    (DEFAULT_LISTENER_QUEUE, 1024) and `queue_bytes` of payload
    (DEFAULT_RECEIVER_QUEUE_BYTES, 32 MiB; a larger broadcast is kept
    alone), then the oldest are dropped and `dropped` counts them (logged
    at most once a second)."""

    def __init__(self, method: str, decode: Callable[[Any], Any],
                 callback: Optional[Callable[[Received], None]],
                 stop: Callable[["BroadcastListener"], None],
                 queue_limit: int = DEFAULT_LISTENER_QUEUE,
                 queue_bytes: int = DEFAULT_RECEIVER_QUEUE_BYTES) -> None:
        if queue_limit < 1:
            raise ValueError(f"queue_limit must be at least 1, not {queue_limit}")
        if queue_bytes < 1:
            raise ValueError(f"queue_bytes must be at least 1, not {queue_bytes}")
        super().__init__(f"listener of {method}", decode, callback)
        self.method = method
        self.queue_limit = queue_limit
        self.queue_bytes = queue_bytes
        self._unlisten = stop
        self.dropped = 0

    def deliver(self, payload: Any, origin: str) -> None:
        size = len(payload)
        if len(self) >= self.queue_limit or self.queued_bytes + size > self.queue_bytes:
            before = self.dropped
            while len(self) and (len(self) >= self.queue_limit
                                 or self.queued_bytes + size > self.queue_bytes):
                self.drop_oldest()
                self.dropped += 1
            warn.warning("listener-overflow", "%s: more than %d broadcasts or %d bytes wait "
                         "unhandled; %d oldest dropped (%d so far)", self.description,
                         self.queue_limit, self.queue_bytes, self.dropped - before, self.dropped)
        self.put(payload, "", origin, 0, self.dropped)

    def _stop(self) -> None:
        self._unlisten(self)


class TaskContext:
    """What a consumer's handler learns about its task: `attempt` (1 the
    first time, more on redelivery after failures or lost consumers),
    `task_id` and the queue's `method`."""

    __slots__ = ("method", "task_id", "attempt")

    def __init__(self, method: str, task_id: int, attempt: int) -> None:
        self.method = method
        self.task_id = task_id
        self.attempt = attempt

    def __repr__(self) -> str:
        return f"<TaskContext {self.method} task {self.task_id} attempt {self.attempt}>"


class Consumer:
    """A consumer of a work queue: runs `handler(task, context)` for each
    task, up to `prefetch` at once. Returning acknowledges the task; raising
    puts it back for another attempt (by any consumer).

    `stop(grace)` stops taking tasks, lets running handlers finish for up
    to `grace` seconds, then withdraws: tasks not finished go back to the
    queue without counting an attempt.
    """

    def __init__(self, consumer_id: int, method: str, prefetch: int,
                 decode: Callable[[Any], Any], handler: Callable[[Any, TaskContext], Any],
                 done: Callable[[int, int, str], None],
                 withdraw: Callable[["Consumer"], None]) -> None:
        self.id = consumer_id
        self.method = method
        self.prefetch = prefetch
        self._decode = decode
        self._handler = handler
        self._done = done
        self._withdraw = withdraw
        # Up to `prefetch` worker greenlets, kept while tasks keep coming (a
        # greenlet per task would cost a fresh stack each time).
        self._tasks: "Queue[Any]" = Queue()
        self._workers = Group()
        self._idle = 0
        self._busy = 0
        self._quiet = Event()
        self._quiet.set()
        self.stopped = False
        #: Tasks finished by this consumer: acknowledged, and failed.
        self.completed = 0
        self.failed = 0

    def task(self, task_id: int, attempt: int, payload: Any) -> None:
        if self.stopped:
            return  # withdrawing: the queue takes it back
        self._tasks.put((task_id, attempt, payload))
        if self._tasks.qsize() > self._idle and len(self._workers) < self.prefetch:
            self._workers.spawn(self._work)

    def _work(self) -> None:
        while not self.stopped:
            self._idle += 1
            try:
                task_id, attempt, payload = self._tasks.get()
            finally:
                self._idle -= 1
            if self.stopped:
                return
            self._busy += 1
            self._quiet.clear()
            try:
                self._run(task_id, attempt, payload)
            finally:
                self._busy -= 1
                if not self._busy:
                    self._quiet.set()

    def _run(self, task_id: int, attempt: int, payload: Any) -> None:
        try:
            task = self._decode(payload)
        except DecodeError as exc:
            self._finish(task_id, StatusCode.INVALID_ARGUMENT, f"task does not parse: {exc}")
            return
        try:
            self._handler(task, TaskContext(self.method, task_id, attempt))
        except Exception as exc:
            log.warning("consumer %d of %s: task %d attempt %d failed: %r", self.id,
                        self.method, task_id, attempt, exc)
            self._finish(task_id, StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        else:
            self._finish(task_id, StatusCode.OK, "")

    def _finish(self, task_id: int, code: int, message: str) -> None:
        if code == StatusCode.OK:
            self.completed += 1
        else:
            self.failed += 1
        try:
            self._done(task_id, code, message)
        except RpcError as exc:
            log.warning("consumer %d of %s: could not report task %d: %s", self.id,
                        self.method, task_id, exc.message)

    @property
    def running(self) -> int:
        """Handlers running now."""
        return self._busy

    def stop(self, grace: Optional[float] = 10.0) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._quiet.wait(grace)
        self._workers.kill(block=False)
        self._withdraw(self)

    def __repr__(self) -> str:
        return f"<Consumer {self.id} of {self.method} prefetch {self.prefetch}>"


class Receivers:
    """The receiving ends one side holds: subscriptions and consumers by
    their id, broadcast listeners by method (a Peer's, or a server's own in
    its Broker). An id names at most one subscription and one consumer at a
    time; once removed, or never added, a receiver gets nothing more through
    the registry (lookups return None, broadcasts pass it by). A broadcast
    reaches the listeners of its method in the order they were added.
    `close_all` ends every receiver held once: subscriptions and listeners
    close with their own copy of the reason, consumers stop taking tasks,
    and the registry is left empty, so receivers added later are not ended.
    Nothing here blocks or does I/O: delivering only fills a receiver's
    bounded inbox, worked by its own greenlet or its caller.
    """

    def __init__(self) -> None:
        self._subscriptions: Dict[int, Subscription[Any]] = {}
        self._consumers: Dict[int, Consumer] = {}
        self._listeners: Dict[str, List[BroadcastListener[Any]]] = {}

    # -------------------------------------------------------- subscriptions

    def add_subscription(self, sub: Subscription[Any]) -> None:
        """Hold `sub` under its id (ValueError if the id is taken)."""
        if sub.id in self._subscriptions:
            raise ValueError(f"subscription id {sub.id} is already in use")
        self._subscriptions[sub.id] = sub

    def remove_subscription(self, subscription_id: int) -> Optional[Subscription[Any]]:
        """Let go of a subscription; the one removed, or None."""
        return self._subscriptions.pop(subscription_id, None)

    def subscription(self, subscription_id: int) -> Optional[Subscription[Any]]:
        return self._subscriptions.get(subscription_id)

    def subscriptions(self) -> List[Subscription[Any]]:
        """Those held now, in the order they were added."""
        return list(self._subscriptions.values())

    # ------------------------------------------------------------ consumers

    def add_consumer(self, consumer: Consumer) -> None:
        """Hold `consumer` under its id (ValueError if the id is taken)."""
        if consumer.id in self._consumers:
            raise ValueError(f"consumer id {consumer.id} is already in use")
        self._consumers[consumer.id] = consumer

    def remove_consumer(self, consumer_id: int) -> Optional[Consumer]:
        """Let go of a consumer; the one removed, or None."""
        return self._consumers.pop(consumer_id, None)

    def consumer(self, consumer_id: int) -> Optional[Consumer]:
        return self._consumers.get(consumer_id)

    def consumers(self) -> List[Consumer]:
        """Those held now, in the order they were added."""
        return list(self._consumers.values())

    # ------------------------------------------------------------ listeners

    def add_listener(self, listener: BroadcastListener[Any]) -> None:
        self._listeners.setdefault(listener.method, []).append(listener)

    def unlisten(self, listener: BroadcastListener[Any]) -> None:
        """Let go of `listener` (its `stop` callback); nothing if not held."""
        listeners = self._listeners.get(listener.method)
        if listeners is not None and listener in listeners:
            listeners.remove(listener)
            if not listeners:
                del self._listeners[listener.method]

    def deliver_broadcast(self, method: str, payload: Any, origin: str) -> int:
        """Hand a broadcast of `method` to its listeners; how many heard it."""
        listeners = list(self._listeners.get(method, ()))
        for listener in listeners:
            listener.deliver(payload, origin)
        return len(listeners)

    # ------------------------------------------------------------------ end

    def close_all(self, reason: RpcError) -> None:
        """No sender will reach them any more: subscriptions and listeners
        end (iterating them raises a copy of `reason`), consumers stop."""
        subscriptions, self._subscriptions = self._subscriptions, {}
        consumers, self._consumers = self._consumers, {}
        listeners, self._listeners = self._listeners, {}
        for sub in subscriptions.values():
            sub.close(fresh(reason))
        for of_method in listeners.values():
            for listener in of_method:
                listener.close(fresh(reason))
        for consumer in consumers.values():
            consumer.stopped = True
