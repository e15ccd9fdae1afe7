"""What the server's broker sends a peer through: deliveries, tasks and
broadcasts pushed without ever blocking (the broker's `Outlet`), answers
to the calls pattern frames open, and the slow-consumer close.

A peer that lets more than `Limits.max_queued_bytes` of pushed frames go
unacknowledged is closed as a slow consumer: the server's memory is bounded
by what each peer has taken, not by how fast others publish. Past half of
it, every pushed frame asks for an ack at once (ack_now): a peer that reads
is not judged on its delayed-ack timer (25 ms of loopback is more than
32 MiB). Across all
peers, a server's `OutputBudget` (`Limits.max_server_queued_bytes`) bounds
the sum: each push reports what its connection holds (O(1)); a push that
finds the total past the limit counts every connection afresh and closes as
slow consumers those holding the most until the rest fit. A peer that reads
promptly holds what was sent since its last ack, which is small beside
what a peer that never reads piles up, so it is not the one closed.
"""
from __future__ import annotations

import logging
from typing import Optional, Tuple

import gevent

from ..calls import CallOrigin
from ..core.budget import OutputBudget
from ..core.pattern_frames import Credit, OutFrame
from ..core.session import State
from ..errors import RpcError, StatusCode, Violation
from ..logs import Throttled
from .view import ConnectionView

__all__ = ["ConnectionOutlet"]

log = logging.getLogger(__name__)
warn = Throttled(log)  # many slow consumers at once make one line a second

_LIVE_STATES = (State.OPEN, State.SUSPENDED)


class ConnectionOutlet:
    """A connection as the broker sees it (broker.Outlet). `budget`: the
    server's bound on what all of its connections hold (None: only this
    connection's own bound applies)."""

    def __init__(self, connection: ConnectionView,
                 budget: "Optional[OutputBudget[ConnectionOutlet]]" = None) -> None:
        self._conn = connection
        self._budget = budget
        # Closed (or being closed) as a slow consumer: pushes go no further.
        self._refused = False

    @property
    def session_id(self) -> str:
        return self._conn.session.session_id

    @property
    def address(self) -> str:
        return self._conn.stream.address

    @property
    def origin(self) -> CallOrigin:
        return self._conn.origin

    def push(self, frame: OutFrame) -> bool:
        """Server side: send a frame the peer did not ask for just now (a
        delivery, a task, a broadcast) without ever blocking the sender. A
        peer that lets more than `max_queued_bytes` pile up is closed as a
        slow consumer; False then (and when the connection is gone)."""
        held = self._may_push()
        if held is None:
            return False
        conn = self._conn
        conn.session.send(frame, held > conn.limits.max_queued_bytes // 2)
        conn.outbox.flush_batch()
        if self._budget is not None:
            self._budget.hold(self, conn.session.reliability.unacked_bytes + conn.outbox.out_bytes)
        return True

    def held_bytes(self) -> int:
        """What this connection holds for its peer now: frames sent and not
        acknowledged, and those not yet written."""
        conn = self._conn
        if conn.closed:
            return 0
        return conn.session.reliability.unacked_bytes + conn.outbox.out_bytes

    def _may_push(self) -> Optional[int]:
        """What this connection holds, if it may take one more frame; None
        (and closed as a slow consumer if that is why) if not."""
        conn = self._conn
        if self._refused or conn.closed or conn.session.state not in _LIVE_STATES:
            return None
        limit = conn.limits.max_queued_bytes
        held = conn.session.reliability.unacked_bytes + conn.outbox.out_bytes
        if held > limit:
            self.close_slow_consumer(StatusCode.RESOURCE_EXHAUSTED,
                                     f"slow consumer: more than {limit} bytes sent to you are "
                                     f"not acknowledged")
            return None
        budget = self._budget
        if budget is not None and budget.total > budget.limit and not self._settle(budget):
            return None
        return held

    def _settle(self, budget: "OutputBudget[ConnectionOutlet]") -> bool:
        """The server holds more than its output budget: close those of
        its peers holding the most until the rest fit. False if this one
        is among them."""
        picked = budget.settle(ConnectionOutlet.held_bytes)
        total = budget.total + sum(held for _, held in picked)
        for outlet, held in picked:
            outlet.close_slow_consumer(
                StatusCode.RESOURCE_EXHAUSTED,
                f"slow consumer: the server holds {total} bytes sent to its peers and not "
                f"acknowledged, more than its limit of {budget.limit}, and {held} of them "
                f"are yours, as much as any other peer's or more")
        return not any(outlet is self for outlet, _ in picked)

    def release(self) -> None:
        """The connection ended: it holds nothing any more."""
        if self._budget is not None:
            self._budget.release(self)

    @property
    def suspended(self) -> bool:
        return self._conn.suspended

    def grant_publish(self, amount: int) -> None:
        """Give the client `amount` of its publish window back (spec §8.3);
        while its connection is suspended, the Credit waits in the resend
        buffer like any frame."""
        conn = self._conn
        if conn.closed or conn.session.state not in _LIVE_STATES:
            return  # the session is over, and its window with it
        conn.session.send(Credit(amount, publish=True))
        conn.outbox.flush_soon()

    def close_slow_consumer(self, code: StatusCode, reason: str) -> None:
        """Refuse further output and close in the background, telling the
        peer `reason`; once only."""
        conn = self._conn
        self._refused = True
        if self._budget is not None:
            # It takes no more, and what it holds is freed as it closes.
            self._budget.release(self)
        if conn.refusing_outgoing or conn.closed:
            return
        conn.refuse_outgoing(RpcError(code, reason))
        warn.warning("slow", "closing the connection of %s: %s", conn.origin.who, reason)
        gevent.spawn(conn.close, code, reason)

    def answer(self, call_id: int, code: StatusCode = StatusCode.OK, message: str = "",
               violations: Tuple[Violation, ...] = ()) -> None:
        """Answer a call that a pattern frame opened (see call_frame);
        `violations`: of an INVALID_ARGUMENT refusal, for the caller."""
        conn = self._conn
        if not conn.closed and conn.session.state in _LIVE_STATES:
            conn.session.send_response(call_id, code, message, violations=violations)
            conn.outbox.flush_soon()
