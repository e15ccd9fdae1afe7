"""The gevent driver: moves bytes between a Stream and a Session, runs calls.

One reader greenlet per connection feeds the session and acts on its events.
An incoming call runs inline in the reader; if its handler blocks, a hub
callback hands reading over to a fresh greenlet, so a slow handler never
stalls the connection and a fast one costs no spawn (the old reader finishes
the handler, answers, and exits).

Output is coalesced: sends queue frames in the session and schedule one hub
callback per loop pass that writes everything queued with one non-blocking
send; only what the kernel does not take at once goes to a writer greenlet.

A Connection outlives its stream when its session is resumable: a broken
stream suspends it (calls and answers keep going into the session's resend
buffer) until `resume()` gives it a new stream whose handshake resumed the
session, or its grace period runs out.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, List, Mapping, Optional

import gevent
from gevent import getcurrent
from gevent.event import Event
from gevent.hub import Waiter, get_hub

from . import forking
from .calls import (DEFAULT_STREAM_WINDOW, TIMED_OUT, CallAborted, CallFuture, Context,
                    call_result, fresh)
from .config import Limits
from .core import events as ev
from .core.reliability import ACK_DELAY
from .core.session import MessageTooLarge, Session, State
from .errors import (LocalProtocolError, PeerLost, RemoteProtocolError, RpcError,
                     StatusCode)
from .streams import ServerStream, StreamReceiver
from .transport.base import ConnectionClosed, Stream

__all__ = ["Connection"]

log = logging.getLogger("onedrive_rpc")

_monotonic = time.monotonic

# Bytes of answers queued while serving one read's batch of requests that
# are sent before serving the rest (bench/reqresp.py W2: about 1.7x).
MID_BATCH_FLUSH = 2048

# Reads in a row after which the reader yields to the hub even if more data
# is waiting: one cheap switch per FAIR_READS reads.
FAIR_READS = 32

# After a write fails, how long the reader may look for the peer's Close
# frame (or EOF) to report the real reason before we give up on it.
WRITE_FAILURE_GRACE = 0.25

# Coalesced small frames are joined into one buffer up to this size; past it
# a vectored send avoids copying.
_JOIN_LIMIT = 64 * 1024


class Connection:
    """One Stream and its Session, driven by gevent.

    `dispatch(call, event)` serves incoming requests (None: this side serves
    nothing and answers UNIMPLEMENTED); `on_close(connection)` runs once when
    the connection ends, for whatever reason (`close_reason` says which).
    """

    def __init__(self, stream: Stream, session: Session, *,
                 dispatch: Optional[Callable[[Context, ev.RequestReceived], None]] = None,
                 limits: Optional[Limits] = None,
                 on_close: Optional[Callable[["Connection"], None]] = None,
                 on_suspend: Optional[Callable[["Connection", RpcError], None]] = None,
                 patterns: Optional[Callable[["Connection", ev.Event], None]] = None,
                 session_grace: float = 0.0) -> None:
        self.stream = stream
        self.session = session
        self.limits = limits or Limits()
        self._dispatch = dispatch
        # Publish/subscribe, work queue and broadcast frames go to whoever
        # hosts those patterns on this side (server: its broker).
        self._patterns = patterns or no_patterns
        self._on_close = on_close
        # Resumable: a lost connection suspends the session for
        # `session_grace` seconds instead of ending it; on_suspend is told.
        self._on_suspend = on_suspend
        self.session_grace = session_grace
        self.suspended = False
        self.suspend_reason: Optional[RpcError] = None
        self._pending_failed = False
        self._grace_timer: Any = None
        self._pending_deadline_timer: Any = None
        session.end_session_on_loss = session_grace <= 0
        self._hub = get_hub()
        self._loop = self._hub.loop
        self._events: Deque[ev.Event] = deque()
        self._reader: Optional[gevent.Greenlet] = None
        # Outgoing calls: call id -> object whose switch(outcome) runs in the hub.
        self._pending: Dict[int, Any] = {}
        self._next_call_id = 1
        # Notifications being served get negative ids in `calls`.
        self._next_one_way = -1
        # Confirmed notifications: (seq, waiter) in seq order, released by acks.
        self._confirms: Deque[Any] = deque()
        # Incoming calls being served.
        self.calls: Dict[int, Context] = {}
        self._progress = Event()
        self._out: List[Any] = []
        self._out_bytes = 0
        self._flush_scheduled = False
        self._writer: Optional[gevent.Greenlet] = None
        self._drained = Event()
        self._drained.set()
        self.closed = False
        self.close_reason: Optional[RpcError] = None
        self.closed_event = Event()
        #: Set by the owner to refuse new incoming calls (server stopping).
        self.refuse_calls: Optional[RpcError] = None
        #: Set by drain() to refuse new outgoing calls.
        self.refuse_outgoing: Optional[RpcError] = None
        self._tick_timer: Any = None
        self._tick_due = float("inf")
        # Senders waiting for acks to free the resend buffer.
        self._room = Event()
        self._room_waiters = 0
        #: True once the end was orderly: a Close frame was sent or received.
        self.orderly = False
        #: Set by the owner once it reported this connection's loss.
        self.reported_lost = False
        forking.track(self)

    def _forget_after_fork(self, parent_pid: int) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = PeerLost(
            f"this process forked: the connection to {self.stream.address or 'the peer'} "
            f"stays with the parent process (pid {parent_pid}); connect again from the child")
        if self._tick_timer is not None:
            self._tick_timer.close()
        self.stream.detach()

    # ------------------------------------------------------------ lifecycle

    @property
    def peer(self) -> Optional[ev.PeerInfo]:
        return self.session.peer

    def start(self, events: Iterable[ev.Event] = ()) -> "Connection":
        """Run a connection whose handshake is done (see `handshake`);
        `events` are what arrived right behind it."""
        self._events.extend(events)
        self._reader = gevent.spawn(self._read_loop)
        self._arm_tick()
        self._flush_soon()
        return self

    def resume(self, stream: Stream, session: Session, events: Iterable[ev.Event] = ()) -> None:
        """Carry on the suspended session over a new connection whose
        handshake resumed it: what the peer lacks is already queued."""
        if self.closed:
            raise self._closed_error()
        if not self.suspended:
            raise RuntimeError("only a suspended connection can resume")
        for timer in (self._grace_timer, self._pending_deadline_timer):
            if timer is not None:
                timer.close()
        self._grace_timer = self._pending_deadline_timer = None
        old_writer = self._writer
        if old_writer is not None:
            old_writer.kill(block=False)  # it wrote to the old stream
        self._writer = None
        self._flush_scheduled = False
        self.stream = stream
        self.session = session
        session.end_session_on_loss = False
        # Frames the old session took while this handshake finished.
        session.queue_frames_sent_since_resend()
        self._out = []
        self._out_bytes = 0
        self.suspended = False
        log.info("session %s resumed over %s", session.session_id, stream.address)
        self.start(events)
        self._room.set()

    def close(self, code: StatusCode = StatusCode.UNAVAILABLE,
              message: str = "connection closed", flush_timeout: float = 1.0) -> None:
        """Orderly close: tell the peer, flush for up to flush_timeout, hang up."""
        if self.closed:
            return
        self.orderly = True
        if not self.suspended and self.session.state in (State.OPEN, State.AWAIT_HELLO):
            self.session.send_close(code, message)
            if getcurrent() is self._hub:
                self._flush()  # best effort: the hub cannot wait
            else:
                self._flush_soon()
                self._drained.wait(flush_timeout)
        self._teardown(PeerLost(message) if code == StatusCode.UNAVAILABLE
                       else RpcError(code, message))

    def drain(self, grace: Optional[float]) -> bool:
        """Refuse new outgoing calls, then wait up to `grace` seconds for the
        calls in flight both ways to finish; True if they all did."""
        if self.refuse_outgoing is None:
            self.refuse_outgoing = PeerLost("connection is closing")
        if grace:
            with gevent.Timeout(grace, False):
                while (self._pending or self.calls) and not self.closed:
                    self._progress.clear()
                    self._progress.wait()
        return not (self._pending or self.calls)

    def abort(self, error: RpcError) -> None:
        """Close at once, without the close frame (the stream is unusable)."""
        self._teardown(error)

    def _lost(self, error: RpcError, stream: Stream, silent: bool = False) -> None:
        """The transport under `stream` is gone (EOF, reset, silence). A
        resumable session is suspended; anything else ends."""
        if self.closed or self.suspended or stream is not self.stream:
            return  # already handled, or news about a connection we replaced
        if self.session_grace <= 0 or self.orderly:
            self.abort(error)
            return
        self.suspended = True
        self.suspend_reason = error
        if self._tick_timer is not None:
            self._tick_timer.close()
            self._tick_timer = None
        stream.close()
        self._out = []
        self._out_bytes = 0
        self.session.suspend()  # the resend buffer keeps what matters
        self._drained.set()
        self._pending_failed = False
        if silent:
            # Declared lost by heartbeats: the peer is dead or hung, so what
            # we wait for fails now; the session may still resume later.
            self._fail_pending(error)
        else:
            liveness = self.session.liveness
            bound = liveness.timeout if liveness is not None else self.session_grace
            self._pending_deadline_timer = self._loop.timer(min(bound, self.session_grace))
            self._pending_deadline_timer.start(self._fail_pending, error)
        self._grace_timer = self._loop.timer(self.session_grace)
        self._grace_timer.start(self._grace_expired, error)
        log.info("connection to %s lost (%s); session %s kept %.1fs for resumption",
                 stream.address, error.message, self.session.session_id, self.session_grace)
        if self._on_suspend is not None:
            self._loop.run_callback(self._on_suspend, self, error)

    def _grace_expired(self, error: RpcError) -> None:
        if self.suspended and not self.closed:
            self.abort(PeerLost(f"{error.message}; the session was not resumed within "
                                f"{self.session_grace:.1f}s"))

    def _fail_pending(self, error: RpcError) -> None:
        """Fail every call we are waiting for with `error`."""
        pending, self._pending = self._pending, {}
        if self.suspended:
            self._pending_failed = True  # and new calls fail fast until we are back
            for call_id in pending:
                # Should the session resume, the server need not run them on.
                self.session.send_cancel(call_id, f"the caller gave up: {error.message}")
        for waiter in pending.values():
            self._loop.run_callback(waiter.switch, fresh(error))
        if pending:
            self._progress.set()
        confirms, self._confirms = self._confirms, deque()
        for seq, waiter in confirms:
            if self.suspended:
                # Not confirmed means not delivered: it must not arrive
                # after all should the session resume.
                self.session.withdraw(seq)
            self._loop.run_callback(waiter.switch, fresh(error))

    def _teardown(self, error: RpcError) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = error
        for timer in (self._tick_timer, self._grace_timer, self._pending_deadline_timer):
            if timer is not None:
                timer.close()
        self._tick_timer = self._grace_timer = self._pending_deadline_timer = None
        self.stream.close()
        self._fail_pending(error)
        for call in self.calls.values():
            if call.abort is None:
                call.abort = CallAborted(StatusCode.CANCELLED, f"connection lost: {error.message}")
            if call.credit_event is not None:
                call.credit_event.set()  # a stream waiting for credit sees the abort
        self._drained.set()
        self._room.set()
        self._progress.set()
        self.closed_event.set()
        reader = self._reader
        if reader is not None and reader is not getcurrent() and not self._serving(reader):
            reader.kill(block=False)
        if self._on_close is not None:
            self._loop.run_callback(self._on_close, self)

    def _serving(self, greenlet: Any) -> bool:
        return any(call.greenlet is greenlet and not call.done for call in self.calls.values())

    # --------------------------------------------------------------- reading

    def _read_loop(self) -> None:
        me = getcurrent()
        session = self.session
        stream = self.stream
        events = self._events
        reads = 0
        rel = session.reliability
        try:
            while self._reader is me and not self.closed:
                if events:
                    self._handle(events.popleft())
                    if session.queued_bytes >= MID_BATCH_FLUSH and self._writer is None:
                        # Answers to a long batch go out while the rest is
                        # served, so the peer works in parallel with us.
                        self._flush()
                    continue
                owed = rel.ack_owed_since
                if owed is not None and self._tick_due > owed + ACK_DELAY:
                    self._arm_tick()  # an ack is owed sooner than the next heartbeat
                reads += 1
                if reads % FAIR_READS == 0:
                    # A peer that keeps us busy must not starve the other
                    # connections, handlers and timers of this process.
                    gevent.sleep(0)
                n = stream.recv_into(session.get_buffer())
                if n == 0:
                    self._lost(PeerLost(f"connection closed by {stream.address or 'the peer'}"), stream)
                    return
                events.extend(session.buffer_updated(n, _monotonic()))
                if session.queued_bytes:
                    self._flush_soon()
                if self._confirms and self._confirms[0][0] <= rel.peer_acked:
                    self._release_confirms()
                if self._room_waiters and rel.unacked_bytes <= self.limits.max_queued_bytes:
                    self._room.set()  # acks freed the resend buffer
        except ConnectionClosed as exc:
            self._lost(PeerLost(f"connection lost: {exc}"), stream)
        except RemoteProtocolError as exc:
            log.warning("closing connection from %s: %s", stream.address, exc)
            self._flush_soon()
            self._loop.run_callback(self.abort, PeerLost(f"protocol error: {exc}"))
            # Give the Close frame explaining why one loop pass to go out.
        except gevent.GreenletExit:
            pass
        except Exception as exc:  # a bug of ours: never leave the peer hanging
            log.exception("reader of %s failed", stream.address)
            self.abort(RpcError(StatusCode.INTERNAL, f"reader failed: {exc!r}"))

    def _handle(self, event: Any) -> None:  # one of ev.Event, told apart by type()
        kind = type(event)
        if kind is ev.ResponseReceived:
            waiter = self._pending.pop(event.call_id, None)
            if waiter is not None:
                answer: Any = event
                if event.payload and type(waiter) is StreamReceiver:
                    answer = RpcError(StatusCode.INTERNAL,
                                      "the peer answered a stream call with a single response")
                self._loop.run_callback(waiter.switch, answer)
                self._progress.set()
        elif kind is ev.RequestReceived:
            self._serve(event, event.call_id, event.deadline, event.initial_credit)
        elif kind is ev.StreamItemReceived:
            receiver = self._pending.get(event.call_id)
            if type(receiver) is StreamReceiver:
                receiver.item(event.payload)
        elif kind is ev.StreamEndReceived:
            waiter = self._pending.pop(event.call_id, None)
            if waiter is not None:
                outcome: Any = ev.ResponseReceived(event.call_id, event.code, event.message,
                                                   event.details, b"")
                if type(waiter) is not StreamReceiver:
                    outcome = RpcError(StatusCode.INTERNAL, "the peer answered a call with a stream")
                self._loop.run_callback(waiter.switch, outcome)
                self._progress.set()
        elif kind is ev.CreditReceived and event.call_id:
            call = self.calls.get(event.call_id)
            if call is not None:
                call.credit += event.items
                if call.credit_event is not None:
                    call.credit_event.set()
        elif kind is ev.NotifyReceived:
            call_id = self._next_one_way
            self._next_one_way = call_id - 1
            self._serve(event, call_id, None, one_way=True)
        elif kind in _PATTERN_EVENTS:
            self._patterns(self, event)
        elif kind is ev.CancelReceived:
            call = self.calls.get(event.call_id)
            if call is not None:
                self._abort_call(call, CallAborted(StatusCode.CANCELLED,
                                                   event.reason or "cancelled by the caller"))
        elif kind is ev.CloseReceived:
            if not event.end_session and self.session_grace > 0:
                # The peer dropped this connection but keeps the session.
                self._lost(PeerLost(f"peer dropped the connection: {event.message}"), self.stream)
                return
            self.orderly = True
            code = StatusCode.from_wire(event.code)
            error: RpcError
            if code == StatusCode.UNAVAILABLE or code == StatusCode.OK:
                error = PeerLost(f"peer closed the connection: {event.message}")
            else:
                error = RpcError(code, event.message)
            self.abort(error)

    # -------------------------------------------------------------- liveness

    def _arm_tick(self, delay: Optional[float] = None) -> None:
        # One timer per connection, always at the session's next deadline:
        # heartbeats come from the hub, never from handlers, so a handler
        # that runs for minutes cannot make us look dead.
        if self.closed or self.suspended:
            return
        if delay is None:
            deadline = self.session.next_deadline()
            if deadline is None:
                return
            delay = max(0.0, deadline - _monotonic())
        if self._tick_timer is not None:
            self._tick_timer.close()
        self._tick_due = _monotonic() + delay
        self._tick_timer = self._loop.timer(delay)
        self._tick_timer.start(self._on_tick)

    def _on_tick(self) -> None:
        # Hub callback.
        if self.closed or self.suspended:
            return
        now = _monotonic()
        liveness = self.session.liveness
        late = now - self._tick_due
        if liveness is not None and late > liveness.interval:
            _report_blocked_loop(late, liveness.interval)
            if liveness.expired(now):
                # Our own loop was stuck: what the peer sent meanwhile is
                # still unread. Let the reader catch up before judging it.
                self._arm_tick(min(0.05, liveness.interval / 4))
                return
        events = self.session.tick(now)
        if events:
            silent = events[0]
            message = (f"peer lost: no sign of life for {silent.silent_for:.3f}s "
                       f"(heartbeat bound {silent.bound:.3f}s)")
            log.warning("%s from %s", message, self.stream.address)
            self._flush()  # the Close telling a frozen peer why, if it ever wakes
            self._lost(PeerLost(message), self.stream, silent=True)
            return
        if self.session.queued_bytes:
            self._flush_soon()
        self._arm_tick()

    # --------------------------------------------------------------- serving

    def _serve(self, event: Any, call_id: int, deadline: Optional[float],
               initial_credit: int = 0, one_way: bool = False) -> None:
        limit = self.limits.max_concurrent_calls
        while len(self.calls) >= limit and not self.closed:
            # Backpressure: stop reading until a call finishes.
            self._progress.clear()
            self._progress.wait()
        if self.closed:
            return
        call = Context(self, call_id, event.method, event.metadata, deadline,
                       initial_credit, one_way)
        self.calls[call.call_id] = call
        if call.deadline is not None:
            call.timer = self._loop.timer(max(0.0, call.deadline - _monotonic()))
            call.timer.start(self._deadline_expired, call)
        takeover = self._loop.run_callback(self._take_over_reading, call.greenlet)
        try:
            if self.refuse_calls is not None:
                raise self.refuse_calls
            if self._dispatch is None:
                raise RpcError(StatusCode.UNIMPLEMENTED, "this peer serves no methods")
            self._dispatch(call, event)
        except CallAborted as exc:
            self._finish(call, exc.code, exc.message)
        except RpcError as exc:
            self._finish(call, exc.code, exc.message, exc.details or "")
        finally:
            takeover.stop()
            call.done = True
            if call.timer is not None:
                call.timer.close()
            if self.calls.pop(call.call_id, None) is not None:
                self._progress.set()

    def respond(self, call: Context, payload: bytes) -> None:
        """Send a successful answer to `call` (the dispatcher's job)."""
        self._finish(call, StatusCode.OK, payload=payload)

    def _finish(self, call: Context, code: StatusCode, message: str = "",
                details: str = "", payload: bytes = b"") -> None:
        if call.abort is not None and code == StatusCode.OK:
            # Cancelled or timed out while the handler ran on: say so.
            code, message, payload = call.abort.code, call.abort.message, b""
        if self.closed or call.call_id not in self.calls:
            return
        if call.one_way:
            if code != StatusCode.OK:
                log.warning("notification %s from %s failed: %s %s", call.method,
                            self.stream.address, StatusCode(code).name, message)
            return  # nobody waits for an answer
        self._wait_for_room()
        if self.closed or self.session.state not in (State.OPEN, State.SUSPENDED):
            return
        if call.streaming:
            self.session.send_frame("stream_end", call_id=call.call_id,
                                    status=(code, message, details))
        else:
            try:
                self.session.send_response(call.call_id, code, message, details, payload)
            except MessageTooLarge as exc:
                self.session.send_response(call.call_id, StatusCode.RESOURCE_EXHAUSTED, str(exc))
        self._flush_soon()

    def send_stream_item(self, call: Context, payload: bytes) -> None:
        """Send one item of the server stream `call` (the dispatcher's job),
        first waiting until the caller has granted room for it; raises
        CallAborted once the stream was cancelled or the peer is gone."""
        while call.credit <= 0 and call.abort is None and not self.closed:
            if call.credit_event is None:
                call.credit_event = Event()
            call.credit_event.clear()
            call.credit_event.wait()
        if call.abort is None:
            self._wait_for_room()
        if call.abort is not None:
            raise call.abort
        if self.closed or self.session.state not in (State.OPEN, State.SUSPENDED):
            raise CallAborted(StatusCode.CANCELLED, "connection closed")
        try:
            self.session.send_frame("stream_item", payload, call_id=call.call_id)
        except MessageTooLarge as exc:
            raise RpcError(StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        call.credit -= 1
        self._flush_soon()

    def _take_over_reading(self, serving: Any) -> None:
        # Hub callback: the reader `serving` blocked inside a handler.
        if self._reader is serving and not self.closed:
            self._reader = gevent.spawn(self._read_loop)

    def _deadline_expired(self, call: Context) -> None:
        self._abort_call(call, CallAborted(StatusCode.DEADLINE_EXCEEDED, "deadline exceeded"))

    def _abort_call(self, call: Context, abort: CallAborted) -> None:
        if call.done or call.abort is not None:
            return
        call.abort = abort
        if call.greenlet is self._reader:
            if call.greenlet is getcurrent():
                return  # cannot interrupt ourselves; the handler sees call.abort
            self._take_over_reading(call.greenlet)
        call.greenlet.kill(abort, block=False)

    # --------------------------------------------------------------- calling

    def call(self, method: str, payload: bytes, decode: Callable[[Any], Any],
             timeout: Optional[float] = None,
             metadata: Optional[Mapping[str, str]] = None) -> Any:
        """Call `method` and wait for its reply, decoded with `decode`."""
        waiter = Waiter(self._hub)
        call_id = self._send_request(method, payload, timeout, metadata, waiter)
        return self._await(call_id, waiter, timeout, decode, method)

    def call_frame(self, kind: str, payload: bytes = b"", timeout: Optional[float] = None,
                   **fields: Any) -> None:
        """Send a pattern frame that opens a call (subscribe, produce,
        consume, or a confirmed publish or broadcast) and wait for the
        peer's answer; RpcError if it refused."""
        waiter = Waiter(self._hub)
        self._check_can_send()
        self._wait_for_room()
        call_id = self._next_call_id
        self._next_call_id = call_id + 1
        self._send_frame(kind, payload, call_id=call_id, **fields)
        self._pending[call_id] = waiter
        self._flush_soon()
        self._await(call_id, waiter, timeout, _no_reply, f"{kind} to {fields.get('method', '?')}")

    def send_one_way(self, kind: str, payload: bytes = b"", encoded: Optional[bytes] = None,
                     **fields: Any) -> int:
        """Send a pattern frame nobody answers (publish, unsubscribe,
        task_done, ...), from `fields` or already `encoded`; returns its seq."""
        self._check_can_send()
        self._wait_for_room()
        seq = self._send_frame(kind, payload, encoded, **fields)
        self._flush_soon()
        return seq

    def push(self, kind: str, payload: bytes = b"", **fields: Any) -> bool:
        """Server side: send a frame the peer did not ask for just now (a
        delivery, a task, a broadcast) without ever blocking the sender. A
        peer that lets more than `max_queued_bytes` pile up is closed as a
        slow consumer; False then (and when the connection is gone)."""
        if not self._may_push():
            return False
        self.session.send_frame(kind, payload, **fields)
        self._flush_soon()
        return True

    def push_encoded(self, kind: str, message: bytes, payload: bytes = b"") -> bool:
        """push() for a message serialized already (Session.send_encoded)."""
        if not self._may_push():
            return False
        self.session.send_encoded(kind, message, payload)
        self._flush_soon()
        return True

    def _may_push(self) -> bool:
        if self.closed or self.session.state not in (State.OPEN, State.SUSPENDED):
            return False
        limit = self.limits.max_queued_bytes
        if self.session.reliability.unacked_bytes + self._out_bytes <= limit:
            return True
        if self.refuse_outgoing is None:
            self.refuse_outgoing = PeerLost("closed as a slow consumer")
            log.warning("closing %s: a slow consumer (more than %d bytes unacknowledged)",
                        self.stream.address, limit)
            gevent.spawn(self.close, StatusCode.RESOURCE_EXHAUSTED,
                         f"slow consumer: more than {limit} bytes sent to you are not acknowledged")
        return False

    def answer(self, call_id: int, code: StatusCode = StatusCode.OK, message: str = "") -> None:
        """Answer a call that a pattern frame opened (see call_frame)."""
        if not self.closed and self.session.state in (State.OPEN, State.SUSPENDED):
            self.session.send_response(call_id, code, message)
            self._flush_soon()

    # The rest of what the broker needs of a connection (broker.Outlet).

    @property
    def session_id(self) -> str:
        return self.session.session_id

    @property
    def address(self) -> str:
        return self.stream.address

    def close_slow_consumer(self, code: StatusCode, reason: str) -> None:
        """Refuse further output and close in the background; only once."""
        if self.refuse_outgoing is None:
            self.refuse_outgoing = RpcError(code, reason)
            gevent.spawn(self.close, code, reason)

    def _send_frame(self, kind: str, payload: bytes, encoded: Optional[bytes] = None,
                    **fields: Any) -> int:
        try:
            if encoded is not None:
                return self.session.send_encoded(kind, encoded, payload)
            return self.session.send_frame(kind, payload, **fields)
        except MessageTooLarge as exc:
            raise RpcError(StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        except LocalProtocolError:
            raise self._closed_error() from None

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
               decode: Callable[[Any], Any], what: str) -> Any:
        try:
            outcome = self._wait(waiter, timeout)
        except BaseException:
            # Killed or interrupted while waiting: the server need not go on.
            self._abandon(call_id, "the caller went away")
            raise
        if outcome is TIMED_OUT:
            self._abandon(call_id, "deadline exceeded")
            raise RpcError(StatusCode.DEADLINE_EXCEEDED,
                           f"deadline exceeded after {timeout}s calling {what}")
        return call_result(outcome, decode)

    def call_future(self, method: str, payload: bytes, decode: Callable[[Any], Any],
                    timeout: Optional[float] = None,
                    metadata: Optional[Mapping[str, str]] = None) -> CallFuture:
        future = CallFuture(self, 0, decode)
        future._call_id = self._send_request(method, payload, timeout, metadata, future)
        if timeout is not None:
            future._timer = timer = self._loop.timer(timeout)
            timer.start(future.switch, TIMED_OUT)
        return future

    def open_stream(self, method: str, payload: bytes, decode: Callable[[Any], Any],
                    timeout: Optional[float] = None,
                    metadata: Optional[Mapping[str, str]] = None,
                    window: int = DEFAULT_STREAM_WINDOW) -> ServerStream:
        """Call server-stream `method`; iterate the result for its items."""
        if not 1 <= window <= MAX_STREAM_WINDOW:
            raise ValueError(f"stream window must be 1..{MAX_STREAM_WINDOW} items, not {window}")
        receiver = StreamReceiver(self, method, window)
        receiver.call_id = self._send_request(method, payload, timeout, metadata, receiver, window)
        if timeout is not None:
            receiver.timer = timer = self._loop.timer(timeout)
            timer.start(receiver.switch, TIMED_OUT)
        return ServerStream(receiver, decode)

    def _grant_stream(self, call_id: int, items: int) -> None:
        if call_id in self._pending:
            self.grant(items, call_id=call_id)

    def grant(self, items: int, **which: Any) -> None:
        """Flow control for a subscription or consumer: the peer may send
        `items` more. Quietly nothing once the connection is gone."""
        if not self.closed and self.session.state in (State.OPEN, State.SUSPENDED):
            self.session.send_frame("credit", b"", items=items, **which)
            self._flush_soon()

    def notify(self, method: str, payload: bytes, metadata: Optional[Mapping[str, str]] = None,
               confirm: bool = False, timeout: Optional[float] = None) -> None:
        """Send a one-way message to notification `method`. With `confirm`,
        return once the peer acknowledged receiving it; raise PeerLost if the
        peer is lost first (it is then withdrawn: Session.withdraw), or
        DEADLINE_EXCEEDED after `timeout` (it may still arrive)."""
        self._check_can_send()
        self._wait_for_room()
        seq = self._send_frame("notify", payload, ack_now=confirm, method=method,
                               metadata=metadata or {})
        self._flush_soon()
        if not confirm:
            return
        waiter = Waiter(self._hub)
        entry = (seq, waiter)
        self._confirms.append(entry)
        try:
            result = self._wait(waiter, timeout)
        finally:
            if entry in self._confirms:  # timed out or killed: no longer waited for
                self._confirms.remove(entry)
        if result is TIMED_OUT:
            raise RpcError(StatusCode.DEADLINE_EXCEEDED,
                           f"notification to {method} not confirmed within {timeout}s")
        if isinstance(result, RpcError):
            raise result

    def _release_confirms(self) -> None:
        acked = self.session.reliability.peer_acked
        confirms = self._confirms
        while confirms and confirms[0][0] <= acked:
            self._loop.run_callback(confirms.popleft()[1].switch, None)

    def _check_can_send(self) -> None:
        if self.closed:
            raise self._closed_error()
        if self.refuse_outgoing is not None:
            raise fresh(self.refuse_outgoing)
        if self.suspended and self._pending_failed:
            reason = self.suspend_reason.message if self.suspend_reason else "connection lost"
            raise PeerLost(f"not connected: {reason}; reconnecting")

    def _send_request(self, method: str, payload: bytes, timeout: Optional[float],
                      metadata: Optional[Mapping[str, str]], waiter: Any,
                      initial_credit: int = 0) -> int:
        self._check_can_send()
        self._wait_for_room()
        call_id = self._next_call_id
        self._next_call_id = call_id + 1
        try:
            self.session.send_request(call_id, method, payload, timeout, metadata, initial_credit)
        except MessageTooLarge as exc:
            raise RpcError(StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        except LocalProtocolError:
            raise self._closed_error() from None
        self._pending[call_id] = waiter
        self._flush_soon()
        return call_id

    def _closed_error(self) -> RpcError:
        reason = self.close_reason
        return PeerLost("connection closed") if reason is None else fresh(reason)

    def _abandon(self, call_id: int, reason: str) -> None:
        if self._pending.pop(call_id, None) is not None:
            self._progress.set()
            self._send_cancel(call_id, reason)

    def _send_cancel(self, call_id: int, reason: str) -> None:
        if self.closed or self.session.state not in (State.OPEN, State.SUSPENDED):
            return
        self.session.send_cancel(call_id, reason)
        self._flush_soon()

    # --------------------------------------------------------------- writing

    def _flush_soon(self) -> None:
        if (not self._flush_scheduled and self._writer is None and not self.closed
                and not self.suspended):
            self._flush_scheduled = True
            self._drained.clear()
            self._loop.run_callback(self._flush)

    def _flush(self) -> None:
        # Hub callback: must never block.
        self._flush_scheduled = False
        if self.closed:
            return
        if self.suspended:
            self.session.data_to_send()  # nowhere to go; the resend buffer keeps it
            return
        self._take_output()
        try:
            self._consume(self.stream.send_nowait(self._sendable()))
        except ConnectionClosed as exc:
            self._write_failed(exc)
            return
        if self._out:
            self._writer = gevent.spawn(self._write_loop)
        else:
            self._drained.set()

    def _write_loop(self) -> None:
        stream = self.stream
        try:
            while not self.closed and stream is self.stream:
                self._take_output()
                if not self._out:
                    break
                stream.wait_writable()
                if stream is not self.stream:
                    break  # resumed on another stream meanwhile
                self._consume(stream.send_nowait(self._sendable()))
        except ConnectionClosed as exc:
            if stream is self.stream:
                self._write_failed(exc)
        finally:
            if self._writer is getcurrent():
                self._writer = None
                self._drained.set()

    def _write_failed(self, exc: ConnectionClosed) -> None:
        # The peer may have said why it hung up (a Close frame) in what we
        # have not read yet: give the reader a moment to find it, then abort.
        error = PeerLost(f"connection lost: {exc}")
        self._out.clear()
        self._out_bytes = 0
        self._drained.set()
        if not self.closed:
            timer = self._loop.timer(WRITE_FAILURE_GRACE)
            timer.start(self._after_write_failure, timer, error, self.stream)

    def _after_write_failure(self, timer: Any, error: RpcError, stream: Stream) -> None:
        timer.close()
        self._lost(error, stream)

    def _take_output(self) -> None:
        session = self.session
        if session.queued_bytes:
            self._out_bytes += session.queued_bytes
            self._out.extend(session.data_to_send(_monotonic()))

    def _sendable(self) -> List[Any]:
        out = self._out
        if len(out) > 1 and self._out_bytes <= _JOIN_LIMIT:
            joined = b"".join(out)
            out[:] = [joined]
        return out

    def _consume(self, sent: int) -> None:
        self._out_bytes -= sent
        out = self._out
        if self._out_bytes == 0:
            out.clear()
            return
        i = 0
        while sent and i < len(out):
            size = len(out[i])
            if sent >= size:
                sent -= size
                i += 1
            else:
                out[i] = memoryview(out[i])[sent:]
                sent = 0
        del out[:i]

    def _wait_for_room(self) -> None:
        """Block a sender while too much is queued for a peer that is not
        reading, or sent and not yet acknowledged by it."""
        limit = self.limits.max_queued_bytes
        session = self.session
        if (self._out_bytes + session._out_bytes <= limit
                and session.reliability.unacked_bytes <= limit):
            return  # the common case, without a property call
        if self.suspended:
            self._flush()  # drops the unsendable copies; only the resend buffer counts
        while not self.closed and getcurrent() is not self._hub:
            if self._out_bytes + session.queued_bytes > limit:
                self._flush_soon()
                self._drained.wait()
            elif session.unacked_bytes > limit:
                self._room_waiters += 1
                self._room.clear()
                try:
                    self._room.wait()
                finally:
                    self._room_waiters -= 1
            else:
                return


#: Largest stream window a caller may ask for.
MAX_STREAM_WINDOW = 65536

_PATTERN_EVENTS = frozenset(ev.PATTERN_EVENTS) | {ev.CreditReceived}


def _no_reply(payload: Any) -> None:
    return None


def no_patterns(connection: "Connection", event: Any) -> None:
    """This side hosts no publish/subscribe, work queues or broadcasts."""
    call_id = getattr(event, "call_id", 0)
    message = "this peer hosts no publish/subscribe, work queues or broadcasts"
    if call_id and connection.session.state is State.OPEN:
        connection.session.send_response(call_id, StatusCode.UNIMPLEMENTED, message)
        connection._flush_soon()
    else:
        log.warning("dropped a %s frame from %s: %s", type(event).__name__,
                    connection.stream.address, message)


_last_blocked_report = [0.0]


def _report_blocked_loop(late: float, interval: float) -> None:
    """Log that our own event loop was blocked (once a second at most, not
    once per connection): the likely reason peers drop us."""
    now = _monotonic()
    if now - _last_blocked_report[0] >= 1.0:
        _last_blocked_report[0] = now
        log.warning("the gevent event loop of this process was blocked for about %.3fs "
                    "(heartbeat interval %.3fs): peers may have declared it lost; "
                    "look for CPU-bound or blocking code running in a greenlet", late, interval)
