"""Which publishers a server holds back, and for which `block` subscriptions
(spec §8.3): each peer's publish window, the publishes whose cost is
withheld while a block queue is past its limits, this process's own
publishers waiting, and the end of a block subscriber that holds
publishers back while its connection is lost or while it takes nothing.

The broker decides what a publish did (core/pubsub.py); this keeps the
books and gives cost back (Credit{publish}) through the publisher's Outlet.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Hashable, List, NamedTuple, Optional, Tuple

import gevent
from gevent.event import Event

from .core.publish_window import PublishWindow
from .errors import RpcError, StatusCode

__all__ = ["PublisherHolds", "Key"]

log = logging.getLogger(__name__)

_monotonic = time.monotonic

#: A subscription: (owner, subscription id), as core/pubsub.py names it.
Key = Tuple[Hashable, int]


class _Hold:
    """A publish whose publisher is held back until `waiting` block
    subscriptions are within their limits: a peer's (its window gets `cost`
    back then) or this process's (its Event is set)."""

    __slots__ = ("publisher", "cost", "waiting")

    def __init__(self, publisher: Any, cost: int, waiting: int) -> None:
        self.publisher = publisher
        self.cost = cost
        self.waiting = waiting


class _Resume(NamedTuple):
    """The publisher of a _Hold that is on another server: `resume` tells it."""

    resume: Callable[[], None]


class PublisherHolds:
    """The books of one broker. `end_blocker(method, key, why)` ends a
    block subscription that may hold nobody any more: one whose connection
    is lost (`lost(owner)` says so), or that took no message for
    `stall_timeout` seconds while holding publishers back."""

    def __init__(self, window: int, stall_timeout: float,
                 end_blocker: Callable[[str, Key, str], None],
                 lost: Callable[[Hashable], bool]) -> None:
        #: Each publishing peer's window in bytes of cost (0: none).
        self.window = window
        self._stall_timeout = stall_timeout
        self._end_blocker = end_blocker
        self._lost = lost
        self._windows: Dict[Hashable, PublishWindow] = {}
        # (method, key) of a block subscription past its limits -> the
        # publishes it holds back, and the timer of its stall.
        self._holds: Dict[Tuple[str, Key], List[_Hold]] = {}
        self._stalls: Dict[Tuple[str, Key], gevent.Greenlet] = {}

    # ------------------------------------------------------------ peers

    def receive(self, outlet: Any, cost: int) -> None:
        """A Publish of `cost` from `outlet`'s peer; RESOURCE_EXHAUSTED if
        it was sent past the window."""
        window = self._windows.get(outlet)
        if window is None:
            window = self._windows[outlet] = PublishWindow(self.window)
        if not window.receive(cost):
            raise RpcError(StatusCode.RESOURCE_EXHAUSTED,
                           f"published past the publish window the server gave "
                           f"({window.outstanding} of {window.window} bytes of cost "
                           f"outstanding): wait for Credit{{publish}} (spec §8.3)")

    def settle(self, method: str, outlet: Any, cost: int, blocked: Tuple[Key, ...]) -> None:
        """The publish was handled: its cost goes back now, or once each
        of the `blocked` subscriptions is within its limits."""
        if blocked:
            self._hold(method, blocked, _Hold(outlet, cost, len(blocked)))
        else:
            self._give_back(outlet, cost)

    def _give_back(self, outlet: Any, cost: int) -> None:
        window = self._windows.get(outlet)
        if window is not None:  # else its peer is gone
            grant = window.release(cost)
            if grant:
                outlet.grant_publish(grant)

    # ---------------------------------------------------- this process

    def wait(self, method: str, held: Callable[[], List[Key]], timeout: Optional[float],
             what: str) -> None:
        """Wait until `held()` (the block subscriptions past their limits
        that a publish would reach) is empty; DEADLINE_EXCEEDED after
        `timeout` seconds."""
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            keys = tuple(held())
            if not keys:
                return
            hold = _Hold(Event(), 0, len(keys))
            self._hold(method, keys, hold)
            left = None if deadline is None else max(0.0, deadline - _monotonic())
            if not hold.publisher.wait(left):
                self._unhold(method, keys, hold)
                raise RpcError(StatusCode.DEADLINE_EXCEEDED,
                               f"{what}: a block subscriber did not catch up within {timeout} s")

    # ---------------------------------------------------- other servers

    def hold_remote(self, method: str, blocked: Tuple[Key, ...],
                    resume: Callable[[], None]) -> None:
        """A publisher of another server is held back by `blocked`: call
        `resume` once each of them is within its limits."""
        self._hold(method, blocked, _Hold(_Resume(resume), 0, len(blocked)))

    # ------------------------------------------------------ subscriptions

    def holding(self, method: str, key: Key) -> bool:
        return (method, key) in self._holds

    def progressed(self, method: str, key: Key, over_limit: bool) -> None:
        """The subscriber of `key` took messages: within its limits, the
        publishes it held go on; still past them, its stall starts afresh."""
        if (method, key) not in self._holds:
            return
        if not over_limit:
            self.release(method, key)
        else:
            self._watch(method, key, restart=True)

    def release(self, method: str, key: Key) -> None:
        """`key` is within its limits, or gone: the publishes it held go on
        once nothing else holds them."""
        stall = self._stalls.pop((method, key), None)
        if stall is not None:
            stall.kill(block=False)
        for hold in self._holds.pop((method, key), ()):
            hold.waiting -= 1
            if hold.waiting:
                continue
            if isinstance(hold.publisher, Event):
                hold.publisher.set()
            elif isinstance(hold.publisher, _Resume):
                hold.publisher.resume()
            else:
                self._give_back(hold.publisher, hold.cost)

    def forget(self, owner: Hashable) -> None:
        """`owner`'s session ended: what its subscriptions held goes on,
        and its own window is gone."""
        for method, key in [held for held in self._holds if held[1][0] is owner]:
            self.release(method, key)
        self._windows.pop(owner, None)

    def close(self) -> None:
        for stall in self._stalls.values():
            stall.kill(block=False)
        self._stalls.clear()

    # ------------------------------------------------------------- inside

    def _hold(self, method: str, keys: Tuple[Key, ...], hold: _Hold) -> None:
        """`hold` waits for each of `keys`; one whose peer is lost holds
        nobody: it ends (spec §8.3)."""
        for key in keys:
            self._holds.setdefault((method, key), []).append(hold)
            self._watch(method, key)
        for key in keys:
            if self._lost(key[0]):
                self._end_blocker(method, key, "its connection was lost")

    def _unhold(self, method: str, keys: Tuple[Key, ...], hold: _Hold) -> None:
        """`hold` waits no more (its publisher gave up)."""
        for key in keys:
            holds = self._holds.get((method, key))
            if holds is not None and hold in holds:
                holds.remove(hold)
                if not holds:
                    self._holds.pop((method, key))
                    stall = self._stalls.pop((method, key), None)
                    if stall is not None:
                        stall.kill(block=False)

    def _watch(self, method: str, key: Key, restart: bool = False) -> None:
        """Time `key`'s stall: holding publishers back and taking nothing."""
        stall = self._stalls.get((method, key))
        if stall is not None:
            if not restart:
                return
            stall.kill(block=False)
        self._stalls[(method, key)] = gevent.spawn_later(self._stall_timeout, self._stalled,
                                                         method, key)

    def _stalled(self, method: str, key: Key) -> None:
        self._stalls.pop((method, key), None)
        if (method, key) in self._holds:
            self._end_blocker(method, key, f"it took no message for {self._stall_timeout:g} s "
                                           f"while holding publishers back")
