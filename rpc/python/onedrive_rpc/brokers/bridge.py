"""A backend built on an asyncio library (nats-py) beside gevent, without
monkey-patching: the library runs in one OS thread of its own, with its own
asyncio event loop, and the two sides hand work to each other through two
mailboxes.

    bridge = Bridge(name="nats")                # the thread starts on first use
    bridge.submit(nc.publish, subject, data, nbytes=len(data))   # in order, no wait
    info = bridge.call(js.stream_info, name, timeout=5.0)        # this greenlet waits
    # in the loop thread, a subscription callback:
    bridge.to_hub(inbound.on_message, method, topic, payload, publisher, seq)
    bridge.close()

gevent -> asyncio. `submit` appends (coroutine function, args) to a deque
(append/popleft are atomic under the GIL) and wakes the loop with
`call_soon_threadsafe` only if no wake-up is pending already: a burst costs
one wake-up, not one per item. One pump task in the loop takes the items
in submission order and awaits each before the next, so one publisher's
messages leave in the order it published them. `call` goes through the
same queue (it starts after everything submitted before it has finished)
but runs as a task of its own, so that a slow request does not hold up the
publishes behind it; its result or exception comes back to the calling
greenlet, which alone waits: the hub keeps serving.

asyncio -> gevent. `to_hub(fn, *args)`, from the loop thread, appends to a
second deque and wakes the hub with one `hub.loop.async_()` watcher's
send() (libev makes it safe from any thread, and merges repeated sends).
The watcher's callback runs in the hub and calls them in order. gevent
objects (AsyncResult, Event, greenlets) are touched only there: they are
not thread-safe (AsyncResult.set() from another thread can lose the
wake-up: gevent issue #1739), so the loop thread never touches them. A
callback that raises is logged; the others still run.

What it costs, measured by the spike of issue 15 (/work/spike-15, 2 cores,
Python 3.11, gevent 26.9, nats-py 2.16): a NATS publish -> subscriber
callback round trip from a greenlet takes +105 us p50 over raw asyncio
nats-py (239 against 132 us: two thread hops, each a wake-up and a GIL
hand-over); the bridge alone, a no-op `call` round trip, 22 us p50 (28 us
with run_coroutine_threadsafe per call); one way, pipelined, 1.17 M
items/s. bench/bridge.py measures this module next to baselines in the
same run. On that machine the round trip has two modes: about 24 us when
both threads share a core (`taskset -c 0`), about 96 us when each wakes
the other on another core, as a plain thread's run_coroutine_threadsafe
(22 and 98 us) does too: the cost is the OS thread wake-up, not the
bridge. One way, the bridge carries 1.5 M items/s (run_coroutine_threadsafe
per item: 53 k/s), with one loop wake-up per about 10,000 items.

Bounds. The gevent -> asyncio queue is bounded in items and in bytes (the
caller says what an item weighs: `nbytes=`); an item counts until it has
finished in the loop. Past a bound, `submit` and `call` raise BridgeFull at
once rather than wait: a backend's methods are called from the hub, which
cannot wait, and peers are held back earlier by their publish windows, so a
full bridge means the loop or its engine is stuck (NATS disconnected):
refusing (RESOURCE_EXHAUSTED) says so, where waiting greenlets would only
pile up. The asyncio -> gevent direction never blocks and never refuses:
blocking would stall the loop (and the library's own heartbeats), and a
call's result must always arrive. What crosses that way is bounded at its
source (a subscription's pending limits, a fetch of at most the free
credit); the hub takes it in batches of HUB_BATCH so that a backlog does
not starve other greenlets, and `hub_backlog` shows it.

After os.fork() the child has no loop thread (fork copies only the calling
thread): the bridge is dead there, and every use raises BridgeForked.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections import deque
from typing import Any, Awaitable, Callable, Deque, Optional, Set, Tuple, Type, Union

from gevent import get_hub, getcurrent
from gevent.event import AsyncResult, Event

from .. import forking

__all__ = ["Bridge", "BridgeError", "BridgeClosed", "BridgeForked", "BridgeFull",
           "BridgeTimeout", "DEFAULT_MAX_ITEMS", "DEFAULT_MAX_BYTES", "HUB_BATCH"]

log = logging.getLogger(__name__)

#: Items queued towards the loop, at most. At the measured 1.17 M items/s
#: this is under 0.1 s of work: a longer backlog means the loop is stuck.
DEFAULT_MAX_ITEMS = 100_000
#: Bytes queued towards the loop, at most (as the callers weigh them): two
#: of the server's default 32 MiB send queues; a bridge must not become the
#: unbounded buffer in front of a disconnected engine.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: to_hub callbacks run per hub wake-up, at most: a backlog is worked off in
#: turns with the other greenlets instead of holding the hub.
HUB_BATCH = 1024
#: Seconds close() waits for the loop thread by default: the loop cancels
#: what is running; a coroutine that ignores its cancellation is left
#: behind (the thread is a daemon), not waited for.
CLOSE_TIMEOUT = 5.0

CoroFn = Callable[..., Union[Awaitable[Any], Any]]


class BridgeError(RuntimeError):
    """The bridge cannot take this work (see the subclasses)."""


class BridgeClosed(BridgeError):
    """The bridge was closed: before this call, or while it waited."""


class BridgeForked(BridgeClosed):
    """This process is a forked child: the loop thread stayed with the parent."""


class BridgeFull(BridgeError):
    """The queue towards the loop is at its bound (items or bytes): the
    backend answers RESOURCE_EXHAUSTED."""

    def __init__(self, message: str, queued_items: int, queued_bytes: int) -> None:
        super().__init__(message)
        self.queued_items = queued_items
        self.queued_bytes = queued_bytes


class BridgeTimeout(BridgeError, TimeoutError):
    """A call's coroutine did not finish in time (it was cancelled)."""


class _Call:
    """One `call` in flight: its AsyncResult lives in the hub; `task` in the loop."""

    __slots__ = ("reply", "task", "cancelled")

    def __init__(self) -> None:
        self.reply: AsyncResult = AsyncResult()
        self.task: Optional["asyncio.Task[Any]"] = None
        self.cancelled = False


# (coroutine function, args, weight, the call waiting for it or None)
_Item = Tuple[CoroFn, Tuple[Any, ...], int, Optional[_Call]]

_NEW, _RUNNING, _CLOSED = "new", "running", "closed"


class Bridge:
    """One asyncio loop in its own thread, and the two mailboxes to it.
    Use the gevent side from the thread of the hub the bridge was made in;
    `to_hub` from the loop thread (or the hub's)."""

    def __init__(self, name: str = "onedrive-rpc-asyncio", *,
                 max_items: int = DEFAULT_MAX_ITEMS,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_items < 1 or max_bytes < 1:
            raise ValueError(f"max_items and max_bytes must be at least 1, not {max_items}, "
                             f"{max_bytes}")
        self.name = name
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._hub = get_hub()
        # The thread of that hub: its greenlets are the only callers of
        # submit and call (gevent objects are not thread-safe).
        self._owner = threading.get_ident()
        self._state = _NEW
        # What a use raises once closed (a new exception each time: one
        # instance raised again and again would pile up tracebacks).
        self._dead: Optional[Tuple[Type[BridgeClosed], str]] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        # gevent -> asyncio. Each counter has one writer (the *_in ones the
        # hub's thread, the *_done ones the loop's), so no lock: queued =
        # in - done, possibly a little high while the loop is finishing.
        self._out: Deque[_Item] = deque()
        self._out_wake_pending = False
        self._wake: Optional[asyncio.Event] = None  # the loop's, made in its thread
        self._items_in = self._items_done = 0
        self._bytes_in = self._bytes_done = 0
        # asyncio -> gevent.
        self._in: Deque[Tuple[Callable[..., Any], Tuple[Any, ...]]] = deque()
        self._in_wake_pending = False
        self._watcher: Any = None
        self._calls: Set[_Call] = set()  # waiting greenlets' calls (hub side)
        self._stopped: Optional[Event] = None
        self._close_timeout = CLOSE_TIMEOUT
        #: Wake-ups of the loop and of the hub so far: how well bursts merge.
        self.loop_wakeups = 0
        self.hub_wakeups = 0
        forking.track(self)

    def __repr__(self) -> str:
        return (f"<Bridge {self.name} {self._state} queued={self.queued_items} "
                f"({self.queued_bytes} B) to_hub={len(self._in)}>")

    # ------------------------------------------------------------ lifecycle

    @property
    def closed(self) -> bool:
        return self._state == _CLOSED

    @property
    def loop(self) -> Optional[asyncio.AbstractEventLoop]:
        """The asyncio loop (None before start): for what must be made in
        it or handed to it directly. Never run or stop it from outside."""
        return self._loop

    def start(self) -> None:
        """Start the loop thread now (submit and call do it on first use).
        Returns at once: work handed over before the loop runs waits for it."""
        if self._state == _RUNNING:
            return
        self._raise_if_dead()
        self._watcher = self._hub.loop.async_()
        self._watcher.ref = False  # only a waiting call keeps the hub alive
        self._watcher.start(self._drain_in)
        self._stopped = Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._state = _RUNNING
        self._thread.start()

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Stop the loop: what is queued and not started is dropped, what
        runs is cancelled, waiting calls raise BridgeClosed. Waits (this
        greenlet only) up to `timeout` seconds for the thread to end."""
        if self._state == _CLOSED:
            return
        was_running = self._state == _RUNNING
        self._state = _CLOSED
        self._dead = (BridgeClosed, f"bridge {self.name} is closed")
        self._fail_calls(BridgeClosed, f"bridge {self.name} was closed while this call waited")
        if not was_running:
            return
        assert self._loop is not None and self._thread is not None and self._stopped is not None
        self._out.clear()
        self._close_timeout = timeout
        try:
            self._loop.call_soon_threadsafe(self._stop_loop)
        except RuntimeError:  # the loop is closed already: the thread ended
            pass
        in_hub = getcurrent() is self._hub  # the hub cannot wait: the daemon ends alone
        if not in_hub:
            self._stopped.wait(timeout)
        if not self._stopped.is_set() and not in_hub:
            log.warning("bridge %s: the loop thread did not stop within %.1fs; left behind "
                        "(a daemon thread)", self.name, timeout)
        else:
            self._thread.join(1.0)  # it has signalled its last act: this is immediate
        self._watcher.stop()
        self._watcher.close()
        self._in.clear()

    def after_fork_in_child(self, parent_pid: int) -> None:
        """This process is a forked child: the loop thread is not here."""
        if self._dead is not None and self._dead[0] is BridgeForked:
            return
        self._state = _CLOSED
        self._dead = (BridgeForked,
                      f"this process forked: the asyncio thread of bridge {self.name} stays "
                      f"with the parent process (pid {parent_pid}); make a new bridge in the "
                      f"child")
        self._out.clear()
        self._in.clear()
        self._loop = None  # the parent's: never run, stop or close it here
        self._fail_calls(*self._dead)

    # ------------------------------------------------- gevent -> asyncio

    @property
    def queued_items(self) -> int:
        """Items submitted and not finished yet."""
        return self._items_in - self._items_done

    @property
    def queued_bytes(self) -> int:
        """Their weight, as the callers gave it."""
        return self._bytes_in - self._bytes_done

    def submit(self, coro_fn: CoroFn, *args: Any, nbytes: int = 0) -> None:
        """Run `await coro_fn(*args)` in the loop, after everything submitted
        before it has finished; do not wait. `nbytes`: what the item holds,
        for the bound. An exception there is logged (use call to see it).
        Raises BridgeFull past the bounds, BridgeClosed once closed."""
        self._enqueue((coro_fn, args, nbytes, None))

    def call(self, coro_fn: CoroFn, *args: Any, timeout: Optional[float] = None,
             nbytes: int = 0) -> Any:
        """Run `await coro_fn(*args)` in the loop (started after everything
        submitted before it has finished, then on its own) and return its
        result, or raise its exception, here. Only this greenlet waits.
        Past `timeout` seconds the coroutine is cancelled and BridgeTimeout
        raised; BridgeClosed if the bridge closes meanwhile."""
        pending = _Call()
        self._enqueue((coro_fn, args, nbytes, pending))
        self._calls.add(pending)
        self._watcher.ref = True  # a waiting greenlet: the hub must not exit under it
        try:
            pending.reply.wait(timeout)  # ours ends it quietly; another's Timeout, a kill: raise
        except BaseException:
            self._abandon(pending)
            raise
        finally:
            self._calls.discard(pending)
            if not self._calls and self._watcher is not None:
                self._watcher.ref = False
        if not pending.reply.ready():
            self._abandon(pending)
            raise BridgeTimeout(f"bridge {self.name}: {_name(coro_fn)} did not finish within "
                                f"{timeout}s (cancelled)")
        return pending.reply.get(block=False)

    def _abandon(self, pending: _Call) -> None:
        # Nobody waits for this call any more: cancel its coroutine.
        pending.cancelled = True
        loop = self._loop
        if loop is not None and self._state == _RUNNING:
            loop.call_soon_threadsafe(self._cancel_call, pending)

    def _enqueue(self, item: _Item) -> None:
        if threading.get_ident() != self._owner:
            raise BridgeError(f"bridge {self.name} was used from another thread: it serves the "
                              f"greenlets of the thread that made it (gevent is not "
                              f"thread-safe); make a bridge in that thread")
        if self._state != _RUNNING:
            self._raise_if_dead()
            self.start()
        items, nbytes = self._items_in - self._items_done, self._bytes_in - self._bytes_done
        if items >= self.max_items or (items and nbytes + item[2] > self.max_bytes):
            raise BridgeFull(f"bridge {self.name}: {items} items ({nbytes} bytes) wait for the "
                             f"asyncio loop, the bound is {self.max_items} items, "
                             f"{self.max_bytes} bytes", items, nbytes)
        self._items_in += 1
        self._bytes_in += item[2]
        self._out.append(item)
        if not self._out_wake_pending:
            self._out_wake_pending = True
            self.loop_wakeups += 1
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._on_wake)

    def _raise_if_dead(self) -> None:
        if self._dead is not None:
            kind, message = self._dead
            raise kind(message)

    def _fail_calls(self, kind: Type[BridgeClosed], message: str) -> None:
        # In the hub's thread: the AsyncResults are its own.
        for pending in list(self._calls):
            if not pending.reply.ready():
                pending.reply.set_exception(kind(message))

    # ------------------------------------------------- asyncio -> gevent

    @property
    def hub_backlog(self) -> int:
        """to_hub callbacks not run yet."""
        return len(self._in)

    def to_hub(self, fn: Callable[..., Any], *args: Any) -> None:
        """From the loop thread: run fn(*args) in the gevent hub, soon, after
        the callbacks handed over before it. Never blocks; an exception it
        raises there is logged. Ignored once the bridge is closed."""
        if self._state != _RUNNING:
            return
        self._in.append((fn, args))
        if not self._in_wake_pending:
            self._in_wake_pending = True
            self._watcher.send()

    def _drain_in(self) -> None:
        # The watcher's callback: in the hub.
        self.hub_wakeups += 1
        self._in_wake_pending = False  # before taking: a later to_hub wakes us again
        inbox = self._in
        for _ in range(HUB_BATCH):
            if not inbox:
                return
            fn, args = inbox.popleft()
            try:
                fn(*args)
            except Exception:
                log.exception("bridge %s: a callback handed to the hub failed: %s",
                              self.name, _name(fn))
        if inbox:  # more: after the other greenlets' turn
            self._in_wake_pending = True
            self._watcher.send()

    def _resolve(self, pending: _Call, ok: bool, value: Any) -> None:
        # In the hub: a call's outcome (unless it timed out or was failed).
        if pending.reply.ready() or pending.cancelled:
            return
        if ok:
            pending.reply.set(value)
        else:
            pending.reply.set_exception(value)

    # ---------------------------------------------------- the loop thread

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        self._wake = asyncio.Event()
        pump = loop.create_task(self._pump(), name=f"{self.name}-pump")
        try:
            loop.run_forever()
            # close(): everything was cancelled; let the cancellations run.
            tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=self._close_timeout))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            del pump
            loop.close()
            stopped = self._stopped
            watcher = self._watcher
            if stopped is not None and watcher is not None:
                # The last act: the hub sets its own Event.
                self._in.append((stopped.set, ()))
                try:
                    watcher.send()
                except Exception:  # closed already: close() stopped waiting
                    pass

    def _on_wake(self) -> None:
        assert self._wake is not None
        self._wake.set()

    async def _pump(self) -> None:
        out, wake = self._out, self._wake
        assert wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await wake.wait()
            wake.clear()
            self._out_wake_pending = False  # before taking: a later submit wakes us again
            while out:
                coro_fn, args, nbytes, pending = out.popleft()
                if pending is None:
                    try:
                        result = coro_fn(*args)
                        if inspect.isawaitable(result):
                            await result
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("bridge %s: submitted %s failed", self.name,
                                      _name(coro_fn))
                    finally:
                        self._items_done += 1
                        self._bytes_done += nbytes
                elif pending.cancelled:  # timed out before it started
                    self._items_done += 1
                    self._bytes_done += nbytes
                else:
                    pending.task = loop.create_task(self._run_call(coro_fn, args, nbytes,
                                                                   pending))

    async def _run_call(self, coro_fn: CoroFn, args: Tuple[Any, ...], nbytes: int,
                        pending: _Call) -> None:
        ok, value = False, None
        try:
            value = coro_fn(*args)
            if inspect.isawaitable(value):
                value = await value
            ok = True
        except asyncio.CancelledError:
            value = BridgeClosed(f"bridge {self.name}: {_name(coro_fn)} was cancelled")
        except BaseException as exc:  # noqa: B902 - raised in the calling greenlet
            value = exc
        # Counted before the greenlet hears of it: once a call returns, the
        # bounds have room for everything that finished before it.
        pending.task = None
        self._items_done += 1
        self._bytes_done += nbytes
        self.to_hub(self._resolve, pending, ok, value)

    def _cancel_call(self, pending: _Call) -> None:
        # In the loop: a call timed out in its greenlet.
        if pending.task is not None:
            pending.task.cancel()

    def _stop_loop(self) -> None:
        # In the loop: close() was called.
        loop = asyncio.get_running_loop()
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.stop()


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
