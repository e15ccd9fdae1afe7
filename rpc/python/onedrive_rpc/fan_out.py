"""Pushing a broker's deliveries out in the order its queues decided them,
taking turns with the rest of the loop.

One publish can mean ten thousand Deliver frames (a peer subscribed ten
thousand times): pushed in one go, that stalls every other connection for
as long (a quarter of a second on a slow machine). Here the pushing yields
every FAIR_SLICE, and order still holds: all the deliveries of a broker go
through one FIFO, and whoever hands some in returns once they are out (so
a publisher's reader, paused meanwhile, cannot pile up more).
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Generic, List, TypeVar

import gevent
from gevent import getcurrent
from gevent.event import Event
from gevent.hub import get_hub

from .turns import start_turn, take_turns

__all__ = ["FanOut"]

T = TypeVar("T")

#: Pushes between looks at the clock.
_CHECK_EVERY = 64


class FanOut(Generic[T]):
    """A FIFO of deliveries, pushed by whoever handed some in while nobody
    else is pushing; `push(delivery)` sends one."""

    def __init__(self, push: Callable[[T], Any]) -> None:
        self._push = push
        self._queue: Deque[T] = deque()
        self._handed_in = 0
        self._pushed = 0
        self._pushing = False
        self._pusher: Any = None
        self._idle = Event()
        self._idle.set()

    def send(self, deliveries: List[T]) -> None:
        """Push `deliveries` after everything handed in before; return once
        they are out. In the hub (a callback), where nothing may wait, they
        are pushed at once or, behind a greenlet pushing, left to it; so are
        those handed in from inside a push (the loop pushing goes on to them)."""
        self._queue.extend(deliveries)
        self._handed_in += len(deliveries)
        mark = self._handed_in
        current, hub = getcurrent(), get_hub()
        in_hub = current is hub
        while self._pushed < mark:
            if not self._pushing:
                self._drain(current, hub.loop, in_hub)
            elif in_hub or current is self._pusher:
                return
            else:
                self._idle.wait()

    def _drain(self, current: Any, loop: Any, in_hub: bool) -> None:
        queue, push = self._queue, self._push
        self._pushing = True
        self._pusher = current
        self._idle.clear()
        turn = start_turn(loop)
        steps = 0
        try:
            while queue:
                self._pushed += 1
                push(queue.popleft())
                steps += 1
                if steps == _CHECK_EVERY and not in_hub:
                    steps = 0
                    turn = take_turns(loop, turn)
        finally:
            self._pushing = False
            self._pusher = None
            self._idle.set()
            if queue:  # the pusher was killed (or a push raised): the rest goes on
                gevent.spawn(self.send, [])
