"""A Connection: one Stream and its Session, driven by gevent.

It owns the lifecycle and the reader; the rest is in parts with one job
each: `Outbox` (coalesced writes), `OutgoingCalls` (what we call),
`IncomingCalls` (what we serve), `Ticker` (heartbeats and the silence
bound). Its owner (a Peer, or the Server) is one typed object given at
construction (`ConnectionOwner`): it serves requests, hosts the patterns
and hears of suspensions and the end.

Phases (one table; only `_enter` changes the phase):

    RUNNING   --stream lost, session resumable--> SUSPENDED
    SUSPENDED --resume(new stream)--------------> RUNNING
    RUNNING | SUSPENDED --close, abort, grace out, fatal loss--> CLOSED

A Connection outlives its stream when its session is resumable: while
SUSPENDED, calls and answers keep going into the session's resend buffer
until `resume()` gives it a new stream whose handshake resumed the
session, or its grace period runs out. How it ended (`end`) is decided
once, here: ORDERLY when a Close frame was sent or received, else LOST.
"""
from __future__ import annotations

import enum
import logging
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, Optional, Protocol

import gevent
from gevent import getcurrent
from gevent.event import Event
from gevent.hub import get_hub

from .. import forking
from ..calls import CallOrigin, Context, Identity, fresh
from ..config import Limits
from ..core import events as ev
from ..core.budget import OutputBudget
from ..core.pattern_frames import Credit
from ..core.output import close_frame
from ..core.reliability import ACK_DELAY
from ..core.session import Session, State
from ..errors import PeerLost, RemoteProtocolError, RpcError, StatusCode
from ..logs import Throttled
from ..transport.base import ConnectionClosed, Stream
from ..turns import FAIR_CHECK, start_turn, take_turns
from .incoming import IncomingCalls
from .outbox import MID_BATCH_FLUSH, Outbox
from .outgoing import OutgoingCalls
from .outlet import ConnectionOutlet
from .ticker import Ticker

__all__ = ["Connection", "ConnectionOwner", "End", "Phase", "REPLACED", "refuse_pattern_event"]

log = logging.getLogger(__name__)
#: Warnings a peer can provoke at will are rate-limited.
warn = Throttled(log)

_monotonic = time.monotonic


_LIVE_STATES = (State.OPEN, State.SUSPENDED)

#: The Close a connection gets when its session resumed on another (§4.2).
REPLACED = "replaced by a new connection of the same session (it resumed)"


class Phase(enum.Enum):
    RUNNING = "running"      # reading, writing, serving
    SUSPENDED = "suspended"  # the stream is gone; the session waits for a resume
    CLOSED = "closed"        # ended: `close_reason` says why, `end` how


class End(enum.Enum):
    ORDERLY = "orderly"  # a Close frame was sent or received
    LOST = "lost"        # the peer died, hung, was cut off or broke the protocol


class ConnectionOwner(Protocol):
    """Who a Connection works for: given once, at construction."""

    def serve(self, call: Context, event: Any) -> None:
        """Run the handler of a RequestReceived or NotifyReceived (raise
        RpcError to answer with its status)."""

    def on_pattern_event(self, connection: "Connection", event: Any) -> None:
        """A publish/subscribe, work queue or broadcast frame arrived."""

    def on_suspended(self, connection: "Connection", reason: RpcError) -> None:
        """The stream was lost; the session waits for a resume (a loss)."""

    def on_closed(self, connection: "Connection") -> None:
        """The connection ended; `connection.end_to_report()` says what
        users should hear of it."""


class Connection:
    """One Stream and its Session. Calls go out through `outgoing`, are
    served by `incoming`; the broker pushes through `outlet`, within
    `output_budget` (a server's, shared by its connections) if given."""

    def __init__(self, stream: Stream, session: Session, owner: ConnectionOwner, *,
                 limits: Optional[Limits] = None, session_grace: float = 0.0,
                 output_budget: "Optional[OutputBudget[ConnectionOutlet]]" = None) -> None:
        self.stream = stream
        self.session = session
        self.owner = owner
        self.limits = limits or Limits()
        #: Seconds a lost stream's session is kept for a resume (0: never).
        self.session_grace = session_grace
        #: Who the server's authenticate hook says the peer is (None: what
        #: the handshake and the stream show: Identity.of).
        self.identity: Optional[Identity] = None
        session.end_session_on_loss = session_grace <= 0
        self.hub = get_hub()
        self._loop = self.hub.loop
        self.phase = Phase.RUNNING
        # Read often on hot paths: kept in step with `phase` by _enter only.
        self.closed = False
        self.suspended = False
        self.end: Optional[End] = None
        self.close_reason: Optional[RpcError] = None
        self.suspend_reason: Optional[RpcError] = None
        self.suspended_at = 0.0  # monotonic, when it last became SUSPENDED
        #: Wall-clock times (for operators): the session began; its current
        #: stream connected (a resume moves it).
        self.started_at = self.connected_at = time.time()
        #: Bytes read from the peer, over every stream of the session.
        self.bytes_in = 0
        #: Monotonic: while SUSPENDED, the session ends unless resumed by then.
        self.resume_by = 0.0
        #: Times the session resumed over a new stream.
        self.resumes = 0
        self.closed_event = Event()
        # A Close frame was sent or received: the end will be ORDERLY.
        self._orderly = False
        # The owner heard of this loss at suspension: not again at the end.
        self._loss_reported = False
        self._grace_timer: Any = None
        self._pending_deadline_timer: Any = None
        self._events: Deque[ev.Event] = deque()
        self._reader: Optional[gevent.Greenlet] = None
        #: Set whenever a call finishes, either way (drain and backpressure wait on it).
        self.progress = Event()
        self.outbox = Outbox(self, self._loop)
        self.outgoing = OutgoingCalls(self)
        self.incoming = IncomingCalls(self)
        self.ticker = Ticker(self._loop, self._silent, self.outbox.flush_soon,
                             reading_paused=lambda: self.incoming.paused)
        #: What the server's broker pushes this peer's frames through.
        self.outlet = ConnectionOutlet(self, output_budget)
        outgoing, incoming = self.outgoing, self.incoming
        self._routes: Dict[type, Callable[[Any], None]] = {
            ev.ResponseReceived: outgoing.on_response,
            ev.RequestReceived: incoming.on_request,
            ev.StreamItemReceived: outgoing.on_stream_item,
            ev.StreamEndReceived: outgoing.on_stream_end,
            ev.NotifyReceived: incoming.on_notify,
            ev.CancelReceived: incoming.on_cancel,
            ev.RequestRefused: incoming.on_refused,
            ev.CreditReceived: self._on_credit,
            ev.CloseReceived: self._on_close_frame,
        }
        for kind in ev.PATTERN_EVENTS:
            self._routes[kind] = self._on_pattern_event
        forking.track(self)

    # ------------------------------------------------------------ reading off

    @property
    def peer(self) -> Optional[ev.PeerInfo]:
        return self.session.peer

    @property
    def address(self) -> str:
        return self.stream.address

    @property
    def origin(self) -> CallOrigin:
        """Who the peer is, as its calls' handlers see it (identity, ...)."""
        return self.incoming.origin

    @property
    def calls(self) -> Dict[int, Context]:
        """Incoming calls being served, by call id."""
        return self.incoming.calls

    @property
    def refusing_outgoing(self) -> bool:
        """True once new calls are refused (draining, a slow consumer)."""
        return self.outgoing.refusal is not None

    def end_to_report(self) -> Optional[str]:
        """What the owner's users should hear of the end: "disconnected"
        (orderly), "lost" (a loss not reported at suspension), or None."""
        if self.end is End.ORDERLY:
            return "disconnected"
        if self.end is End.LOST and not self._loss_reported:
            return "lost"
        return None

    def closed_error(self) -> RpcError:
        """What using this connection raises once it is closed."""
        reason = self.close_reason
        return PeerLost("connection closed") if reason is None else fresh(reason)

    def is_reader(self, greenlet: Any) -> bool:
        return greenlet is self._reader

    # --------------------------------------------------------------- lifecycle

    def _enter(self, phase: Phase) -> None:
        """The one place the phase changes (see the module's table)."""
        if self.phase is Phase.CLOSED or phase is self.phase:
            raise RuntimeError(f"connection cannot go from {self.phase.name} to {phase.name}")
        self.phase = phase
        self.closed = phase is Phase.CLOSED
        self.suspended = phase is Phase.SUSPENDED
        self.outbox.live = phase is Phase.RUNNING
        if phase is Phase.RUNNING:
            self._loss_reported = False
        elif phase is Phase.CLOSED:
            self.end = End.ORDERLY if self._orderly else End.LOST

    def start(self, events: Iterable[ev.Event] = ()) -> "Connection":
        """Run a connection whose handshake is done (see `handshake`);
        `events` are what arrived right behind it."""
        self._events.extend(events)
        self.incoming.set_origin()
        self._reader = gevent.spawn(self._read_loop)
        self.ticker.start(self.session)
        self.outbox.flush_soon()
        return self

    def resume(self, stream: Stream, session: Session, events: Iterable[ev.Event] = ()) -> None:
        """Carry on the suspended session over a new connection whose
        handshake resumed it: what the peer lacks is already queued."""
        if self.closed:
            raise self.closed_error()
        if not self.suspended:
            raise RuntimeError("only a suspended connection can resume")
        self._stop_timers()
        self.outbox.restart()
        self.stream = stream
        self.session = session
        session.end_session_on_loss = False
        # Frames the old session took while this handshake finished.
        session.queue_frames_sent_since_resend()
        self.connected_at = time.time()
        self.resumes += 1
        self._enter(Phase.RUNNING)
        self.start(events)
        log.info("resumed: %s", self.origin.who, extra=self.origin.fields)
        self.outbox.wake_senders()

    def close(self, code: StatusCode = StatusCode.UNAVAILABLE,
              message: str = "connection closed", flush_timeout: float = 1.0) -> None:
        """Orderly close: tell the peer, flush for up to flush_timeout, hang up."""
        if self.closed:
            return
        self._orderly = True
        if not self.suspended and self.session.state in (State.OPEN, State.AWAIT_HELLO):
            self.session.send_close(code, message)
            if getcurrent() is self.hub:
                self.outbox.flush()  # best effort: the hub cannot wait
            else:
                self.outbox.flush_soon()
                self.outbox.drained.wait(flush_timeout)
        self._teardown(RpcError.from_status(code, message))

    def drain(self, grace: Optional[float]) -> bool:
        """Refuse new outgoing calls, then wait up to `grace` seconds for the
        calls in flight both ways to finish; True if they all did."""
        self.refuse_outgoing(PeerLost("connection is closing"))
        busy = self._busy
        if grace:
            with gevent.Timeout(grace, False):
                while busy() and not self.closed:
                    self.progress.clear()
                    self.progress.wait()
        return not busy()

    def _busy(self) -> bool:
        return bool(self.outgoing.pending or self.incoming.calls)

    def refuse_outgoing(self, reason: RpcError) -> None:
        """From now on new outgoing calls fail with `reason` (the first one given)."""
        if self.outgoing.refusal is None:
            self.outgoing.refusal = reason

    def abort(self, error: RpcError) -> None:
        """Close at once, without the close frame (the stream is unusable)."""
        self._teardown(error)

    def replace(self) -> None:
        """The session goes on over a new connection (its client resumed
        it): tell whoever is at the old one why it ends (a Close, best
        effort: it is likely dead), then let it go."""
        if self.closed or self.suspended:
            return
        if not self.outbox.out_bytes:  # between frames: nothing half written
            try:
                self.stream.send_nowait([close_frame(StatusCode.UNAVAILABLE, REPLACED, False)])
            except ConnectionClosed:
                pass
        self.suspend(PeerLost(REPLACED))

    def suspend(self, reason: RpcError) -> None:
        """Give up the current stream as lost (e.g. replaced by a new one of
        the same session); the session is kept if it is resumable."""
        self.stream_lost(reason, self.stream)

    def stream_lost(self, error: RpcError, stream: Stream, silent: bool = False) -> None:
        """The transport under `stream` is gone (EOF, reset, silence). A
        resumable session is suspended; anything else ends."""
        if self.closed or self.suspended or stream is not self.stream:
            return  # already handled, or news about a connection we replaced
        if self.session_grace <= 0 or self._orderly:
            self.abort(error)
            return
        self._enter(Phase.SUSPENDED)
        self.suspend_reason, self.suspended_at = error, _monotonic()
        self.ticker.stop()
        stream.close()
        self.outbox.restart()
        self.session.suspend()  # the resend buffer keeps what matters
        self.outgoing.failed_while_suspended = False
        grace = self._resume_grace()
        if silent:
            # Declared lost by heartbeats: the peer is dead or hung, so what
            # we wait for fails now; the session may still resume later.
            self.outgoing.fail_all(error)
        else:
            liveness = self.session.liveness
            bound = liveness.timeout if liveness is not None else grace
            self._pending_deadline_timer = self._loop.timer(min(bound, grace))
            self._pending_deadline_timer.start(self.outgoing.fail_all, error)
        self._grace_timer = self._loop.timer(grace)
        self._grace_timer.start(self._grace_expired, error)
        self.resume_by = self.suspended_at + grace
        log.info("lost: %s (%s); the session waits %.1fs for a resume", self.origin.who,
                 error.message, grace, extra=self.origin.fields)
        self._loss_reported = True
        self._loop.run_callback(self.owner.on_suspended, self, error)

    def _resume_grace(self) -> float:
        """How long a suspended session waits for a resume: ours, or less
        if the peer said it keeps the session for less (its Welcome)."""
        announced = self.session.peer_session_grace
        return min(self.session_grace, announced) if announced > 0 else self.session_grace

    def _grace_expired(self, error: RpcError) -> None:
        if self.suspended:
            self.abort(PeerLost(f"{error.message}; the session was not resumed within "
                                f"{self._resume_grace():.1f}s"))

    def _stop_timers(self) -> None:
        for timer in (self._grace_timer, self._pending_deadline_timer):
            if timer is not None:
                timer.close()
        self._grace_timer = self._pending_deadline_timer = None

    def _teardown(self, error: RpcError) -> None:
        if self.closed:
            return
        self._enter(Phase.CLOSED)
        self.close_reason = error
        self.ticker.stop()
        self._stop_timers()
        self.stream.close()
        self.outgoing.fail_all(error)
        self.incoming.abort_all(error)
        self.outbox.close()
        self.outlet.release()
        self.progress.set()
        self.closed_event.set()
        # What is left for the garbage collector is small: no buffers, and
        # no routes (bound methods: the cycles back to us).
        self.session.release()
        self._routes.clear()
        self._events.clear()
        reader = self._reader
        if reader is not None and reader is not getcurrent() and not self.incoming.serving(reader):
            reader.kill(block=False)
        self._loop.run_callback(self.owner.on_closed, self)

    def after_fork_in_child(self, parent_pid: int) -> None:
        """This process is a forked child: let go of the parent's socket."""
        if self.closed:
            return
        self._enter(Phase.CLOSED)
        self.close_reason = PeerLost(
            f"this process forked: the connection to {self.stream.address or 'the peer'} "
            f"stays with the parent process (pid {parent_pid}); connect again from the child")
        self.ticker.stop()
        self.stream.detach()

    # ---------------------------------------------------------------- reading

    def take_over_reading(self, serving: Any) -> None:
        # Hub callback: the reader `serving` blocked inside a handler.
        if self._reader is serving and not self.closed:
            self._reader = gevent.spawn(self._read_loop)

    def _read_loop(self) -> None:
        me, session, stream, loop = getcurrent(), self.session, self.stream, self._loop
        events, routes, outbox, outgoing = self._events, self._routes, self.outbox, self.outgoing
        ticker, confirms, rel = self.ticker, outgoing.confirms, session.reliability
        handled = 0
        turn = start_turn(loop)
        try:
            while self._reader is me and not self.closed:
                if events:
                    event = events.popleft()
                    route = routes.get(type(event))
                    if route is not None:  # nothing else reaches an open session
                        route(event)
                    del event  # held, a large payload's read buffer could not be reused
                    if session.queued_bytes >= MID_BATCH_FLUSH and outbox.writer is None:
                        # Answers to a long batch go out while the rest is
                        # served, so the peer works in parallel with us.
                        outbox.flush()
                    handled += 1
                    if handled == FAIR_CHECK:
                        handled = 0
                        turn = take_turns(loop, turn)
                    continue
                owed = rel.ack_owed_since
                if owed is not None and ticker.due > owed + ACK_DELAY:
                    ticker.arm()  # an ack is owed sooner than the next heartbeat
                turn = take_turns(loop, turn)
                if outbox.flush_scheduled and outbox.writer is None:
                    # The answers to what we read go out before we read
                    # again, not after a read that finds nothing.
                    outbox.flush()
                n = stream.recv_into(session.get_buffer())
                self.bytes_in += n
                if n == 0:
                    self.stream_lost(PeerLost(f"connection closed by {stream.address or 'the peer'}"),
                                     stream)
                    return
                events.extend(session.buffer_updated(n, _monotonic()))
                if session.queued_bytes:
                    outbox.flush_soon()
                if confirms and confirms[0][0] <= rel.peer_acked:
                    outgoing.release_confirms(rel.peer_acked)
                if outbox.room_waiters:
                    outbox.acks_arrived(rel.unacked_bytes)  # acks may have freed the resend buffer
        except ConnectionClosed as exc:
            self.stream_lost(PeerLost(f"connection lost: {exc}"), stream)
        except RemoteProtocolError as exc:
            warn.warning("protocol", "closing connection of %s: %s", self.origin.who, exc)
            outbox.flush_soon()
            self._loop.run_callback(self.abort, PeerLost(f"protocol error: {exc}"))
            # Give the Close frame explaining why one loop pass to go out.
        except gevent.GreenletExit:
            pass
        except Exception as exc:  # a bug of ours: never leave the peer hanging
            log.exception("reader of %s failed", stream.address)
            self.abort(RpcError(StatusCode.INTERNAL, f"reader failed: {exc!r}"))

    def _on_pattern_event(self, event: Any) -> None:
        self.owner.on_pattern_event(self, event)

    def _on_credit(self, event: ev.CreditReceived) -> None:
        if event.publish:  # a server's: a client's is ignored (its window is 0)
            self.outgoing.on_publish_credit(event.items)
        elif event.call_id:
            self.incoming.on_credit(event.call_id, event.items)
        else:
            self.owner.on_pattern_event(self, event)

    def _on_close_frame(self, event: ev.CloseReceived) -> None:
        if not event.end_session and self.session_grace > 0:
            # The peer dropped this connection but keeps the session.
            self.stream_lost(PeerLost(f"peer dropped the connection: {event.message}"), self.stream)
            return
        self._orderly = True
        self.abort(RpcError.from_close(event.code, event.message, event.violations))

    def _silent(self, error: RpcError) -> None:
        # From the ticker: the peer is dead or hung.
        warn.warning("silent", "%s: %s", error.message, self.origin.who)
        self.outbox.flush()  # the Close telling a frozen peer why, if it ever wakes
        self.stream_lost(error, self.stream, silent=True)

    def grant(self, credit: Credit) -> None:
        """Flow control for a stream, subscription or consumer: the peer may
        send `credit.items` more. Quietly nothing once the connection is gone."""
        if not self.closed and self.session.state in _LIVE_STATES:
            self.session.send(credit)
            self.outbox.flush_soon()


def refuse_pattern_event(connection: Connection, event: Any) -> None:
    """For a side that hosts no publish/subscribe, work queues or broadcasts."""
    call_id = getattr(event, "call_id", 0)
    message = "this peer hosts no publish/subscribe, work queues or broadcasts"
    if call_id and connection.session.state is State.OPEN:
        connection.outlet.answer(call_id, StatusCode.UNIMPLEMENTED, message)
    else:
        warn.warning("dropped", "dropped a %s frame from %s: %s", type(event).__name__,
                     connection.origin.who, message)
