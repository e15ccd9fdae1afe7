"""Taking turns with the rest of the loop: how a greenlet that has much
work in one go (a reader given a thousand frames in one read, a broker
fanning one message out to ten thousand subscriptions) lets the other
connections, handlers and timers of this process run meanwhile.
"""
from __future__ import annotations

import time
from typing import Any, Tuple

import gevent

__all__ = ["FAIR_SLICE", "FAIR_CHECK", "TURN", "Turn", "start_turn", "take_turns"]

# Seconds a greenlet may work without the hub running before it yields even
# if more is waiting: a peer that floods us must not stall the rest of the
# process. Looked at every FAIR_CHECK steps; one that waited meanwhile (the
# hub ran) starts a new slice without yielding.
FAIR_SLICE = 0.0005
FAIR_CHECK = 4
# How it yields: gevent.sleep(0) only runs the callbacks queued in this loop
# pass; a timer, however short, waits for the next pass, after the loop
# polled for I/O, so the other connections are read too.
TURN = 1e-6

#: (the loop pass a turn started in, when it started).
Turn = Tuple[int, float]

_monotonic = time.monotonic


def start_turn(loop: Any) -> Turn:
    return loop.iteration, _monotonic()


def take_turns(loop: Any, turn: Turn) -> Turn:
    """Yield to the hub for one loop pass if this greenlet worked FAIR_SLICE
    seconds and the loop did not pass meanwhile (loop.iteration unchanged);
    returns the (loop pass, start) of its current turn."""
    hub_pass, start = turn
    if _monotonic() - start <= FAIR_SLICE:
        return turn
    if loop.iteration == hub_pass:
        gevent.sleep(TURN)
    return loop.iteration, _monotonic()
