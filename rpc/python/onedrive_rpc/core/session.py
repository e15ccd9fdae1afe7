"""The per-connection protocol state machine: bytes and time in, events and bytes out.

It never touches a socket, a clock or a greenlet: the driver feeds it what it
read (`get_buffer`/`buffer_updated`, or `receive_data`) with the current
time, sends what `data_to_send()` returns, and acts on the returned events.
That keeps every fault reproducible in a plain unit test.

States (one table, the rules at the top, as in h11):

    client: CONNECTING --(Challenge, Proof sent)--> --Welcome--> OPEN
    server: AWAIT_HELLO --Hello--> (Challenge sent, --Proof-->) OPEN
    any:    --Close sent or received, or protocol error--> CLOSED
    OPEN or CLOSED --suspend()--> SUSPENDED --send_close()--> CLOSED

Only Hello (server) / Welcome (client) and Close are accepted before OPEN,
in frames of at most HANDSHAKE_MAX_FRAME_SIZE (or max_frame_size, if
smaller): a peer that has not said who it is cannot make us buffer more.
Frames are taken one at a time until the one that opens the session; what
follows it in the same read is held to max_frame_size. Nothing is accepted
after CLOSED. A frame kind this version does not handle is a
RemoteProtocolError. The handshake itself (Hello, Welcome, resuming a
session, the shared-secret challenge) is core/negotiation.py's; the Session
applies what it decides. What it reads is decoded by its reading half,
core/input.py, and what it sends framed by its writing half, core/output.py.

SUSPENDED: the connection is gone (or was closed without ending the
session), and the session may resume on a new connection, whose Session
takes over this one's Reliability. suspend() drops what was queued for the
wire, and what was read but is not a frame yet, with every read buffer but
a small one. Calls, answers, cancels and pattern frames may still be sent:
they get their seq and wait in the resend buffer, but nothing reaches
data_to_send(), and unsequenced frames (heartbeats, Close) are dropped.
withdraw() works only here. Nothing is received: any frame but Close is a
RemoteProtocolError (and closes), a Close closes. tick() does nothing and
next_deadline() is None.
"""
from __future__ import annotations

import secrets
from typing import Callable, Dict, List, Mapping, Optional, cast

from . import wire_pb2
from .errors import (LocalProtocolError, MessageTooLarge, PeerMetadataTooLarge,
                     RemoteProtocolError, StatusCode)
from . import events as ev
from . import metadata as md
from . import pattern_frames
from .liveness import Liveness
from .input import SessionInput
from .output import Role, SessionOutput, State
from .budget import ByteBudget
from .call_limits import CallLimits
from .negotiation import PROTOCOL_VERSION, Negotiation, Step
from .reliability import Reliability
from .violations import decode_violations
from .framing import (ABSOLUTE_MAX_FRAME_SIZE, DEFAULT_MAX_FRAME_SIZE, HANDSHAKE_MAX_FRAME_SIZE,
                      MIN_FRAME_LIMIT, Frame, FrameDecoder)

__all__ = ["Role", "State", "Session", "PROTOCOL_VERSION", "MessageTooLarge"]

_Envelope = wire_pb2.Envelope
_Handler = Callable[["Session", _Envelope, Frame], Optional["ev.Event"]]
_EMPTY: Mapping[str, str] = {}
_decode_notify = pattern_frames.DECODERS["notify"]
_SENT_BY_SERVERS = pattern_frames.SENT_BY_SERVERS
_decode_stream_end = pattern_frames.DECODERS["stream_end"]


class Session(SessionInput, SessionOutput):
    """Protocol state of one connection, for either role.

    Call ids are chosen by the caller (the driver); the session checks what
    the protocol requires of them (a server refuses a call id already in
    flight) and keeps no other per-call state.
    """

    def __init__(
        self,
        role: Role,
        *,
        peer_id: str,
        name: str = "",
        pid: int = 0,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        session_id: str = "",
        metadata: Optional[Mapping[str, str]] = None,
        heartbeat_interval: float = 1.0,
        heartbeat_misses: int = 3,
        reliability: Optional[Reliability] = None,
        resume_session_id: str = "",
        max_metadata_size: int = md.DEFAULT_MAX_METADATA_SIZE,
        max_metadata_entries: int = md.DEFAULT_MAX_METADATA_ENTRIES,
        min_heartbeat_interval: float = 0.0,
        max_concurrent_calls: int = 0,
        max_call_bytes: int = 0,
        call_budget: Optional[ByteBudget] = None,
        read_budget: Optional[ByteBudget] = None,
        resume_token: Optional[bytes] = None,
        secret: Optional[bytes] = None,
        publish_window: int = 0,
        session_grace: float = 0.0,
    ) -> None:
        if not MIN_FRAME_LIMIT <= max_frame_size <= ABSOLUTE_MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be in {MIN_FRAME_LIMIT}..{ABSOLUTE_MAX_FRAME_SIZE} "
                             f"bytes, not {max_frame_size}")
        if role is Role.SERVER:
            # What resumes this session: from the caller, else random here.
            resume_token = secrets.token_bytes(16) if resume_token is None else resume_token
            if len(resume_token) < 16:
                raise ValueError(f"a resume token must be at least 16 bytes, not {len(resume_token)}")
        #: Hello, Welcome and resuming (validates the heartbeat settings, the
        #: metadata limits and our own Hello metadata).
        self._negotiation = Negotiation(
            peer_id=peer_id, name=name, pid=pid, max_frame_size=max_frame_size, metadata=metadata,
            heartbeat_interval=heartbeat_interval, heartbeat_misses=heartbeat_misses,
            resume_session_id=resume_session_id, max_metadata_size=max_metadata_size,
            max_metadata_entries=max_metadata_entries,
            min_heartbeat_interval=min_heartbeat_interval,
            max_concurrent_calls=max_concurrent_calls, resume_token=resume_token or b"",
            secret=secret, publish_window=publish_window, session_grace=session_grace)
        #: What the peer's Requests may hold at once (more are refused).
        self.call_limits = CallLimits(max_concurrent_calls, max_call_bytes, call_budget)
        #: What a Request or Notify may carry as metadata, either way (core/metadata.py).
        self.max_metadata_size = max_metadata_size
        self.max_metadata_entries = max_metadata_entries
        #: Heartbeat bookkeeping, from the moment the session is OPEN.
        self.liveness: Optional[Liveness] = None
        #: Sequence numbers, acks and the resend buffer (outlives a connection).
        self.reliability = reliability or Reliability()
        #: Whether losing the peer ends the session (False: it may resume).
        self.end_session_on_loss = True
        self.role = role
        self.state = State.CONNECTING if role is Role.CLIENT else State.AWAIT_HELLO
        # Until the session is OPEN, frames are taken one at a time and held
        # to the handshake's limit (see buffer_updated).
        self._decoder = FrameDecoder(min(max_frame_size, HANDSHAKE_MAX_FRAME_SIZE), read_budget)
        self._handshaking = True
        self.max_frame_size = max_frame_size
        # Until the handshake says otherwise, assume the peer takes what we take.
        self.peer_max_frame_size = max_frame_size
        #: The most Requests the peer serves at once, as its handshake
        #: announced (0: none announced): keep no more unanswered.
        self.peer_max_calls = 0
        #: Client: the publish window the server announced (0: none).
        self.peer_publish_window = 0
        #: Client: how long the server keeps the session for a resume, as
        #: its Welcome said (0: not said).
        self.peer_session_grace = 0.0
        self.session_id = session_id
        self.peer: Optional[ev.PeerInfo] = None
        self.last_received: Optional[float] = None
        self._out: List[Frame] = []
        self.queued_bytes = 0
        # A protocol error found after good frames of the same read.
        self._error: Optional[RemoteProtocolError] = None

    # ---------------------------------------------------------------- output

    def start(self, now: float) -> None:
        """Client: queue the Hello that opens the handshake."""
        if self.role is not Role.CLIENT or self.state is not State.CONNECTING:
            raise LocalProtocolError("only a connecting client sends Hello, once")
        reliability = self.reliability
        self._queue(self._negotiation.hello(reliability.received, reliability.resume_token), b"",
                    ack=False)

    # -------------------------------------------------------------- liveness

    def tick(self, now: float) -> List[ev.PeerSilent]:
        """Advance the heartbeat clock: queue a heartbeat if we were silent
        for an interval; report PeerSilent (and close) if the peer was
        silent past its bound. Call it at next_deadline() or later."""
        liveness = self.liveness
        if liveness is None or self.state is not State.OPEN:
            return []
        if liveness.expired(now):
            silent = liveness.silent_for(now)
            self.send_close(StatusCode.UNAVAILABLE,
                            f"no sign of life from you for {silent:.3f}s "
                            f"(bound {liveness.timeout:.3f}s)", self.end_session_on_loss)
            return [ev.PeerSilent(silent, liveness.timeout)]
        if liveness.heartbeat_due(now) or self.reliability.ack_due(now):
            # A heartbeat also carries the ack nothing else carried in time.
            env = _Envelope()
            env.heartbeat.sent_us = int(now * 1_000_000)
            self._queue(env, b"")
        return []

    def next_deadline(self) -> Optional[float]:
        """When tick() next has something to do; None before the session is open."""
        if self.liveness is None or self.state is not State.OPEN:
            return None
        deadline = self.liveness.next_deadline()
        ack = self.reliability.ack_deadline()
        return deadline if ack is None or ack > deadline else ack

    def _open(self, interval: float, misses: int) -> None:
        self.state = State.OPEN
        self._handshaking = False
        self._decoder.max_frame_size = self.max_frame_size
        now = self.last_received if self.last_received is not None else 0.0
        self.liveness = Liveness(interval, misses, now)

    def suspend(self) -> None:
        """The connection is gone but the session may resume: keep taking
        calls and answers into the resend buffer; drop what was queued."""
        if self.state is State.OPEN or self.state is State.CLOSED:
            self.state = State.SUSPENDED
        self.data_to_send()
        # Nothing is read any more: a session kept for its grace period
        # holds no large read buffer.
        self._decoder.discard()

    def release(self) -> None:
        """The session ended for good (its connection closed): drop every
        buffer (read, output, resend), so that what is left of it is small,
        whenever the garbage collector gets to it."""
        self._decoder.close()
        self.data_to_send()
        reliability = self.reliability
        reliability.forget()
        self.call_limits.settle_all(reliability)

    def _not_open(self, env: _Envelope, payload: Frame) -> Optional[ev.Event]:
        raise RemoteProtocolError(f"{env.WhichOneof('kind')} frame received while {self.state.value}")

    # ------------------------------------------- handshake (core/negotiation.py)

    def _on_hello(self, env: _Envelope, payload: Frame) -> Optional[ev.Event]:
        if self.role is not Role.SERVER or self.state is not State.AWAIT_HELLO:
            raise RemoteProtocolError(f"hello frame received by a {self.role.value} "
                                      f"while {self.state.value}")
        return self._take(self._negotiation.on_hello(env.hello, self.session_id))

    def _on_challenge(self, env: _Envelope, payload: Frame) -> Optional[ev.Event]:
        if self.role is not Role.CLIENT or self.state is not State.CONNECTING:
            raise RemoteProtocolError(f"challenge frame received by a {self.role.value}")
        return self._take(self._negotiation.on_challenge(env.challenge))

    def _on_proof(self, env: _Envelope, payload: Frame) -> Optional[ev.Event]:
        if self.role is not Role.SERVER or self.state is not State.AWAIT_HELLO:
            raise RemoteProtocolError(f"proof frame received by a {self.role.value}")
        return self._take(self._negotiation.on_proof(env.proof))

    @property
    def authenticated(self) -> bool:
        """The peer proved in the handshake that it knows the shared secret."""
        return self._negotiation.proven

    def _on_welcome(self, env: _Envelope, payload: Frame) -> Optional[ev.Event]:
        if self.role is not Role.CLIENT or self.state is not State.CONNECTING:
            raise RemoteProtocolError(f"welcome frame received by a {self.role.value} "
                                      f"while {self.state.value}")
        return self._take(self._negotiation.on_welcome(env.welcome))

    def accept_resume(self, reliability: Reliability) -> ev.Handshaken:
        """Server: continue the session the Hello named, whose state is
        `reliability`; what the client has not received is queued again.
        ResumeRefused without the session's resume token, RemoteProtocolError
        for a Hello claiming frames never sent: a Close saying why is then
        queued, and `reliability` is untouched."""
        self._require_resume_request()
        try:
            step = self._negotiation.accept_resume(reliability)
        except RemoteProtocolError as exc:
            self._fail(exc)
            raise
        return cast(ev.Handshaken, self._take(step))

    def refuse_resume(self) -> ev.Handshaken:
        """Server: the named session is unknown (or gone): start a new one."""
        self._require_resume_request()
        return cast(ev.Handshaken, self._take(self._negotiation.refuse_resume(self.session_id)))

    def _require_resume_request(self) -> None:
        if self.state is not State.AWAIT_HELLO:
            raise LocalProtocolError("no resumption was requested")

    def refuse_hello(self, code: int, message: str) -> None:
        """Server: turn the client away after its Hello was taken (its owner
        vetted it: an authentication hook), before anything was sent: the
        Welcome queued for it is dropped and a Close sent instead."""
        if self.role is not Role.SERVER:
            raise LocalProtocolError("only a server refuses a Hello")
        self.data_to_send()
        self.send_close(code, message)

    def queue_frames_sent_since_resend(self) -> None:
        """Queue the sequenced frames the resend of this resumed session did
        not include: the old connection's session took them (into the
        shared resend buffer) while the handshake was finishing."""
        self._requeue(self._negotiation.frames_sent_since_resend(self.reliability))

    def _take(self, step: Step) -> Optional[ev.Event]:
        """Do what the handshake decided, in order: the Welcome is queued
        before the frames resent behind it."""
        if step.peer is not None:
            self.peer = step.peer
        if step.peer_max_frame_size:
            self.peer_max_frame_size = step.peer_max_frame_size
        self.peer_max_calls = self._negotiation.peer_max_calls
        self.peer_publish_window = self._negotiation.peer_publish_window
        self.peer_session_grace = self._negotiation.peer_session_grace
        if step.reliability is not None:
            self.reliability = step.reliability
        if step.resume_token:
            self.reliability.resume_token = step.resume_token
        if step.session_id is not None:
            self.session_id = step.session_id
        if step.interval:
            self._open(step.interval, self._negotiation.misses)
        if step.reply is not None:
            self._queue(step.reply, b"", ack=False)
        if step.resend_after is not None:
            self._requeue(self._negotiation.resend(self.reliability, step.resend_after))
        return step.event

    def _requeue(self, buffers: List[Frame]) -> None:
        """Queue frames sent before, as they are (a resend)."""
        self._out.extend(buffers)
        self.queued_bytes += sum(len(b) for b in buffers)

    # ------------------------------------------------------- frames when OPEN

    def _on_request(self, env: _Envelope, payload: Frame) -> Optional[ev.Event]:
        req = env.request
        call_id = req.call_id
        if call_id in self.reliability.calls_in:
            raise RemoteProtocolError(f"call id {call_id} is already in flight")
        if not req.method:
            raise RemoteProtocolError(f"request {call_id} names no method")
        reliability = self.reliability
        reliability.calls_in.add(call_id)
        if len(req.metadata):
            try:
                metadata: Mapping[str, str] = md.received(
                    req.metadata, self.max_metadata_size, self.max_metadata_entries, "request")
            except PeerMetadataTooLarge as exc:
                return self._refuse(call_id, req.method, str(exc))
        else:
            metadata = _EMPTY
        size = len(payload)
        refusal = self.call_limits.refusal(reliability, size)
        if refusal is not None:
            return self._refuse(call_id, req.method, refusal)
        self.call_limits.admit(reliability, call_id, size)
        if req.timeout_us:
            timeout: Optional[float] = req.timeout_us / 1_000_000
            deadline: Optional[float] = self.last_received + timeout  # type: ignore[operator]
        else:
            timeout = deadline = None
        return ev.RequestReceived(call_id, req.method, payload, timeout, metadata, deadline,
                                  req.initial_credit)

    def _refuse(self, call_id: int, method: str, reason: str) -> ev.RequestRefused:
        """Answer a Request past a limit RESOURCE_EXHAUSTED ourselves: its
        handler never runs, and the connection goes on being read."""
        self.send_response(call_id, StatusCode.RESOURCE_EXHAUSTED, reason)
        return ev.RequestRefused(call_id, method, StatusCode.RESOURCE_EXHAUSTED, reason)

    def _on_response(self, env: _Envelope, payload: Frame) -> Optional[ev.Event]:
        resp = env.response
        self.reliability.requests_out.discard(resp.call_id)
        status = resp.status
        code = status.code
        if code and status.bad_request:  # an OK answer never pays for it
            return ev.ResponseReceived(resp.call_id, code, status.message, status.details, payload,
                                       decode_violations(status.bad_request))
        return ev.ResponseReceived(resp.call_id, code, status.message, status.details, payload)

    def _on_cancel(self, env: _Envelope, payload: Frame) -> Optional[ev.Event]:
        cancel = env.cancel
        if cancel.call_id not in self.reliability.calls_in:
            return None  # already answered: the cancel crossed our response
        # Its handler may take a moment to stop; it no longer counts.
        self.call_limits.settle(self.reliability, cancel.call_id)
        return ev.CancelReceived(cancel.call_id, cancel.reason,
                                 cancel.code == StatusCode.DEADLINE_EXCEEDED)

    def _on_pattern(self, env: _Envelope, payload: Frame) -> Optional[ev.Event]:
        kind = env.WhichOneof("kind")
        if self.role is Role.SERVER and (kind in _SENT_BY_SERVERS or (
                kind == "credit" and env.credit.publish)):
            what = "credit{publish}" if kind == "credit" else kind
            raise RemoteProtocolError(f"{what} frame received by a server: only a server sends it")
        event = pattern_frames.DECODERS[kind](env, payload)  # type: ignore[index]
        if kind in pattern_frames.OPENS_CALL:
            call_id = event.call_id  # type: ignore[union-attr]
            if call_id:
                calls_in = self.reliability.calls_in
                if call_id in calls_in:
                    raise RemoteProtocolError(f"call id {call_id} is already in flight")
                calls_in.add(call_id)
        return event

    def _on_stream_end(self, env: _Envelope, payload: Frame) -> Optional[ev.Event]:
        event = _decode_stream_end(env, payload)
        self.reliability.requests_out.discard(event.call_id)  # type: ignore[union-attr]
        return event

    def _on_notify(self, env: _Envelope, payload: Frame) -> Optional[ev.Event]:
        if len(env.notify.metadata):
            # A notification has no answer to refuse it with: over the
            # limits, PeerMetadataTooLarge closes (RESOURCE_EXHAUSTED).
            md.received(env.notify.metadata, self.max_metadata_size, self.max_metadata_entries,
                        "notify")
        return _decode_notify(env, payload)

    def _on_heartbeat(self, env: _Envelope, payload: Frame) -> Optional[ev.Event]:
        return None  # receiving it was the point

    def _on_close(self, env: _Envelope, payload: Frame) -> Optional[ev.Event]:
        self.state = State.CLOSED
        status = env.close.status
        return ev.CloseReceived(status.code, status.message, env.close.end_session,
                                decode_violations(status.bad_request) if status.code else ())

    # Frame kind -> handler, one table per state (OPEN, and before it): the
    # state check costs a dict pick per frame, not a call. Class-wide, so a
    # session holds no bound methods of itself (no reference cycle).
    _open_handlers: Dict[str, _Handler] = dict.fromkeys(pattern_frames.DECODERS, _on_pattern)
    _open_handlers.update(
        request=_on_request, response=_on_response, cancel=_on_cancel, heartbeat=_on_heartbeat,
        close=_on_close, notify=_on_notify, stream_end=_on_stream_end, hello=_on_hello,
        welcome=_on_welcome)
    _handshake_handlers: Dict[str, _Handler] = dict.fromkeys(_open_handlers, _not_open)
    _handshake_handlers.update(hello=_on_hello, welcome=_on_welcome, close=_on_close,
                               challenge=_on_challenge, proof=_on_proof)
