"""The server-side state of one named work queue: producers put tasks,
consumers take them with credit (prefetch) and report each one done.
No I/O, no clock of its own: the driver passes `now` where time matters,
and calls `dispatch()` after anything that may let work move.

Delivery guarantee: at least once, acknowledged exactly once. A task is
assigned to one consumer at a time; only that consumer's `done` for it
counts, so a consumer whose task was taken away (it was lost, or withdrew)
cannot acknowledge it. A task that fails, or whose consumer is lost, is
retried from the front of the queue until it has used `max_attempts`
attempts; then it becomes a dead letter, kept (boundedly) for inspection
and replay. An orderly withdrawal hands tasks back without using an attempt.

Distribution is fair: consumers with free credit take tasks in a rotation
that carries over from one `dispatch()` to the next, not one consumer's
whole prefetch first. A failed task goes to a different consumer than the
one it failed on whenever another has credit.
"""
from __future__ import annotations

import enum
from collections import OrderedDict, deque
from typing import Deque, Dict, Hashable, Iterable, List, NamedTuple, Optional, Tuple

__all__ = [
    "WorkQueue",
    "QueueFull",
    "Assignment",
    "DeadLetter",
    "QueueStats",
    "TaskInfo",
    "TaskState",
    "ConsumerInfo",
    "DEFAULT_MAX_TASKS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_DEAD_LETTERS",
    "MAX_PREFETCH",
    "MAX_ERROR_CHARS",
    "CONSUMER_LOST",
]

# Tasks held (ready + in flight): each costs bookkeeping whatever its size,
# so producers that outrun consumers must be pushed back, not buffered.
DEFAULT_MAX_TASKS = 100_000
# Payload bytes held (ready + in flight): the queue lives in server memory.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# A task that fails this often (or kills this many consumers) is poison:
# stop feeding it to consumers and keep it as a dead letter.
DEFAULT_MAX_ATTEMPTS = 5
# Dead letters kept (count, and payload bytes): they wait for a human, who
# may never come, so the oldest are dropped rather than let them grow.
DEFAULT_MAX_DEAD_LETTERS = 10_000
DEFAULT_MAX_DEAD_LETTER_BYTES = 64 * 1024 * 1024
# Credit one consumer may hold: more than this buys no throughput and lets
# one consumer hoard the queue away from the others.
MAX_PREFETCH = 10_000
# Error text a consumer reports is kept in dead letters; it comes from the
# remote side, so only its start is kept.
MAX_ERROR_CHARS = 1024
#: The error recorded when a consumer is lost with a task in flight.
CONSUMER_LOST = "consumer lost"


class QueueFull(ValueError):
    """A put (or replay) would take the queue past one of its limits."""

    def __init__(self, queue: str, limit: str, message: str) -> None:
        #: The queue's name.
        self.queue = queue
        #: Which limit: "max_tasks" or "max_bytes".
        self.limit = limit
        super().__init__(message)


class Assignment(NamedTuple):
    """Task `task_id` is now in flight at `consumer`: deliver it."""

    consumer: Hashable
    task_id: int
    #: 1 on first delivery, one more after each counted failure.
    attempt: int
    payload: bytes


class DeadLetter(NamedTuple):
    """A task that used all its attempts, kept for inspection and replay."""

    task_id: int
    attempts: int
    last_error: str
    payload: bytes
    died_at: float


class QueueStats(NamedTuple):
    """Counts for monitoring; the first four are current, the rest totals."""

    ready: int
    in_flight: int
    consumers: int
    dead: int
    produced: int
    completed: int
    failed_attempts: int
    #: Deliveries of a task that had been delivered before.
    redelivered: int
    #: Tasks that became dead letters (`dead` is those still kept: replays,
    #: purges and the bounds take them away).
    dead_lettered: int = 0


class TaskState(enum.Enum):
    READY = "ready"
    IN_FLIGHT = "in_flight"
    DEAD = "dead"


class TaskInfo(NamedTuple):
    """Where one task stands (completed tasks are forgotten)."""

    task_id: int
    state: TaskState
    #: Attempts counted so far (failures and lost consumers).
    attempts: int
    #: The consumer holding it, when in flight.
    consumer: Optional[Hashable]
    last_error: str


class ConsumerInfo(NamedTuple):
    key: Hashable
    #: How many more tasks it may be given now.
    credit: int
    #: Its tasks in flight, in task order.
    in_flight: Tuple[int, ...]


class _Task:
    __slots__ = ("task_id", "payload", "attempts", "consumer", "avoid", "delivered",
                 "last_error", "put_at")

    def __init__(self, task_id: int, payload: bytes, put_at: float) -> None:
        self.task_id = task_id
        self.payload = payload
        self.attempts = 0
        #: Key of the consumer it is in flight at; None while ready.
        self.consumer: Optional[Hashable] = None
        #: Key of the consumer it last failed on: give it to another if we can.
        self.avoid: Optional[Hashable] = None
        self.delivered = False
        self.last_error = ""
        self.put_at = put_at


class _Consumer:
    __slots__ = ("key", "credit", "in_flight", "listed")

    def __init__(self, key: Hashable, credit: int) -> None:
        self.key = key
        self.credit = credit
        #: task_id -> None, in delivery order.
        self.in_flight: Dict[int, None] = {}
        #: Whether it is in the rotation of consumers with credit.
        self.listed = False


class WorkQueue:
    """One named work queue: tasks, consumers, their credit and dead letters."""

    def __init__(self, name: str, *, max_tasks: int = DEFAULT_MAX_TASKS,
                 max_bytes: int = DEFAULT_MAX_BYTES,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                 max_dead_letters: int = DEFAULT_MAX_DEAD_LETTERS,
                 max_dead_letter_bytes: int = DEFAULT_MAX_DEAD_LETTER_BYTES) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"work queue name must be a non-empty string, not {name!r}")
        for arg, value in (("max_tasks", max_tasks), ("max_bytes", max_bytes),
                           ("max_attempts", max_attempts),
                           ("max_dead_letters", max_dead_letters),
                           ("max_dead_letter_bytes", max_dead_letter_bytes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"work queue {name!r}: {arg} must be an integer >= 1, not {value!r}")
        self.name = name
        self.max_tasks = max_tasks
        self.max_bytes = max_bytes
        self.max_attempts = max_attempts
        self.max_dead_letters = max_dead_letters
        self.max_dead_letter_bytes = max_dead_letter_bytes

        #: Ready and in-flight tasks by id; completed ones are forgotten.
        self._tasks: Dict[int, _Task] = {}
        #: Ids of ready tasks; the front is delivered first.
        self._ready: Deque[int] = deque()
        self._consumers: Dict[Hashable, _Consumer] = {}
        #: Keys of consumers with credit, in the order they take the next task.
        self._rotation: Deque[Hashable] = deque()
        self._dead: "OrderedDict[int, DeadLetter]" = OrderedDict()
        self._next_id = 1
        self._in_flight = 0
        #: Payload bytes of ready and in-flight tasks.
        self.queued_bytes = 0
        self._dead_bytes = 0
        #: Dead letters dropped, oldest first, to keep within the bounds.
        self.dead_letters_discarded = 0
        self._produced = 0
        self._completed = 0
        self._failed_attempts = 0
        self._redelivered = 0
        self._dead_lettered = 0

    def __repr__(self) -> str:
        return (f"<WorkQueue {self.name!r} ready={len(self._ready)} in_flight={self._in_flight} "
                f"consumers={len(self._consumers)} dead={len(self._dead)}>")

    # ------------------------------------------------------------ producers

    def put(self, payload: bytes, now: float) -> int:
        """Add a task at the end of the queue; returns its id.

        Raises QueueFull, changing nothing, when the queue is at a limit:
        that is the producer's signal to slow down.
        """
        if not isinstance(payload, bytes):
            raise TypeError(f"work queue {self.name!r}: payload must be bytes, "
                            f"not {type(payload).__name__}")
        self._check_room(1, len(payload))
        task_id = self._next_id
        self._next_id += 1
        self._tasks[task_id] = _Task(task_id, payload, now)
        self._ready.append(task_id)
        self.queued_bytes += len(payload)
        self._produced += 1
        return task_id

    def _check_room(self, count: int, size: int) -> None:
        held = len(self._tasks)
        if held + count > self.max_tasks:
            raise QueueFull(self.name, "max_tasks",
                            f"work queue {self.name!r} is full: it holds {held} tasks and "
                            f"max_tasks is {self.max_tasks}")
        if self.queued_bytes + size > self.max_bytes:
            raise QueueFull(self.name, "max_bytes",
                            f"work queue {self.name!r} is full: {size} more payload bytes on top "
                            f"of {self.queued_bytes} would exceed max_bytes of {self.max_bytes}")

    # ------------------------------------------------------------ consumers

    def add_consumer(self, key: Hashable, prefetch: int) -> None:
        """Register a consumer that may hold up to `prefetch` tasks at once."""
        if key in self._consumers:
            raise ValueError(f"work queue {self.name!r} already has a consumer {key!r}")
        if (not isinstance(prefetch, int) or isinstance(prefetch, bool)
                or not 1 <= prefetch <= MAX_PREFETCH):
            raise ValueError(f"work queue {self.name!r}: prefetch must be an integer from 1 to "
                             f"{MAX_PREFETCH}, not {prefetch!r}")
        consumer = _Consumer(key, prefetch)
        self._consumers[key] = consumer
        self._list(consumer)

    def grant(self, key: Hashable, items: int) -> None:
        """Give a consumer more credit (explicit flow control).

        Not needed in the normal course: each `done` gives one back.
        """
        consumer = self._consumer(key)
        if not isinstance(items, int) or isinstance(items, bool) or items < 1:
            raise ValueError(f"work queue {self.name!r}: grant to {key!r} must be an integer "
                             f">= 1, not {items!r}")
        window = consumer.credit + len(consumer.in_flight) + items
        if window > MAX_PREFETCH:
            raise ValueError(f"work queue {self.name!r}: granting {items} to {key!r} would let it "
                             f"hold {window} tasks, more than the maximum prefetch of {MAX_PREFETCH}")
        consumer.credit += items
        self._list(consumer)

    def remove_consumer(self, key: Hashable, lost: bool, now: float) -> List[DeadLetter]:
        """Take a consumer away; its tasks in flight go back to the front.

        `lost` (it vanished mid-task) counts an attempt for each of them, so
        a task that keeps killing its consumers ends as a dead letter; an
        orderly withdrawal does not. Returns the tasks that died of it.
        """
        consumer = self._consumer(key)
        del self._consumers[key]
        if consumer.listed:
            self._rotation.remove(key)
            consumer.listed = False
        requeue: List[int] = []
        died: List[DeadLetter] = []
        for task_id in sorted(consumer.in_flight):
            task = self._tasks[task_id]
            task.consumer = None
            task.avoid = None
            if lost:
                task.last_error = CONSUMER_LOST
                if self._count_failure(task):
                    died.append(self._bury(task, now))
                    continue
            requeue.append(task_id)
        self._in_flight -= len(consumer.in_flight)
        consumer.in_flight.clear()
        self._ready.extendleft(reversed(requeue))
        return died

    def consumer(self, key: Hashable) -> ConsumerInfo:
        """A consumer's credit and tasks in flight; KeyError if unknown."""
        consumer = self._consumer(key)
        return ConsumerInfo(key, consumer.credit, tuple(sorted(consumer.in_flight)))

    def _consumer(self, key: Hashable) -> _Consumer:
        try:
            return self._consumers[key]
        except KeyError:
            raise KeyError(f"work queue {self.name!r} has no consumer {key!r}") from None

    def _list(self, consumer: _Consumer) -> None:
        """Put a consumer with credit at the end of the rotation."""
        if consumer.credit > 0 and not consumer.listed:
            self._rotation.append(consumer.key)
            consumer.listed = True

    # ------------------------------------------------------------- delivery

    def dispatch(self) -> List[Assignment]:
        """Hand ready tasks, front first, to consumers with credit, in turn.

        Costs O(assignments made): the rotation holds only consumers with
        credit, and the ready queue only tasks that can be delivered.
        """
        made: List[Assignment] = []
        ready, rotation = self._ready, self._rotation
        while ready and rotation:
            task = self._tasks[ready.popleft()]
            if task.avoid is not None and len(rotation) > 1 and rotation[0] == task.avoid:
                key = rotation[1]
                del rotation[1]
            else:
                key = rotation.popleft()
            consumer = self._consumers[key]
            consumer.credit -= 1
            if consumer.credit > 0:
                rotation.append(key)
            else:
                consumer.listed = False
            consumer.in_flight[task.task_id] = None
            task.consumer = key
            task.avoid = None
            if task.delivered:
                self._redelivered += 1
            task.delivered = True
            self._in_flight += 1
            made.append(Assignment(key, task.task_id, task.attempts + 1, task.payload))
        return made

    def done(self, key: Hashable, task_id: int, ok: bool, error: str = "", *,
             now: float) -> Optional[DeadLetter]:
        """A consumer's handler finished a task; it gets its credit back.

        ok: the task is complete and forgotten. Not ok: the attempt counts;
        the task goes back to the front, or becomes a dead letter (returned)
        once it has used `max_attempts`. A `done` for a task not in flight
        at this consumer (stale, unknown, or taken away) changes nothing
        and returns None: only the current holder may acknowledge.
        """
        consumer = self._consumers.get(key)
        if consumer is None or task_id not in consumer.in_flight:
            return None
        del consumer.in_flight[task_id]
        self._in_flight -= 1
        consumer.credit += 1
        self._list(consumer)
        task = self._tasks[task_id]
        task.consumer = None
        if ok:
            del self._tasks[task_id]
            self.queued_bytes -= len(task.payload)
            self._completed += 1
            return None
        task.last_error = str(error)[:MAX_ERROR_CHARS]
        if self._count_failure(task):
            return self._bury(task, now)
        task.avoid = key
        self._ready.appendleft(task_id)
        return None

    def _count_failure(self, task: _Task) -> bool:
        """Count a failed attempt; True when the task has none left."""
        task.attempts += 1
        self._failed_attempts += 1
        return task.attempts >= self.max_attempts

    # --------------------------------------------------------- dead letters

    def _bury(self, task: _Task, now: float) -> DeadLetter:
        """Move a task (not ready, not in flight) to the dead letters."""
        del self._tasks[task.task_id]
        self.queued_bytes -= len(task.payload)
        letter = DeadLetter(task.task_id, task.attempts, task.last_error, task.payload, now)
        self._dead[task.task_id] = letter
        self._dead_lettered += 1
        self._dead_bytes += len(task.payload)
        while self._dead and (len(self._dead) > self.max_dead_letters
                              or self._dead_bytes > self.max_dead_letter_bytes):
            _, oldest = self._dead.popitem(last=False)
            self._dead_bytes -= len(oldest.payload)
            self.dead_letters_discarded += 1
        return letter

    def dead_letters(self) -> List[DeadLetter]:
        """The dead letters kept, oldest first."""
        return list(self._dead.values())

    def replay(self, task_ids: Optional[Iterable[int]] = None) -> int:
        """Put the named dead letters (all by default) back at the end of
        the queue with a fresh set of attempts; returns how many.

        Unknown ids are ignored. Raises QueueFull, changing nothing, if
        they do not all fit.
        """
        if task_ids is None:
            chosen = list(self._dead.values())
        else:
            wanted = set(task_ids)
            chosen = [letter for task_id, letter in self._dead.items() if task_id in wanted]
        self._check_room(len(chosen), sum(len(letter.payload) for letter in chosen))
        for letter in chosen:
            del self._dead[letter.task_id]
            self._dead_bytes -= len(letter.payload)
            task = _Task(letter.task_id, letter.payload, letter.died_at)
            task.delivered = True
            task.last_error = letter.last_error
            self._tasks[task.task_id] = task
            self.queued_bytes += len(task.payload)
            self._ready.append(task.task_id)
        return len(chosen)

    def purge_dead_letters(self) -> int:
        """Drop every dead letter; returns how many."""
        count = len(self._dead)
        self._dead.clear()
        self._dead_bytes = 0
        return count

    # ----------------------------------------------------------- inspection

    def stats(self) -> QueueStats:
        return QueueStats(
            ready=len(self._ready), in_flight=self._in_flight, consumers=len(self._consumers),
            dead=len(self._dead), produced=self._produced, completed=self._completed,
            failed_attempts=self._failed_attempts, redelivered=self._redelivered,
            dead_lettered=self._dead_lettered)

    def task(self, task_id: int) -> Optional[TaskInfo]:
        """Where a task stands; None if unknown, completed or discarded."""
        task = self._tasks.get(task_id)
        if task is not None:
            state = TaskState.READY if task.consumer is None else TaskState.IN_FLIGHT
            return TaskInfo(task_id, state, task.attempts, task.consumer, task.last_error)
        letter = self._dead.get(task_id)
        if letter is not None:
            return TaskInfo(task_id, TaskState.DEAD, letter.attempts, None, letter.last_error)
        return None

    def ready_ids(self) -> List[int]:
        """Ids of ready tasks, in the order they will be delivered."""
        return list(self._ready)
