"""What the server's broker sends a peer through: deliveries, tasks and
broadcasts pushed without ever blocking (the broker's `Outlet`), answers
to the calls pattern frames open, and the slow-consumer close.

A peer that lets more than `Limits.max_queued_bytes` of pushed frames go
unacknowledged is closed as a slow consumer: the server's memory is bounded
by what each peer has taken, not by how fast others publish. Past half of
it, every pushed frame asks for an ack at once (ack_now): a peer that reads
is not judged on its delayed-ack timer (25 ms of loopback is more than
32 MiB).
"""
from __future__ import annotations

import logging

import gevent

from ..core.pattern_frames import OutFrame
from ..core.session import State
from ..errors import RpcError, StatusCode
from ..logs import Throttled
from .view import ConnectionView

__all__ = ["ConnectionOutlet"]

log = logging.getLogger("onedrive_rpc")
warn = Throttled(log)  # many slow consumers at once make one line a second

_LIVE_STATES = (State.OPEN, State.SUSPENDED)


class ConnectionOutlet:
    """A connection as the broker sees it (broker.Outlet)."""

    def __init__(self, connection: ConnectionView) -> None:
        self._conn = connection

    @property
    def session_id(self) -> str:
        return self._conn.session.session_id

    @property
    def address(self) -> str:
        return self._conn.stream.address

    def push(self, frame: OutFrame) -> bool:
        """Server side: send a frame the peer did not ask for just now (a
        delivery, a task, a broadcast) without ever blocking the sender. A
        peer that lets more than `max_queued_bytes` pile up is closed as a
        slow consumer; False then (and when the connection is gone)."""
        conn = self._conn
        if conn.closed or conn.session.state not in _LIVE_STATES:
            return False
        limit = conn.limits.max_queued_bytes
        held = conn.session.reliability.unacked_bytes + conn.outbox.out_bytes
        if held > limit:
            self.close_slow_consumer(StatusCode.RESOURCE_EXHAUSTED,
                                     f"slow consumer: more than {limit} bytes sent to you are not "
                                     f"acknowledged")
            return False
        conn.session.send(frame, held > limit // 2)
        conn.outbox.flush_soon()
        return True

    def close_slow_consumer(self, code: StatusCode, reason: str) -> None:
        """Refuse further output and close in the background, telling the
        peer `reason`; once only."""
        conn = self._conn
        if conn.refusing_outgoing or conn.closed:
            return
        conn.refuse_outgoing(RpcError(code, reason))
        warn.warning("slow", "closing %s: %s", conn.stream.address, reason)
        gevent.spawn(conn.close, code, reason)

    def answer(self, call_id: int, code: StatusCode = StatusCode.OK, message: str = "") -> None:
        """Answer a call that a pattern frame opened (see call_frame)."""
        conn = self._conn
        if not conn.closed and conn.session.state in _LIVE_STATES:
            conn.session.send_response(call_id, code, message)
            conn.outbox.flush_soon()
