"""The heartbeat clock of one connection: one hub timer, always set to the
session's next deadline (a heartbeat or a delayed ack due, or the peer's
silence bound).

Heartbeats come from the hub, never from handlers, so a handler that runs
for minutes cannot make us look dead. A timer that fires late means our
own loop was blocked: that is logged (the likely reason peers drop us),
and the time it was late does not count as the peer's silence, which is
judged only on the time we were there to hear it.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

from ..core.session import Session
from ..errors import PeerLost

__all__ = ["Ticker", "report_blocked_loop"]

log = logging.getLogger(__name__)

# A tick this late (or later) means our own loop was stuck: a long garbage
# collection, a busy handler, a paused machine. The time it was late is
# not counted as the peer's silence (what the peer sent meanwhile is
# unread); below it, timer jitter.
STALL_THRESHOLD = 0.05


class Ticker:
    """Runs `session.tick(now)` when it is due; tells `on_silent` (with the
    PeerLost saying so) when the peer went silent past its bound, and
    `on_output` when the tick queued frames (a heartbeat, an ack) to send.

    `loop` is gevent's (or any object with `timer(delay)` returning a timer
    with `start(callback, *args)` and `close()`), `clock` a monotonic clock:
    both are replaceable, so the ticker is testable without waiting.
    """

    def __init__(self, loop: Any, on_silent: Callable[[PeerLost], None],
                 on_output: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic,
                 reading_paused: Callable[[], bool] = lambda: False) -> None:
        self._loop = loop
        self._on_silent = on_silent
        self._on_output = on_output
        self._clock = clock
        self._reading_paused = reading_paused
        self._session: Optional[Session] = None
        self._timer: Any = None
        #: When the timer is due (monotonic seconds; inf while stopped).
        self.due = float("inf")

    def start(self, session: Session) -> None:
        """Tick for `session` from now on (a new or resumed stream)."""
        self._session = session
        self.arm()

    def stop(self) -> None:
        """No more ticks until start(): the stream is gone."""
        self._session = None
        self.due = float("inf")
        if self._timer is not None:
            self._timer.close()
            self._timer = None

    def arm(self, delay: Optional[float] = None) -> None:
        """Set the timer to the session's next deadline (or `delay` from now)."""
        session = self._session
        if session is None:
            return
        now = self._clock()
        if delay is None:
            deadline = session.next_deadline()
            if deadline is None:
                return
            delay = max(0.0, deadline - now)
        if self._timer is not None:
            self._timer.close()
        self.due = now + delay
        self._timer = self._loop.timer(delay)
        self._timer.start(self._tick)

    def _tick(self) -> None:
        # Hub callback: never blocks.
        session = self._session
        if session is None:
            return
        now = self._clock()
        liveness = session.liveness
        if liveness is not None and self._reading_paused():
            # We stopped reading this peer ourselves (backpressure): what it
            # sent meanwhile waits unread, so its silence is ours.
            liveness.received(now)
        late = now - self.due
        if liveness is not None and late >= STALL_THRESHOLD:
            if late > liveness.interval:
                report_blocked_loop(late, liveness.interval, now)
            # The peer is judged on the silence we were there to hear; the
            # heartbeat our own silence has made due goes out below, before
            # a peer stuck with us (the same process, a paused machine)
            # judges us. A loop late on every tick still finds a dead peer:
            # each tick excuses only its lateness, less than the time since
            # the tick before.
            liveness.excuse(late, now)
        events = session.tick(now)
        if events:
            silent = events[0]
            self.stop()
            self._on_silent(PeerLost(f"peer lost: no sign of life for {silent.silent_for:.3f}s "
                                     f"(heartbeat bound {silent.bound:.3f}s)"))
            return
        if session.queued_bytes:
            self._on_output()
        self.arm()


_last_blocked_report = [float("-inf")]


def report_blocked_loop(late: float, interval: float, now: float) -> None:
    """Log that our own event loop was blocked (once a second at most, not
    once per connection): the likely reason peers drop us."""
    if now - _last_blocked_report[0] >= 1.0:
        _last_blocked_report[0] = now
        log.warning("the gevent event loop of this process was blocked for about %.3fs "
                    "(heartbeat interval %.3fs): peers may have declared it lost; "
                    "look for CPU-bound or blocking code running in a greenlet", late, interval)
