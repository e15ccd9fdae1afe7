"""Length-prefixed frames: bytes in, whole frames out; no I/O.

A frame is a 4-byte big-endian length followed by that many bytes. The
decoder copes with partial reads and many frames per read, and lets a driver
read straight into its buffer (`get_buffer` / `buffer_updated`, the shape of
asyncio's BufferedProtocol) so large frames are never copied.
"""
from __future__ import annotations

import struct
from typing import List, Optional, Union

from ..errors import FrameTooLarge

__all__ = [
    "HEADER_SIZE",
    "DEFAULT_MAX_FRAME_SIZE",
    "FrameDecoder",
    "frame_header",
]

_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size

# Largest frame a peer may make us buffer. A bigger length prefix is a
# protocol error, so a hostile or broken peer cannot make us allocate
# gigabytes by sending four bytes.
DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024

# The wire cannot carry more than the 4-byte prefix can say.
ABSOLUTE_MAX_FRAME_SIZE = 0xFFFFFFFF

# The smallest frame limit a side may announce: handshake and close frames
# must always fit.
MIN_FRAME_LIMIT = 1024

# Size of the read buffer for ordinary traffic: big enough for many small
# frames per read, small enough to keep per-connection memory modest.
READ_BUFFER_SIZE = 64 * 1024

# Frames at least this large are read into a buffer of their own and handed
# out as a memoryview of it (no copy); smaller ones are copied out as bytes,
# which is cheaper than a fresh buffer per frame.
LARGE_FRAME = 32 * 1024

Frame = Union[bytes, memoryview]


def frame_header(length: int) -> bytes:
    """The 4-byte prefix announcing a frame body of `length` bytes."""
    return _HEADER.pack(length)


class FrameDecoder:
    """Splits a byte stream into frames.

    Memory stays bounded by the larger of READ_BUFFER_SIZE and the frame
    being assembled, which itself is bounded by `max_frame_size`.
    """

    __slots__ = ("max_frame_size", "_buf", "_view", "_start", "_end", "_need", "_error")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if not 0 < max_frame_size <= ABSOLUTE_MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be in 1..{ABSOLUTE_MAX_FRAME_SIZE}")
        self.max_frame_size = max_frame_size
        self._new_buffer(READ_BUFFER_SIZE)
        # Bytes (header included) the frame being assembled needs; 0 when
        # its header has not arrived yet.
        self._need = 0
        # A protocol error found after good frames in the same read: those
        # frames are returned first, the error is raised by the next call.
        self._error: Optional[FrameTooLarge] = None

    def _new_buffer(self, size: int) -> None:
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0

    @property
    def buffered(self) -> int:
        """Bytes received that are not yet part of a returned frame."""
        return self._end - self._start

    def check(self) -> None:
        """Raise the protocol error found after the frames last returned, if any."""
        if self._error is not None:
            raise self._error

    def get_buffer(self) -> memoryview:
        """Writable space for the next read; call buffer_updated after."""
        self.check()
        start, end = self._start, self._end
        room_needed = max(self._need, HEADER_SIZE + 1)
        if start + room_needed > len(self._buf) or end == len(self._buf):
            pending = end - start
            size = max(READ_BUFFER_SIZE, self._need)
            if size > len(self._buf):
                old = self._view
                self._new_buffer(size)
                self._buf[:pending] = old[start:end]
            else:
                self._buf[:pending] = self._buf[start:end]
                self._start = 0
            self._end = pending
        return self._view[self._end:]

    def buffer_updated(self, nbytes: int) -> List[Frame]:
        """Account for `nbytes` written into get_buffer(); return whole frames.

        Raises FrameTooLarge when a length prefix exceeds max_frame_size; the
        stream cannot be resynchronised after that. Frames that came before
        the bad prefix are returned first; `check()` (and any later call)
        then raises.
        """
        self.check()
        self._end += nbytes
        frames: List[Frame] = []
        while True:
            try:
                frame = self._next_frame()
            except FrameTooLarge as exc:
                self._error = exc
                if frames:
                    return frames
                raise
            if frame is None:
                return frames
            frames.append(frame)

    def feed(self, data: bytes) -> List[Frame]:
        """Copy `data` in and return the frames it completes."""
        self.check()
        frames: List[Frame] = []
        data = memoryview(data)
        offset = 0
        while offset < len(data):
            space = self.get_buffer()
            n = min(len(space), len(data) - offset)
            space[:n] = data[offset:offset + n]
            offset += n
            try:
                frames.extend(self.buffer_updated(n))
            except FrameTooLarge:
                if frames:
                    return frames
                raise
            if self._error is not None:
                break
        return frames

    def _next_frame(self) -> Optional[Frame]:
        start, end = self._start, self._end
        if end - start < HEADER_SIZE:
            return None
        length = _HEADER.unpack_from(self._buf, start)[0]
        if length > self.max_frame_size:
            raise FrameTooLarge(length, self.max_frame_size)
        stop = start + HEADER_SIZE + length
        if stop > end:
            self._need = HEADER_SIZE + length
            return None
        self._need = 0
        body_start = start + HEADER_SIZE
        if length < LARGE_FRAME:
            frame: Frame = bytes(self._view[body_start:stop])
            if stop == end:
                self._start = self._end = 0
            else:
                self._start = stop
            return frame
        # Hand the frame out as a view and leave this buffer to it: the
        # bytes after it move to a fresh buffer, so nothing overwrites it.
        frame = self._view[body_start:stop]
        old = self._view
        self._new_buffer(READ_BUFFER_SIZE)
        rest = end - stop
        if rest:
            if rest > READ_BUFFER_SIZE:
                self._new_buffer(rest)
            self._buf[:rest] = old[stop:end]
            self._end = rest
        return frame
