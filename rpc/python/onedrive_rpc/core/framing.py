"""Length-prefixed frames: bytes in, whole frames out; no I/O.

A frame is a 4-byte big-endian length followed by that many bytes. The
decoder copes with partial reads and many frames per read, and lets a driver
read straight into its buffer (`get_buffer` / `buffer_updated`, the shape of
asyncio's BufferedProtocol) so large frames are never copied once read.

Memory follows the bytes received, not the bytes announced: a length prefix
alone never makes the decoder allocate more than READ_BUFFER_SIZE, and the
buffer of a large frame grows with its bytes as they arrive (GROWTH; a spare
buffer already held that fits is used at once).
"""
from __future__ import annotations

import struct
from typing import List, Optional, Sequence, Union

from .budget import ByteBudget
from .errors import FrameTooLarge, ReadBudgetExceeded

__all__ = [
    "varint",
    "HEADER_SIZE",
    "DEFAULT_MAX_FRAME_SIZE",
    "FrameDecoder",
    "frame_header",
    "Pieces",
    "Payload",
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

# The largest frame a side accepts before its handshake is done (or its own
# limit, if smaller): Hello and Welcome fit with room to spare (Hello
# metadata is limited to a few KiB), and a peer that has not even said who
# it is cannot make us buffer more.
HANDSHAKE_MAX_FRAME_SIZE = 64 * 1024

# Size of the read buffer for ordinary traffic: big enough for many small
# frames per read, small enough to keep per-connection memory modest.
READ_BUFFER_SIZE = 64 * 1024

# Frames at least this large are read into a buffer of their own and handed
# out as a memoryview of it (no copy); smaller ones are copied out as bytes,
# which is cheaper than a fresh buffer per frame.
LARGE_FRAME = 32 * 1024

# Largest buffer kept for reuse after a large frame: bounds what an idle
# connection holds on to.
MAX_SPARE_BUFFER = 4 * 1024 * 1024

# The buffer of a large frame grows only once the one before is full, to at
# most GROWTH times the bytes of the frame received plus READ_BUFFER_SIZE:
# a prefix announcing 16 MiB makes us hold what its sender sent, not what it
# said. Each step copies what arrived: with 16, a frame of up to 1 MiB read
# after a full small buffer needs no step beyond the one that always was
# (READ_BUFFER_SIZE of it), a 16 MiB one a single 1 MiB copy more; a spare
# that fits is taken at once (sequential MiB-sized calls, W3: no copy more).
GROWTH = 16

Frame = Union[bytes, memoryview]


class Pieces:
    """A payload kept as the buffers it was made of, so it goes out with
    one vectored send instead of being copied into one buffer first (a
    message whose large bytes field was left in a buffer of its own:
    onedrive_rpc/serialize.py). len() counts its bytes; bytes() joins them
    for code that needs them in one piece."""

    __slots__ = ("parts", "size")

    def __init__(self, parts: Sequence[bytes]) -> None:
        self.parts = tuple(parts)
        self.size = sum(map(len, self.parts))

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)

    def __repr__(self) -> str:
        return f"<Pieces: {len(self.parts)} buffers, {self.size} bytes>"


#: What a message travels as, on its way out.
Payload = Union[bytes, memoryview, Pieces]


def _exported(buf: bytearray) -> bool:
    """True while some memoryview of `buf` is alive (a resize would fail)."""
    try:
        buf.append(0)
    except BufferError:
        return True
    buf.pop()
    return False


def frame_header(length: int) -> bytes:
    """The 4-byte prefix announcing a frame body of `length` bytes."""
    return _HEADER.pack(length)


_ONE_BYTE_VARINTS = [bytes((i,)) for i in range(0x80)]


def varint(value: int) -> bytes:
    """Protobuf's base-128 encoding of a non-negative int (for the few
    envelope fields written by hand, where building a message costs more)."""
    if value < 0x80:
        return _ONE_BYTE_VARINTS[value]
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    if value < 0x200000:
        return bytes(((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, value >> 14))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class FrameDecoder:
    """Splits a byte stream into frames.

    Memory stays bounded by the larger of READ_BUFFER_SIZE and the buffer of
    the frame being assembled: at most GROWTH times the bytes of it received
    plus READ_BUFFER_SIZE, and never more than the frame, itself bounded by
    `max_frame_size`; plus the spares (a small one, and one large one of at
    most MAX_SPARE_BUFFER).

    With a `budget` shared by many decoders (a server's), the large buffers
    (beyond READ_BUFFER_SIZE) of all of them are held to it: a large spare
    is kept only while the budget is less than half used, and a buffer
    that would take it past its limit raises ReadBudgetExceeded.
    """

    __slots__ = ("max_frame_size", "_buf", "_view", "_start", "_end", "_need", "_error",
                 "_small_spare", "_large_spare", "_budget", "_held")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
                 budget: Optional[ByteBudget] = None) -> None:
        if not 0 < max_frame_size <= ABSOLUTE_MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be in 1..{ABSOLUTE_MAX_FRAME_SIZE}")
        self.max_frame_size = max_frame_size
        self._buf = bytearray(READ_BUFFER_SIZE)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        # Buffers kept for reuse: fresh MiB-sized memory costs page faults
        # on every large frame. A spare is reused only once no frame handed
        # out from it is alive.
        self._small_spare: Optional[bytearray] = None
        self._large_spare: Optional[bytearray] = None
        # Bytes (header included) the frame being assembled needs; 0 when
        # its header has not arrived yet.
        self._need = 0
        # A protocol error found after good frames in the same read: those
        # frames are returned first, the error is raised by the next call.
        self._error: Optional[FrameTooLarge] = None
        self._budget = budget
        # Bytes of large buffers (current and spare) counted in the budget.
        self._held = 0

    def _switch_buffer(self, size: int, keep_from: int) -> None:
        """Move to a buffer of at least `size` bytes, carrying the bytes from
        `keep_from` to the end of the current one over."""
        old_buf, old_view = self._buf, self._view
        new = self._take_spare(size)
        pending = self._end - keep_from
        new[:pending] = old_view[keep_from:self._end]
        self._buf, self._view = new, memoryview(new)
        self._start, self._end = 0, pending
        old_view.release()  # frames sliced from it keep their own reference
        if len(old_buf) == READ_BUFFER_SIZE:
            self._small_spare = old_buf
        elif len(old_buf) <= MAX_SPARE_BUFFER:
            budget = self._budget
            self._account()
            if budget is None or budget.used + len(old_buf) <= budget.limit // 2:
                self._large_spare = old_buf
        if self._budget is not None:
            self._account()

    def _account(self) -> None:
        """Bring the budget up to date with the large buffers held."""
        size = len(self._buf)
        held = size if size > READ_BUFFER_SIZE else 0
        if self._large_spare is not None:
            held += len(self._large_spare)
        budget = self._budget
        if budget is not None:
            budget.used += held - self._held
        self._held = held

    def _take_spare(self, size: int) -> bytearray:
        if size <= READ_BUFFER_SIZE:
            spare, self._small_spare = self._small_spare, None
            if spare is not None and not _exported(spare):
                return spare
            return bytearray(READ_BUFFER_SIZE)
        spare = self._large_spare
        if spare is not None and len(spare) >= size and not _exported(spare):
            self._large_spare = None
            return spare
        budget = self._budget
        if budget is not None and budget.used + size > budget.limit:
            if spare is not None:  # ours first
                self._large_spare = None
                self._account()
            if budget.used + size > budget.limit:
                raise ReadBudgetExceeded(size, budget.used, budget.limit)
        return bytearray(size)

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
        size = len(self._buf)
        need = self._need
        if start + max(need, HEADER_SIZE + 1) > size or end == size:
            if need > size:
                # A large frame: it moves to a buffer of its own, which
                # grows as its bytes arrive (see GROWTH).
                spare = self._large_spare
                if spare is None or len(spare) < need or _exported(spare):
                    if end < size:
                        return self._view[end:]  # fill this one first
                    need = min(need, (end - start) * GROWTH + READ_BUFFER_SIZE)
            size_wanted = max(READ_BUFFER_SIZE, need)
            if size_wanted > size:
                self._switch_buffer(size_wanted, start)
            else:
                pending = end - start
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
        view = memoryview(data)
        offset = 0
        while offset < len(view):
            space = self.get_buffer()
            n = min(len(space), len(view) - offset)
            space[:n] = view[offset:offset + n]
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

    def next_frame(self, nbytes: int = 0) -> Optional[Frame]:
        """Like buffer_updated, but return only the next whole frame (None:
        none yet), leaving the rest buffered: for a reader that may change
        `max_frame_size` after each frame (the handshake). Call it until it
        returns None before reading more."""
        self.check()
        self._end += nbytes
        try:
            return self._next_frame()
        except FrameTooLarge as exc:
            self._error = exc
            raise

    def discard(self) -> None:
        """The stream is gone: drop what is buffered and every buffer but a
        small one, so a session kept for a resume holds no more."""
        self._small_spare = self._large_spare = None
        self._start = self._end = self._need = 0
        if len(self._buf) != READ_BUFFER_SIZE:
            self._view.release()
            self._buf = bytearray(READ_BUFFER_SIZE)
            self._view = memoryview(self._buf)
        self._account()

    def close(self) -> None:
        """The session ended: hold no buffer at all (frames handed out keep
        their own)."""
        self.discard()
        self._view.release()
        self._buf = bytearray()
        self._view = memoryview(self._buf)

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
        self._switch_buffer(max(READ_BUFFER_SIZE, end - stop), stop)
        return frame
