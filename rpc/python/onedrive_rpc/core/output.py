"""The writing half of a Session (h11 pairs its readers with its writers):
what this side sends, framed for the wire. Sequenced frames (calls,
answers, cancels, pattern frames) get the next seq and wait in the resend
buffer until the peer acknowledges them; every frame carries our
cumulative ack when it moved. Nothing here reads a clock or a socket.
"""
from __future__ import annotations

import enum
from typing import List, Mapping, Optional, Sequence

from . import pattern_frames, wire_pb2
from .call_limits import CallLimits
from .errors import LocalProtocolError, MessageTooLarge, MetadataTooLarge, Violation
from .violations import encode_violations
from .metadata import excess
from .framing import LARGE_FRAME, Frame, Payload, Pieces, frame_header, varint
from .liveness import Liveness
from .reliability import Reliability

__all__ = ["Role", "State", "SessionOutput", "close_frame"]

_Envelope = wire_pb2.Envelope
_StreamItem = pattern_frames.StreamItem
_StreamEnd = pattern_frames.StreamEnd
_Notify = pattern_frames.Notify
# Envelope.ack_now (field 4) = true, written by hand before a frame's field.
_ACK_NOW = b"\x20\x01"


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    CONNECTING = "connecting"    # client: Hello sent, waiting for Welcome
    AWAIT_HELLO = "await_hello"  # server: waiting for the client's Hello
    OPEN = "open"
    # The connection is gone, the session lives on for a resume: what is
    # sent goes to the resend buffer only; nothing is received.
    SUSPENDED = "suspended"
    CLOSED = "closed"


def close_frame(code: int, message: str, end_session: bool,
                violations: Sequence[Violation] = ()) -> bytes:
    """A Close frame made apart from any session, for a connection a session
    is leaving while it lives on over another (a resume replaced it): it
    carries no ack, and nothing of the session changes. (Session.send_close
    would record an ack as sent that may never arrive, and the session's
    next connection would then not send it.)"""
    body = _close(code, message, end_session, violations).SerializeToString()
    return frame_header(len(body)) + body


def _close(code: int, message: str, end_session: bool,
           violations: Sequence[Violation]) -> "wire_pb2.Envelope":
    """An Envelope holding a Close (no seq, no ack yet)."""
    env = _Envelope()
    env.close.status.code = code
    env.close.status.message = message
    if violations:
        env.close.status.bad_request = encode_violations(violations)
    env.close.end_session = end_session
    return env


def _timeout_us(timeout: float) -> int:
    # At least 1 µs: 0 on the wire means "no deadline".
    return max(1, int(timeout * 1_000_000))


class SessionOutput:
    """The sending side of a Session (which inherits it): see the module."""

    state: State
    reliability: Reliability
    liveness: Optional[Liveness]
    peer_max_frame_size: int
    peer_max_calls: int
    call_limits: CallLimits
    max_metadata_size: int
    max_metadata_entries: int
    _out: List[Frame]
    #: Bytes queued for the wire that data_to_send() has not handed out (a
    #: plain attribute: the driver looks at it several times per call).
    queued_bytes: int

    def data_to_send(self, now: Optional[float] = None) -> List[Frame]:
        """Everything queued for the wire, in order; the queue is emptied.

        `now`, when given, is when the driver writes it: the heartbeat clock
        counts our silence from there.
        """
        out = self._out
        self._out = []
        self.queued_bytes = 0
        if now is not None and out and self.liveness is not None:
            self.liveness.last_sent = now  # Liveness.sent(), inlined
        return out

    @property
    def unacked_bytes(self) -> int:
        """Bytes of sequenced frames sent or queued that the peer has not
        acknowledged: the owner stops sending while this is too large."""
        return self.reliability.unacked_bytes

    def send_request(self, call_id: int, method: str, payload: Payload,
                     timeout: Optional[float] = None,
                     metadata: Optional[Mapping[str, str]] = None,
                     initial_credit: int = 0) -> None:
        """Call `method`; for a server stream, `initial_credit` is how many
        items the peer may send before we grant more (0: its default).
        Raises MetadataTooLarge (nothing queued) for metadata beyond the
        limits (core/metadata.py), LocalProtocolError past the calls the
        peer serves at once (wait until `may_request`)."""
        if self.state is not State.OPEN:
            self._require_open()
        requests = self.reliability.requests_out
        limit = self.peer_max_calls
        if limit and len(requests) >= limit:
            raise LocalProtocolError(f"the peer serves at most {limit} calls at once: "
                                     f"wait until one is answered or cancelled")
        if metadata:
            self._check_metadata(metadata, "request")
        env = _Envelope()
        req = env.request
        req.call_id = call_id
        req.method = method
        if timeout is not None:
            req.timeout_us = _timeout_us(timeout)
        if metadata:
            req.metadata.update(metadata)
        if initial_credit:
            req.initial_credit = initial_credit
        self._queue(env, payload, True)
        requests.add(call_id)

    @property
    def may_request(self) -> bool:
        """Whether one more Request stays within the calls the peer serves
        at once (its handshake's max_concurrent_calls)."""
        limit = self.peer_max_calls
        return not limit or len(self.reliability.requests_out) < limit

    def send_response(self, call_id: int, code: int, message: str = "",
                      details: str = "", payload: Payload = b"",
                      violations: Sequence[Violation] = ()) -> None:
        """Answer a call (`violations`: of an INVALID_ARGUMENT error, sent as
        Status.bad_request). Raises MessageTooLarge (nothing queued) if the
        answer does not fit the peer's frame limit; the call stays open so
        the caller can answer again with an error."""
        if self.state is not State.OPEN:
            self._require_open()
        if call_id not in self.reliability.calls_in:
            raise LocalProtocolError(f"call {call_id} is not in flight")
        env = _Envelope()
        resp = env.response
        resp.call_id = call_id
        if code or message or details:
            status = resp.status
            status.code = code
            status.message = message
            status.details = details
            if violations:
                status.bad_request = encode_violations(violations)
        self._queue(env, payload, True)
        self.reliability.calls_in.discard(call_id)
        self.call_limits.settle(self.reliability, call_id)

    def send(self, frame: pattern_frames.OutFrame, ack_now: bool = False) -> int:
        """Queue one sequenced frame of the other patterns (§8): a typed
        frame of core/pattern_frames.py. `ack_now` asks the peer to
        acknowledge it at once. Returns the frame's seq: it has arrived once
        `reliability.peer_acked` reaches it."""
        if self.state is not State.OPEN:
            self._require_open()
        kind = type(frame)
        if kind is _StreamItem or kind is _StreamEnd:
            call_id = frame.call_id  # type: ignore[union-attr]
            if call_id not in self.reliability.calls_in:
                raise LocalProtocolError(f"call {call_id} is not in flight")
        elif kind is _Notify and frame.metadata:  # type: ignore[union-attr]
            self._check_metadata(frame.metadata, "notify")  # type: ignore[union-attr]
        tail = pattern_frames.encode(frame)
        if ack_now:
            tail = _ACK_NOW + tail
        seq = self.reliability.next_seq
        self._queue(None, getattr(frame, "payload", b""), True, tail=tail)
        if kind is _StreamEnd:
            self.reliability.calls_in.discard(frame.call_id)  # type: ignore[union-attr]
            self.call_limits.settle(self.reliability, frame.call_id)  # type: ignore[union-attr]
        return seq

    def withdraw(self, seq: int) -> bool:
        """While SUSPENDED: make sequenced frame `seq`, still unacknowledged,
        reach the peer as an empty heartbeat instead (it keeps its place in
        the sequence). For a confirmed notification reported as failed, so
        that it does not arrive after all on a resume. False if it is no
        longer held (acknowledged) or the session is not suspended."""
        if self.state is not State.SUSPENDED:
            return False
        env = _Envelope(seq=seq)
        env.heartbeat.SetInParent()
        body = env.SerializeToString()
        return self.reliability.replace(seq, frame_header(len(body)) + body)

    def send_cancel(self, call_id: int, reason: str = "", code: int = 0) -> None:
        """Give up on call `call_id`: it no longer counts against the
        calls the peer serves at once. `code`: why (CANCELLED, or
        DEADLINE_EXCEEDED when the deadline passed here first)."""
        self._require_open()
        env = _Envelope()
        env.cancel.call_id = call_id
        env.cancel.reason = reason
        if code:
            env.cancel.code = code
        self._queue(env, b"", True)
        self.reliability.requests_out.discard(call_id)

    def send_close(self, code: int, message: str = "", end_session: bool = True,
                   violations: Sequence[Violation] = ()) -> None:
        """Queue a Close and stop; further sends are LocalProtocolErrors."""
        if self.state is State.CLOSED:
            return
        self._queue(_close(code, message, end_session, violations), b"")
        self.state = State.CLOSED

    @property
    def calls_in_flight(self) -> int:
        """Server side: calls received and not yet answered."""
        return len(self.reliability.calls_in)

    def _check_metadata(self, metadata: Mapping[str, str], where: str) -> None:
        found = excess(metadata, self.max_metadata_size, self.max_metadata_entries)
        if found is not None:
            raise MetadataTooLarge(where, *found)

    def _require_open(self) -> None:
        if self.state is not State.OPEN and self.state is not State.SUSPENDED:
            raise LocalProtocolError(f"cannot send while {self.state.value}")

    def _queue(self, env: Optional[_Envelope], payload: Payload, sequenced: bool = False,
               ack: bool = True, tail: bytes = b"") -> None:
        """Frame `env` (+ payload) for the wire. Sequenced frames get the
        next seq and stay in the resend buffer until acknowledged; every
        frame but the handshake's carries our cumulative ack when it moved
        since we last sent it (a resuming handshake says what it received in
        its own fields)."""
        rel = self.reliability
        seq = rel.next_seq if sequenced else 0
        acked = rel.received if ack and rel.received != rel.ack_sent else 0
        if env is None:
            # Only seq and ack, written by hand, before the encoded rest.
            body = (b"\x10" + varint(seq) if seq else b"") + (
                b"\x18" + varint(acked) if acked else b"") + tail
        else:
            if seq:
                env.seq = seq
            if acked:
                env.ack = acked
            body = env.SerializeToString() + tail if tail else env.SerializeToString()
        # Payload first, then the rest of the envelope.
        plen = len(payload)
        if plen:
            prefix = b"\x0a" + varint(plen)
            total = len(prefix) + plen + len(body)
            if isinstance(payload, Pieces):  # large, by its making
                buffers: List[Frame] = [frame_header(total) + prefix, *payload.parts, body]
            elif plen < LARGE_FRAME:
                buffers = [b"".join((frame_header(total), prefix, payload, body))]
            else:
                # Large payloads are never concatenated: the driver writes
                # header, payload and tail with one vectored send.
                buffers = [frame_header(total) + prefix, payload, body]
        else:
            total = len(body)
            buffers = [frame_header(total) + body]
        if total > self.peer_max_frame_size:
            # Nothing is committed: seq and ack stay as they were.
            raise MessageTooLarge(total, self.peer_max_frame_size)
        size = total + 4
        if acked:  # Reliability.acking(), inlined: this runs for every call
            rel.ack_sent = acked
            rel.ack_owed_since = None
        if self.state is not State.SUSPENDED:  # else only the resend buffer keeps it
            self._out.extend(buffers)
            self.queued_bytes += size
        if seq:  # Reliability.stamp() and keep(), inlined
            rel.next_seq = seq + 1
            rel.unacked.append((seq, buffers, size))
            rel.unacked_bytes += size
