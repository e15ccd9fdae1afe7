"""The reading half of a Session (h11 pairs its readers with its writers):
bytes in, frames out of the decoder, their acks and seqs applied, each
frame handed to the handler of its kind for the session's state (the
Session's tables). Before OPEN frames are taken one at a time and held to
the handshake's frame limit; a protocol error closes with a Close saying
why, after the events of the good frames read before it. No I/O.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

from google.protobuf.message import DecodeError

from . import events as ev
from . import wire_pb2
from .errors import FrameTooLarge, RemoteProtocolError, StatusCode, Violation
from .framing import Frame, FrameDecoder
from .liveness import Liveness
from .negotiation import PROTOCOL_VERSION
from .output import State
from .reliability import Reliability

__all__ = ["SessionInput"]

_Envelope = wire_pb2.Envelope
_Handler = Callable[..., Optional["ev.Event"]]


def _split_payload(frame: Frame) -> Tuple[_Envelope, Frame]:
    """Parse an envelope, slicing a leading payload field out without a copy.

    Our senders write `payload` (field 1, tag 0x0A) first; other encoders may
    put it anywhere, which the plain parse below handles.
    """
    env = _Envelope()
    try:
        if len(frame) > 1 and frame[0] == 0x0A:
            length = 0
            shift = 0
            pos = 1
            while True:
                byte = frame[pos]
                length |= (byte & 0x7F) << shift
                pos += 1
                if byte < 0x80:
                    break
                shift += 7
                if shift > 35:
                    raise RemoteProtocolError("malformed envelope: bad payload length")
            end = pos + length
            if end > len(frame):
                raise RemoteProtocolError("malformed envelope: payload runs past the frame")
            env.ParseFromString(frame[end:])  # type: ignore[arg-type]  # upb takes views
            if env.HasField("payload"):  # a second payload field: the last wins
                return env, env.payload
            return env, frame[pos:end]
        env.ParseFromString(frame)  # type: ignore[arg-type]
        return env, env.payload
    except (DecodeError, IndexError) as exc:
        raise RemoteProtocolError(f"malformed envelope: {exc or 'truncated'}") from None


class SessionInput:
    """The receiving side of a Session (which inherits it): see the module."""

    state: State
    reliability: Reliability
    liveness: Optional[Liveness]
    last_received: Optional[float]
    _decoder: FrameDecoder
    _handshaking: bool
    _error: Optional[RemoteProtocolError]
    _open_handlers: Dict[str, _Handler]
    _handshake_handlers: Dict[str, _Handler]

    if TYPE_CHECKING:
        def send_close(self, code: int, message: str = "", end_session: bool = True,
                       violations: Sequence[Violation] = ()) -> None: ...

    def get_buffer(self) -> memoryview:
        """Where the driver should read the next bytes into.

        Raises the RemoteProtocolError found after the frames last returned
        (their events were delivered first).
        """
        self._raise_deferred()
        try:
            return self._decoder.get_buffer()
        except RemoteProtocolError as exc:
            self._fail(exc)
            raise

    def buffer_updated(self, nbytes: int, now: float) -> List[ev.Event]:
        """Account for `nbytes` read into get_buffer(); return the events.

        Raises RemoteProtocolError (FrameTooLarge among them) when the peer
        broke the protocol; a Close saying why is then queued and the
        session is CLOSED.
        """
        self._raise_deferred()
        if self._handshaking:
            return self._handshake_frames(nbytes, now)
        try:
            frames = self._decoder.buffer_updated(nbytes)
        except RemoteProtocolError as exc:
            self._fail(exc)
            raise
        return self._receive_frames(frames, now)

    def receive_data(self, data: bytes, now: float) -> List[ev.Event]:
        """Like buffer_updated, for bytes the caller already holds (copied
        in through get_buffer, read-buffer-sized pieces at a time)."""
        self._raise_deferred()
        try:
            self._decoder.check()
        except RemoteProtocolError as exc:
            self._fail(exc)
            raise
        events: List[ev.Event] = []
        view = memoryview(data)
        offset = 0
        while offset < len(view):
            try:
                space = self.get_buffer()
                n = min(len(space), len(view) - offset)
                space[:n] = view[offset:offset + n]
                del space
                offset += n
                events.extend(self.buffer_updated(n, now))
            except RemoteProtocolError as exc:
                if not events:
                    raise
                # Deliver what came before; the next call raises.
                if self._error is None:
                    self._error = exc
                break
        return events

    def _handshake_frames(self, nbytes: int, now: float) -> List[ev.Event]:
        """buffer_updated before OPEN: one frame at a time, each held to the
        handshake's frame limit, until one opens the session (Hello,
        Welcome); the rest of the read is then held to max_frame_size (a
        resumed session's resent frames may follow its Welcome at once)."""
        decoder = self._decoder
        events: List[ev.Event] = []
        try:
            while self._handshaking:
                try:
                    frame = decoder.next_frame(nbytes)
                except FrameTooLarge as exc:
                    raise FrameTooLarge(exc.size, exc.limit, before_handshake=True) from None
                nbytes = 0
                if frame is None:
                    return events
                events.extend(self._receive_frames([frame], now))
                if self._error is not None:
                    return events
            events.extend(self._receive_frames(decoder.buffer_updated(0), now))
        except RemoteProtocolError as exc:
            if not events:
                self._fail(exc)
                raise
            self._error = exc  # deliver what came before; the next call raises
        return events

    def _raise_deferred(self) -> None:
        error = self._error
        if error is not None:
            self._fail(error)
            raise error

    def _receive_frames(self, frames: List[Frame], now: float) -> List[ev.Event]:
        events: List[ev.Event] = []
        if not frames:
            return events
        self.last_received = now
        if self.liveness is not None:
            self.liveness.received(now)
        rel = self.reliability
        for frame in frames:
            state = self.state
            if state is State.OPEN:
                handlers = self._open_handlers
            elif state is State.CLOSED:
                break
            else:
                handlers = self._handshake_handlers
            try:
                plen = frame[1] if len(frame) > 2 and frame[0] == 0x0A else 0x80
                if plen < 0x80 and plen + 2 <= len(frame):
                    # _split_payload's common case, inlined: a payload
                    # shorter than 128 bytes, first.
                    env = _Envelope()
                    env.ParseFromString(frame[plen + 2:])  # type: ignore[arg-type]
                    payload = env.payload if env.HasField("payload") else frame[2:plen + 2]
                else:
                    env, payload = _split_payload(frame)
                ack = env.ack
                if ack > rel.peer_acked:
                    if ack >= rel.next_seq:
                        rel.on_ack(ack)  # raises: an ack for frames never sent
                    rel.peer_acked = ack  # Reliability.on_ack(), inlined
                    unacked = rel.unacked
                    while unacked and unacked[0][0] <= ack:
                        rel.unacked_bytes -= unacked.popleft()[2]
                seq = env.seq
                if seq:
                    if seq == rel.received + 1:  # Reliability.on_sequenced's common case
                        rel.received = seq
                        if rel.ack_owed_since is None:
                            rel.ack_owed_since = now
                    elif not rel.on_sequenced(seq, now):
                        continue  # a copy of a frame we already have (resent)
                if env.ack_now:
                    rel.ack_wanted_now()
                kind = env.WhichOneof("kind")
                handler = handlers.get(kind)  # type: ignore[arg-type]
                if handler is None:
                    raise RemoteProtocolError(
                        f"unexpected {kind or 'empty'} frame: not supported by "
                        f"protocol version {PROTOCOL_VERSION}")
                event = handler(self, env, payload)
            except (RemoteProtocolError, DecodeError) as exc:
                error = exc if isinstance(exc, RemoteProtocolError) else RemoteProtocolError(
                    f"malformed envelope: {exc or 'truncated'}")
                if events:
                    # Deliver what came before the bad frame; the next call
                    # raises. Nothing after it is looked at.
                    self._error = error
                    return events
                self._fail(error)
                raise error from None
            if event is not None:
                events.append(event)
        return events

    def _fail(self, exc: RemoteProtocolError) -> None:
        # Tell the peer why before hanging up: a refusal with a status of its
        # own (VersionMismatch) in its own words; anything else is a protocol
        # error, maybe a bug it can fix.
        message = str(exc) if exc.status is not StatusCode.INTERNAL else f"protocol error: {exc}"
        self.send_close(exc.status, message)
