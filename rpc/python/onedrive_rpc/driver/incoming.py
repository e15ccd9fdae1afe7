"""The calls this side serves over one connection.

An incoming call runs inline in the reader greenlet; if its handler
blocks, a hub callback hands reading over to a fresh greenlet, so a slow
handler never stalls the connection and a fast one costs no spawn (the
old reader finishes the handler, answers, and exits). A closing
connection therefore never kills a reader that is running a handler:
that would lose the call.

At most `Limits.max_concurrent_calls` Requests run at once: the limit is
announced in the handshake, the peer queues its calls past it, and a
Request past it anyway is refused (RESOURCE_EXHAUSTED) by the Session,
which goes on reading. Notifications, and handlers still ending after
their call was cancelled, share as many places again; past those the
reader stops reading until one finishes (backpressure on the peer; the
ticker does not hold the unread silence against it).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, Optional, Tuple

from gevent import getcurrent
from gevent.event import Event

from ..calls import CallAborted, CallOrigin, Context, Identity
from ..core import events as ev
from ..core.framing import Payload
from ..core.pattern_frames import StreamEnd, StreamItem
from ..core.session import State
from ..logs import Throttled
from ..errors import LocalProtocolError, MessageTooLarge, RpcError, StatusCode, Violation
from .view import ConnectionView, send_error

__all__ = ["IncomingCalls"]

log = logging.getLogger(__name__)
warn = Throttled(log)  # a peer can make every notification fail

_monotonic = time.monotonic

_LIVE_STATES = (State.OPEN, State.SUSPENDED)


class IncomingCalls:
    """Requests and notifications being served, and their answers (the
    ReplyLink of every Context it hands to handlers)."""

    def __init__(self, connection: ConnectionView) -> None:
        self._conn = connection
        self._loop = connection.hub.loop
        #: Call id -> the Context of a call being served. Notifications get
        #: negative ids: nobody answers them.
        self.calls: Dict[int, Context] = {}
        self._next_one_way = -1
        #: True while the reader waits for a call to finish (backpressure).
        self.paused = False
        self.origin = CallOrigin(None, "", None)
        #: Calls, streams and notifications received, over the session.
        self.received = 0

    def set_origin(self) -> None:
        """Who the calls come from: the peer of the (new) stream."""
        conn = self._conn
        stream = conn.stream
        self.origin = CallOrigin(
            conn.session.peer, stream.address, stream.credentials,
            conn.identity or Identity.of(conn.session.authenticated, stream.credentials,
                                         stream.certificate),
            stream.certificate, conn.session.session_id)

    # ------------------------------------------------- routed by the reader

    def on_request(self, event: ev.RequestReceived) -> None:
        self._serve(event, event.call_id, event.deadline, event.initial_credit)

    def on_notify(self, event: ev.NotifyReceived) -> None:
        call_id = self._next_one_way
        self._next_one_way = call_id - 1
        self._serve(event, call_id, None, one_way=True)

    def on_credit(self, call_id: int, items: int) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            call.credit += items
            if call.credit_event is not None:
                call.credit_event.set()

    def on_refused(self, event: ev.RequestRefused) -> None:
        """The session answered a call past a limit itself: say so, once a
        second at most (a peer can send many)."""
        warn.warning("refused call", "refused call %s from %s: %s", event.method, self.origin.who,
                     event.reason)

    def on_cancel(self, event: ev.CancelReceived) -> None:
        call = self.calls.get(event.call_id)
        if call is not None:
            code = StatusCode.DEADLINE_EXCEEDED if event.deadline else StatusCode.CANCELLED
            self._abort_call(call, CallAborted(code, event.reason or "cancelled by the caller"))

    def abort_all(self, error: RpcError) -> None:
        """The connection ended: handlers still running see `cancelled`,
        and a stream waiting for credit wakes up to learn it."""
        for call in self.calls.values():
            if call.abort is None:
                call.abort = CallAborted(StatusCode.CANCELLED, f"connection lost: {error.message}")
            if call.credit_event is not None:
                call.credit_event.set()

    def serving(self, greenlet: Any) -> bool:
        """Is `greenlet` running a handler right now?"""
        return any(call.greenlet is greenlet and not call.done for call in self.calls.values())

    # ------------------------------------------------------------- serving

    def _serve(self, event: Any, call_id: int, deadline: Optional[float],
               initial_credit: int = 0, one_way: bool = False) -> None:
        conn = self._conn
        limit = 2 * conn.limits.max_concurrent_calls  # see the module docstring
        while len(self.calls) >= limit and not conn.closed:
            self.paused = True
            conn.progress.clear()
            conn.progress.wait()
        self.paused = False
        if conn.closed:
            return
        call = Context(self, self.origin, call_id, event.method, event.metadata, deadline,
                       initial_credit, one_way)
        self.calls[call_id] = call
        self.received += 1
        if deadline is not None:
            call.timer = self._loop.timer(max(0.0, deadline - _monotonic()))
            call.timer.start(self._deadline_expired, call)
        takeover = self._loop.run_callback(conn.take_over_reading, call.greenlet)
        try:
            conn.owner.serve(call, event)  # a stopping server refuses it there
        except CallAborted as exc:
            self._finish(call, exc.code, exc.message)
        except RpcError as exc:
            self._finish(call, exc.code, exc.message, exc.details or "", violations=exc.violations)
        finally:
            takeover.stop()
            call.done = True
            if call.timer is not None:
                call.timer.close()
            if self.calls.pop(call_id, None) is not None:
                conn.progress.set()

    # ----------------------------------------------- ReplyLink (handlers)

    def respond(self, call: Context, payload: Payload) -> None:
        """Send a successful answer to `call` (the dispatcher's job)."""
        self._finish(call, StatusCode.OK, payload=payload)

    def send_item(self, call: Context, payload: Payload) -> None:
        """Send one item of the server stream `call`, first waiting until
        the caller has granted room for it; raises CallAborted once the
        stream was cancelled or the peer is gone."""
        conn = self._conn
        while call.credit <= 0 and call.abort is None and not conn.closed:
            if call.credit_event is None:
                call.credit_event = Event()
            call.credit_event.clear()
            call.credit_event.wait()
        if call.abort is None:
            conn.outbox.wait_for_room()
        if call.abort is not None:
            raise call.abort
        if conn.closed or conn.session.state not in _LIVE_STATES:
            raise CallAborted(StatusCode.CANCELLED, "connection closed")
        try:
            conn.session.send(StreamItem(call.call_id, payload))
        except LocalProtocolError as exc:
            raise send_error(conn, exc) from None
        call.credit -= 1
        conn.outbox.flush_batch()

    def _finish(self, call: Context, code: StatusCode, message: str = "",
                details: str = "", payload: Payload = b"",
                violations: Tuple[Violation, ...] = ()) -> None:
        conn = self._conn
        if call.abort is not None and code == StatusCode.OK:
            # Cancelled or timed out while the handler ran on: say so.
            code, message, payload = call.abort.code, call.abort.message, b""
        if conn.closed or call.call_id not in self.calls:
            return
        if call.one_way:
            if code != StatusCode.OK:
                warn.warning(f"notification {code}", "notification %s from %s failed: %s %s",
                             call.method, self.origin.who, StatusCode(code).name, message)
            return  # nobody waits for an answer
        conn.outbox.wait_for_room()
        session = conn.session
        if conn.closed or session.state not in _LIVE_STATES:
            return
        try:
            if call.streaming:
                session.send(StreamEnd(call.call_id, code, message, details, violations))
            else:
                session.send_response(call.call_id, code, message, details, payload, violations)
        except MessageTooLarge as exc:  # the answer cannot go: say why instead
            if call.streaming:
                session.send(StreamEnd(call.call_id, exc.status, str(exc)))
            else:
                session.send_response(call.call_id, exc.status, str(exc))
        conn.outbox.flush_soon()

    def _deadline_expired(self, call: Context) -> None:
        self._abort_call(call, CallAborted(StatusCode.DEADLINE_EXCEEDED, "deadline exceeded"))

    def _abort_call(self, call: Context, abort: CallAborted) -> None:
        if call.done or call.abort is not None:
            return
        call.abort = abort
        if self._conn.is_reader(call.greenlet):
            if call.greenlet is getcurrent():
                return  # cannot interrupt ourselves; the handler sees call.abort
            self._conn.take_over_reading(call.greenlet)
        call.greenlet.kill(abort, block=False)
