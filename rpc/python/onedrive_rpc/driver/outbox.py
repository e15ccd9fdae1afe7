"""Coalesced, never-blocking output of one connection.

Sends queue frames in the session; the outbox schedules one hub callback
per loop pass that writes everything queued with one non-blocking send.
Only what the kernel does not take at once goes to a writer greenlet, so
no sender ever blocks on a slow peer here (they block in `wait_for_room`,
against the limit, instead).

While the connection is suspended nothing is written: the session's
resend buffer keeps what matters, and the copies queued for the dead
stream are dropped.
"""
from __future__ import annotations

import time
from typing import Any, List, Optional

import gevent
from gevent import getcurrent
from gevent.event import Event

from ..errors import PeerLost, RpcError
from ..transport.base import ConnectionClosed, Stream
from .view import ConnectionView

__all__ = ["Outbox", "MID_BATCH_FLUSH", "WRITE_FAILURE_GRACE"]

_monotonic = time.monotonic

# Bytes of answers queued while serving one read's batch of requests that
# are sent before serving the rest (bench/reqresp.py W2: about 1.7x).
MID_BATCH_FLUSH = 2048

# After a write fails, how long the reader may look for the peer's Close
# frame (or EOF) to report the real reason before we give up on it.
WRITE_FAILURE_GRACE = 0.25

# Coalesced small frames are joined into one buffer up to this size; past it
# a vectored send avoids copying.
_JOIN_LIMIT = 64 * 1024


class Outbox:
    """What is queued for one connection's stream, and the writer of it."""

    def __init__(self, connection: ConnectionView, loop: Any) -> None:
        self._conn = connection
        self._loop = loop
        self._out: List[Any] = []
        #: Bytes taken from the session and not yet written.
        self.out_bytes = 0
        #: Bytes taken from the session to write, over every stream of it.
        self.bytes_out = 0
        #: A flush waits for the end of this loop pass (flush_soon).
        self.flush_scheduled = False
        self.writer: Optional[gevent.Greenlet] = None
        #: Set while nothing waits to be written.
        self.drained = Event()
        self.drained.set()
        #: False while the connection is suspended or closed: nothing is written.
        self.live = True
        # Senders waiting for acks to free the resend buffer.
        self._room = Event()
        self.room_waiters = 0

    def flush_soon(self) -> None:
        """Write what is queued at the end of this loop pass."""
        if not self.flush_scheduled and self.writer is None and self.live:
            self.flush_scheduled = True
            self.drained.clear()
            self._loop.run_callback(self.flush)

    def flush_batch(self) -> None:
        """flush_soon, or now if a batch's worth (MID_BATCH_FLUSH) is queued
        already: the peer works on it while we make more (a stream's items,
        a fan-out's deliveries)."""
        if self._conn.session.queued_bytes >= MID_BATCH_FLUSH and self.writer is None:
            self.flush()
        else:
            self.flush_soon()

    def flush_if_idle(self) -> None:
        """flush() now unless a flush is scheduled or a writer is busy
        (then what is queued goes with theirs): for a lone call whose
        caller waits, with nothing to coalesce it with."""
        if self.flush_scheduled or self.writer is not None:
            self.flush_soon()
        else:
            self.flush()

    def flush(self) -> None:
        """Write what is queued now, without blocking (safe in the hub)."""
        self.flush_scheduled = False
        conn = self._conn
        if conn.closed:
            return
        if conn.suspended:
            conn.session.data_to_send()  # nowhere to go; the resend buffer keeps it
            return
        self._take_output()
        if not self._out:  # written already (the reader flushed before reading)
            self.drained.set()
            return
        try:
            self._consume(conn.stream.send_nowait(self._sendable()))
        except ConnectionClosed as exc:
            self._write_failed(exc)
            return
        if self._out:
            self.writer = gevent.spawn(self._write_loop)
        else:
            self.drained.set()

    def restart(self) -> None:
        """Forget what was queued for the old stream (a resume or a loss);
        the session's resend buffer has what the peer still needs."""
        writer = self.writer
        if writer is not None and writer is not getcurrent():
            writer.kill(block=False)  # it wrote to the old stream
        self.writer = None
        self.flush_scheduled = False
        self._out = []
        self.out_bytes = 0
        self.drained.set()

    def wake_senders(self) -> None:
        """Senders waiting for room look again (a resume, or the end)."""
        self._room.set()

    def close(self) -> None:
        """The connection ended: nothing more is written; nobody waits."""
        self.live = False
        self.drained.set()
        self._room.set()

    def acks_arrived(self, unacked_bytes: int) -> None:
        """The reader saw acks: senders waiting for room may go on."""
        if unacked_bytes <= self._conn.limits.max_queued_bytes:
            self._room.set()

    def wait_for_room(self) -> bool:
        """Block a sender while too much is queued for a peer that is not
        reading, or sent and not yet acknowledged by it. True if the
        connection closed meanwhile: the sender must not go on."""
        conn = self._conn
        limit = conn.limits.max_queued_bytes
        session = conn.session
        if (self.out_bytes + session.queued_bytes <= limit
                and session.reliability.unacked_bytes <= limit):
            return False  # the common case
        if conn.suspended:
            self.flush()  # drops the unsendable copies; only the resend buffer counts
        while not conn.closed and getcurrent() is not conn.hub:
            session = conn.session
            if self.out_bytes + session.queued_bytes > limit:
                self.flush_soon()
                self.drained.wait()
            elif session.unacked_bytes > limit:
                self.room_waiters += 1
                self._room.clear()
                try:
                    self._room.wait()
                finally:
                    self.room_waiters -= 1
            else:
                return False
        return conn.closed

    def _write_loop(self) -> None:
        conn = self._conn
        stream = conn.stream
        try:
            while not conn.closed and stream is conn.stream:
                self._take_output()
                if not self._out:
                    break
                stream.wait_writable()
                if stream is not conn.stream:
                    break  # resumed on another stream meanwhile
                self._consume(stream.send_nowait(self._sendable()))
        except ConnectionClosed as exc:
            if stream is conn.stream:
                self._write_failed(exc)
        finally:
            if self.writer is getcurrent():
                self.writer = None
                self.drained.set()

    def _write_failed(self, exc: ConnectionClosed) -> None:
        # The peer may have said why it hung up (a Close frame) in what we
        # have not read yet: give the reader a moment to find it, then
        # treat the stream as lost.
        error = PeerLost(f"connection lost: {exc}")
        self._out.clear()
        self.out_bytes = 0
        self.drained.set()
        if not self._conn.closed:
            timer = self._loop.timer(WRITE_FAILURE_GRACE)
            timer.start(self._after_write_failure, timer, error, self._conn.stream)

    def _after_write_failure(self, timer: Any, error: RpcError, stream: Stream) -> None:
        timer.close()
        self._conn.stream_lost(error, stream)

    def _take_output(self) -> None:
        session = self._conn.session
        if session.queued_bytes:
            self.out_bytes += session.queued_bytes
            self.bytes_out += session.queued_bytes
            self._out.extend(session.data_to_send(_monotonic()))

    def _sendable(self) -> List[Any]:
        out = self._out
        if len(out) > 1 and self.out_bytes <= _JOIN_LIMIT:
            joined = b"".join(out)
            out[:] = [joined]
        return out

    def _consume(self, sent: int) -> None:
        self.out_bytes -= sent
        out = self._out
        if self.out_bytes == 0:
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
