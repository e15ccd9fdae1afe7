"""The calls this side makes over one connection, and the waiters of them.

Each outgoing call gets the next call id of the session (ids never restart
inside a session, across resumes too) and an entry in `pending`: a gevent
Waiter for a plain call, a CallFuture, or a StreamReceiver. The reader
routes answers to them; a lost or closed connection fails all of them at
once. Confirmed notifications wait, in seq order, for the peer's
cumulative ack.

The peer announces how many Requests it serves at once (HTTP/2's
MAX_CONCURRENT_STREAMS); a call past that waits here, first come first
served, until an earlier one is answered or cancelled, its own deadline
counting meanwhile. A peer's limit is thus never a reason for an error.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Mapping, Optional, Tuple

from gevent.event import Event
from gevent.hub import Waiter

from ..calls import DEFAULT_STREAM_WINDOW, TIMED_OUT, CallFuture, call_result, fresh
from ..core import events as ev
from ..core.framing import Payload
from ..core.pattern_frames import CallFrame, Credit, Notify, OutFrame, Publish
from ..core.publish_window import PublishCredit, publish_cost
from ..core.session import State
from ..errors import LocalProtocolError, PeerLost, RpcError, StatusCode
from ..streams import ServerStream, StreamReceiver
from .view import ConnectionView, send_error

__all__ = ["OutgoingCalls", "MAX_STREAM_WINDOW"]

#: Largest stream window a caller may ask for.
MAX_STREAM_WINDOW = 65536

_LIVE_STATES = (State.OPEN, State.SUSPENDED)
_EMPTY: Mapping[str, str] = {}
_monotonic = time.monotonic


class OutgoingCalls:
    """Calls, streams, notifications and pattern frames sent by this side
    (the CallLink of the futures and stream receivers it hands out)."""

    def __init__(self, connection: ConnectionView) -> None:
        self._conn = connection
        self._hub = connection.hub
        self._loop = connection.hub.loop
        #: Call id -> what the answer is switched to, in the hub.
        self.pending: Dict[int, Any] = {}
        self._next_call_id = 1
        #: Confirmed notifications: (seq, waiter) in seq order, released by acks.
        self.confirms: Deque[Tuple[int, Waiter]] = deque()
        #: Set while new calls are refused (draining, or a slow consumer).
        self.refusal: Optional[RpcError] = None
        # While suspended: what was pending already failed, so new calls
        # fail fast too until the session is back.
        self.failed_while_suspended = False
        #: Calls waiting for one of the places the peer serves, in turn.
        self._turns: Deque[Event] = deque()
        #: What we may publish before the server gives more back (spec §8.3).
        self.publish_credit = PublishCredit(connection.session.peer_publish_window)
        #: Publishes waiting for the server to give window back, in turn.
        self._publishers: Deque[Event] = deque()

    # ------------------------------------------------------------ calls

    def call(self, method: str, payload: Payload, decode: Callable[[Any], Any],
             timeout: Optional[float] = None,
             metadata: Optional[Mapping[str, str]] = None) -> Any:
        """Call `method` and wait for its reply, decoded with `decode`."""
        waiter = Waiter(self._hub)
        call_id, left = self._send_request(method, payload, timeout, metadata, waiter, now=True)
        return self._await(call_id, waiter, left, decode, method, timeout)

    def call_future(self, method: str, payload: Payload, decode: Callable[[Any], Any],
                    timeout: Optional[float] = None,
                    metadata: Optional[Mapping[str, str]] = None) -> CallFuture:
        future = CallFuture(self, decode)
        future.call_id, left = self._send_request(method, payload, timeout, metadata, future)
        if left is not None:
            future.expire_after(self._loop, left)
        return future

    def open_stream(self, method: str, payload: Payload, decode: Callable[[Any], Any],
                    timeout: Optional[float] = None,
                    metadata: Optional[Mapping[str, str]] = None,
                    window: int = DEFAULT_STREAM_WINDOW) -> ServerStream:
        """Call server-stream `method`; iterate the result for its items."""
        if not 1 <= window <= MAX_STREAM_WINDOW:
            raise ValueError(f"stream window must be 1..{MAX_STREAM_WINDOW} items, not {window}")
        receiver = StreamReceiver(self, method, window)
        receiver.call_id, left = self._send_request(method, payload, timeout, metadata, receiver,
                                                    window)
        if left is not None:
            receiver.timer = timer = self._loop.timer(left)
            timer.start(receiver.switch, TIMED_OUT)
        return ServerStream(receiver, decode)

    def notify(self, method: str, payload: Payload, metadata: Optional[Mapping[str, str]] = None,
               confirm: bool = False, timeout: Optional[float] = None) -> None:
        """Send a one-way message to notification `method`. With `confirm`,
        return once the peer acknowledged receiving it; raise PeerLost if the
        peer is lost first (it is then withdrawn: Session.withdraw), or
        DEADLINE_EXCEEDED after `timeout` (it may still arrive)."""
        seq = self.send_one_way(Notify(method, payload, metadata or _EMPTY), ack_now=confirm)
        if not confirm:
            return
        waiter = Waiter(self._hub)
        entry = (seq, waiter)
        self.confirms.append(entry)
        try:
            result = self._wait(waiter, timeout)
        finally:
            if entry in self.confirms:  # timed out or killed: no longer waited for
                self.confirms.remove(entry)
        if result is TIMED_OUT:
            raise RpcError(StatusCode.DEADLINE_EXCEEDED,
                           f"notification to {method} not confirmed within {timeout}s")
        if isinstance(result, RpcError):
            raise result

    def call_frame(self, frame: CallFrame, timeout: Optional[float] = None) -> None:
        """Send a pattern frame that opens a call (subscribe, produce,
        consume, or a confirmed publish or broadcast; its call id is filled
        in here) and wait for the peer's answer; RpcError if it refused."""
        waiter = Waiter(self._hub)
        self._ready_to_send()
        call_id = self._next_call_id
        self._next_call_id = call_id + 1
        self._send(type(frame)(*frame[:-1], call_id))  # type: ignore  # call_id is last
        self.pending[call_id] = waiter
        self._conn.outbox.flush_soon()
        what = f"{type(frame).__name__.lower()} to {frame.method or '?'}"
        self._await(call_id, waiter, timeout, _no_reply, what)

    def publish(self, frame: Publish, confirm: bool, timeout: Optional[float]) -> None:
        """Send a Publish once the window the server gave has room for it
        (it holds publishers back while a block subscriber is behind);
        `confirm`: as a call the server answers."""
        cost = publish_cost(len(frame.payload))
        credit = self.publish_credit
        if self._publishers or not credit.may_send(cost):
            timeout = self._wait_in_line(
                self._publishers, lambda: credit.may_send(cost), timeout,
                f"publishing to {frame.method}: the server holds publishers back while a block "
                f"subscriber is behind")
        credit.sent(cost)
        if confirm:
            self.call_frame(frame, timeout)
        else:
            self.send_one_way(frame)

    def on_publish_credit(self, amount: int) -> None:
        """Credit{publish}: the server gave `amount` of our window back."""
        self.publish_credit.granted(amount)
        if self._publishers:
            self._publishers[0].set()

    def send_one_way(self, frame: OutFrame, ack_now: bool = False) -> int:
        """Send a frame nobody answers (a notification, publish,
        unsubscribe, task done, ...); returns its seq."""
        self._ready_to_send()
        seq = self._send(frame, ack_now)
        self._conn.outbox.flush_soon()
        return seq

    # --------------------------------------------- CallLink (futures, streams)

    def abandon(self, call_id: int, reason: str,
                code: StatusCode = StatusCode.CANCELLED) -> None:
        """The caller gave up on `call_id`: forget it, tell the server."""
        if self.pending.pop(call_id, None) is not None:
            self._conn.progress.set()
            self.send_cancel(call_id, reason, code)
            self.next_turn()

    def expire(self, call_id: int) -> None:
        self.abandon(call_id, "deadline exceeded", StatusCode.DEADLINE_EXCEEDED)

    def grant(self, call_id: int, items: int) -> None:
        """Stream `call_id` may send `items` more (while it is open)."""
        if call_id in self.pending:
            self._conn.grant(Credit(items, call_id=call_id))

    def send_cancel(self, call_id: int, reason: str,
                    code: StatusCode = StatusCode.CANCELLED) -> None:
        conn = self._conn
        if conn.closed or conn.session.state not in _LIVE_STATES:
            return
        conn.session.send_cancel(call_id, reason, code)
        conn.outbox.flush_soon()

    # ------------------------------------------------ answers, from the reader

    def on_response(self, event: ev.ResponseReceived) -> None:
        waiter = self.pending.pop(event.call_id, None)
        if waiter is not None:
            answer: Any = event
            if event.payload and type(waiter) is StreamReceiver:
                answer = RpcError(StatusCode.INTERNAL,
                                  "the peer answered a stream call with a single response")
            self._loop.run_callback(waiter.switch, answer)
            self._conn.progress.set()
            if self._turns:
                self.next_turn()

    def on_stream_item(self, event: ev.StreamItemReceived) -> None:
        receiver = self.pending.get(event.call_id)
        if type(receiver) is StreamReceiver:
            receiver.item(event.payload)

    def on_stream_end(self, event: ev.StreamEndReceived) -> None:
        waiter = self.pending.pop(event.call_id, None)
        if waiter is not None:
            outcome: Any = ev.ResponseReceived(event.call_id, event.code, event.message,
                                               event.details, b"", event.violations)
            if type(waiter) is not StreamReceiver:
                outcome = RpcError(StatusCode.INTERNAL, "the peer answered a call with a stream")
            self._loop.run_callback(waiter.switch, outcome)
            self._conn.progress.set()
            if self._turns:
                self.next_turn()

    def release_confirms(self, peer_acked: int) -> None:
        """The peer acknowledged everything up to `peer_acked`."""
        confirms = self.confirms
        while confirms and confirms[0][0] <= peer_acked:
            self._loop.run_callback(confirms.popleft()[1].switch, None)

    def fail_all(self, error: RpcError) -> None:
        """Fail every call and confirmation we are waiting for with `error`."""
        conn = self._conn
        pending, self.pending = self.pending, {}
        suspended = conn.suspended
        if suspended:
            self.failed_while_suspended = True
            for call_id in pending:
                # Should the session resume, the server need not run them on.
                conn.session.send_cancel(call_id, f"the caller gave up: {error.message}")
        for waiter in pending.values():
            self._loop.run_callback(waiter.switch, fresh(error))
        if pending:
            conn.progress.set()
        for turn in (*self._turns, *self._publishers):  # each sees why and leaves its line
            turn.set()
        confirms = list(self.confirms)
        self.confirms.clear()
        for seq, waiter in confirms:
            if suspended:
                # Not confirmed means not delivered: it must not arrive
                # after all should the session resume.
                conn.session.withdraw(seq)
            self._loop.run_callback(waiter.switch, fresh(error))

    # ---------------------------------------------------------------- inside

    def _ready_to_send(self) -> None:
        """Raise if no new call may go out now; else wait for room."""
        conn = self._conn
        if conn.closed:
            raise conn.closed_error()
        if self.refusal is not None:
            raise fresh(self.refusal)
        if conn.suspended and self.failed_while_suspended:
            reason = conn.suspend_reason.message if conn.suspend_reason else "connection lost"
            raise PeerLost(f"not connected: {reason}; reconnecting")
        if conn.outbox.wait_for_room():
            # It closed while we waited for room: fail_all has run, so a
            # call registered now would never be answered.
            raise conn.closed_error()

    def next_turn(self) -> None:
        """A place the peer serves may be free: wake the first call in line."""
        turns = self._turns
        if turns and self._conn.session.may_request:
            turns[0].set()

    def _wait_in_line(self, line: Deque[Event], ready: Callable[[], bool],
                      timeout: Optional[float], waited: str) -> Optional[float]:
        """Wait in `line`, behind those that came first, until `ready()`
        (or we may not send at all: raises); what is left of `timeout`
        then. `waited` says what for, when the deadline passes."""
        turn = Event()
        line.append(turn)
        deadline = None if timeout is None else _monotonic() + timeout
        try:
            while True:
                turn.clear()
                self._ready_to_send()
                if line[0] is turn and ready():
                    return None if deadline is None else max(0.0, deadline - _monotonic())
                left = None if deadline is None else deadline - _monotonic()
                if (left is not None and left <= 0) or not turn.wait(left):
                    raise RpcError(StatusCode.DEADLINE_EXCEEDED,
                                   f"deadline exceeded after {timeout}s {waited}")
        finally:
            line.remove(turn)
            if line:
                line[0].set()  # the next one checks for itself

    def _send_request(self, method: str, payload: Payload, timeout: Optional[float],
                      metadata: Optional[Mapping[str, str]], waiter: Any,
                      initial_credit: int = 0, now: bool = False) -> Tuple[int, Optional[float]]:
        """Send a Request (once the peer serves one more); its call id and
        what is left of `timeout`. `now`: the caller waits for the answer
        at once (nothing more of its own can go with it)."""
        self._ready_to_send()
        session = self._conn.session
        if self._turns or not session.may_request:
            timeout = self._wait_in_line(
                self._turns, lambda: session.may_request, timeout,
                f"calling {method}: waited behind the {session.peer_max_calls} calls the peer "
                f"serves at once")
        call_id = self._next_call_id
        self._next_call_id = call_id + 1
        try:
            self._conn.session.send_request(call_id, method, payload, timeout, metadata,
                                            initial_credit)
        except LocalProtocolError as exc:
            raise send_error(self._conn, exc) from None
        pending = self.pending
        lone = now and not pending
        pending[call_id] = waiter
        if lone:
            # The only call in flight, and its caller waits: nothing to
            # coalesce it with, so it goes now, not from a callback at the
            # end of the pass.
            self._conn.outbox.flush_if_idle()
        else:
            self._conn.outbox.flush_soon()
        return call_id, timeout

    def _send(self, frame: OutFrame, ack_now: bool = False) -> int:
        try:
            return self._conn.session.send(frame, ack_now)
        except LocalProtocolError as exc:
            raise send_error(self._conn, exc) from None

    def _wait(self, waiter: Waiter, timeout: Optional[float]) -> Any:
        """What `waiter` is switched with, or TIMED_OUT after `timeout`."""
        timer = None
        if timeout is not None:
            timer = self._loop.timer(timeout)
            timer.start(waiter.switch, TIMED_OUT)
        try:
            return waiter.get()
        finally:
            if timer is not None:
                timer.close()

    def _await(self, call_id: int, waiter: Waiter, timeout: Optional[float],
               decode: Callable[[Any], Any], what: str, asked: Optional[float] = None) -> Any:
        """Wait `timeout` for the answer to `call_id` (`asked`: the
        deadline the caller gave, when part of it passed in line)."""
        try:
            outcome = self._wait(waiter, timeout)
        except BaseException:
            # Killed or interrupted while waiting: the server need not go on.
            self.abandon(call_id, "the caller went away")
            raise
        if outcome is TIMED_OUT:
            self.expire(call_id)
            raise RpcError(StatusCode.DEADLINE_EXCEEDED,
                           f"deadline exceeded after {asked or timeout}s calling {what}")
        return call_result(outcome, decode)


def _no_reply(payload: Any) -> None:
    return None
