"""FrameDecoder: any byte stream, split anywhere, decodes to the frames sent.

Pure unit tests: no sockets, no greenlets, no clocks.
"""
from __future__ import annotations

import itertools
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onedrive_rpc.core import framing
from onedrive_rpc.core.framing import (ABSOLUTE_MAX_FRAME_SIZE, DEFAULT_MAX_FRAME_SIZE, HEADER_SIZE,
                                       LARGE_FRAME, READ_BUFFER_SIZE, FrameDecoder, frame_header)
from onedrive_rpc.errors import FrameTooLarge, RemoteProtocolError

KIB = 1024
# Past this many reads, a test feeds the rest in big pieces so that a stream
# of megabytes read one byte at a time does not take minutes.
MAX_SHORT_READS = 3000

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ------------------------------------------------------------------ helpers

def make_bodies(sizes, seed):
    """Bodies of the given sizes with content that differs per frame and per byte."""
    rng = random.Random(seed)
    return [rng.randbytes(size) for size in sizes]


def encode(bodies):
    return b"".join(frame_header(len(body)) + body for body in bodies)


def split(stream, chunk_sizes):
    """Cut `stream` into pieces whose sizes cycle through `chunk_sizes`."""
    pieces = []
    offset = 0
    sizes = itertools.cycle(chunk_sizes)
    while offset < len(stream):
        size = next(sizes) if len(pieces) < MAX_SHORT_READS else 256 * KIB
        pieces.append(stream[offset:offset + size])
        offset += size
    return pieces


def memory_bound(largest):
    return max(READ_BUFFER_SIZE, largest + HEADER_SIZE)


def decode_with_feed(decoder, pieces, largest):
    """Feed pieces from a bytearray the "driver" reuses (scribbles on) after
    each call; check the memory bound after each call."""
    frames = []
    for piece in pieces:
        scratch = bytearray(piece)
        frames.extend(decoder.feed(scratch))
        scratch[:] = b"\xee" * len(scratch)
        assert len(decoder._buf) <= memory_bound(largest)
        assert decoder.buffered <= memory_bound(largest)
    return frames


def decode_with_buffer(decoder, stream, read_sizes, largest):
    """recv_into-style: write at most len(get_buffer()) bytes per step, each
    step a short read of a hypothesis-chosen size. The unused part of the
    buffer is scribbled on, as the buffer is the driver's to write."""
    frames = []
    offset = 0
    sizes = itertools.cycle(read_sizes)
    steps = 0
    while offset < len(stream):
        space = decoder.get_buffer()
        assert len(space) > 0
        want = next(sizes) if steps < MAX_SHORT_READS else len(space)
        n = min(len(space), want, len(stream) - offset)
        space[:n] = stream[offset:offset + n]
        space[n:] = b"\xee" * (len(space) - n)
        offset += n
        steps += 1
        frames.extend(decoder.buffer_updated(n))
        assert len(decoder._buf) <= memory_bound(largest)
        assert decoder.buffered <= memory_bound(largest)
    return frames


def assert_frames(frames, bodies):
    assert [len(f) for f in frames] == [len(b) for b in bodies]
    for i, (frame, body) in enumerate(zip(frames, bodies)):
        assert isinstance(frame, (bytes, memoryview))
        assert bytes(frame) == body, f"frame {i} ({len(body)} bytes) corrupted"


# -------------------------------------------------------------- strategies

BOUNDARY_SIZES = [
    0, 1, 2, 3, 4, 5,
    LARGE_FRAME - 5, LARGE_FRAME - 4, LARGE_FRAME - 1, LARGE_FRAME, LARGE_FRAME + 1,
    READ_BUFFER_SIZE - 8, READ_BUFFER_SIZE - 4, READ_BUFFER_SIZE - 3, READ_BUFFER_SIZE - 1,
    READ_BUFFER_SIZE, READ_BUFFER_SIZE + 1, 2 * READ_BUFFER_SIZE, 200 * KIB,
]

frame_sizes = st.one_of(
    st.integers(0, 64),
    st.integers(0, 4 * KIB),
    st.sampled_from(BOUNDARY_SIZES),
    st.integers(LARGE_FRAME - 64, LARGE_FRAME + 64),
    st.integers(LARGE_FRAME, 200 * KIB),
)
frame_size_lists = st.lists(frame_sizes, min_size=0, max_size=8)
chunk_sizes = st.lists(
    st.one_of(st.integers(1, 8), st.integers(1, 5000), st.integers(1, 256 * KIB)),
    min_size=1, max_size=12)
seeds = st.integers(0, 2**32 - 1)


# ------------------------------------------------------- property tests

@SETTINGS
@given(sizes=frame_size_lists, chunks=chunk_sizes, seed=seeds)
def test_feed_returns_the_frames_sent_for_any_split(sizes, chunks, seed):
    bodies = make_bodies(sizes, seed)
    stream = encode(bodies)
    decoder = FrameDecoder()
    largest = max(sizes, default=0)
    frames = decode_with_feed(decoder, split(stream, chunks), largest)
    # Checked only now, after all later data went through the decoder: a
    # frame handed out early must not be overwritten by later reads.
    assert_frames(frames, bodies)
    assert decoder.buffered == 0


@SETTINGS
@given(sizes=frame_size_lists, reads=chunk_sizes, seed=seeds)
def test_get_buffer_returns_the_frames_sent_for_any_short_reads(sizes, reads, seed):
    bodies = make_bodies(sizes, seed)
    stream = encode(bodies)
    decoder = FrameDecoder()
    frames = decode_with_buffer(decoder, stream, reads, max(sizes, default=0))
    assert_frames(frames, bodies)
    assert decoder.buffered == 0


@SETTINGS
@given(sizes=frame_size_lists, chunks=chunk_sizes, seed=seeds,
       how=st.lists(st.booleans(), min_size=1, max_size=8))
def test_feed_and_get_buffer_can_be_mixed(sizes, chunks, seed, how):
    bodies = make_bodies(sizes, seed)
    stream = encode(bodies)
    decoder = FrameDecoder()
    largest = max(sizes, default=0)
    frames = []
    for piece, use_get_buffer in zip(split(stream, chunks), itertools.cycle(how)):
        if use_get_buffer:
            frames.extend(decode_with_buffer(decoder, piece, [len(piece)], largest))
        else:
            frames.extend(decode_with_feed(decoder, [piece], largest))
    assert_frames(frames, bodies)


@SETTINGS
@given(sizes=st.lists(st.integers(LARGE_FRAME, 200 * KIB), min_size=2, max_size=5),
       small=st.lists(st.integers(0, 100), min_size=1, max_size=5),
       chunks=chunk_sizes, seed=seeds)
def test_large_frames_stay_intact_while_more_is_fed(sizes, small, chunks, seed):
    """Each large frame is checked right after every later read."""
    sizes = [s for pair in zip(sizes, itertools.cycle(small)) for s in pair]
    bodies = make_bodies(sizes, seed)
    decoder = FrameDecoder()
    held = []
    for piece in split(encode(bodies), chunks):
        held.extend(decoder.feed(piece))
        for frame, body in zip(held, bodies):
            assert bytes(frame) == body
    assert_frames(held, bodies)


# ------------------------------------------------------- exhaustive splits

SMALL_BODIES = [b"alpha", b"", b"the third frame, a bit longer"]
SMALL_STREAM = encode(SMALL_BODIES)


@pytest.mark.parametrize("cut", range(len(SMALL_STREAM) + 1))
def test_every_two_chunk_split_decodes_identically(cut):
    decoder = FrameDecoder()
    frames = decoder.feed(SMALL_STREAM[:cut]) + decoder.feed(SMALL_STREAM[cut:])
    assert frames == SMALL_BODIES
    assert all(type(f) is bytes for f in frames)
    assert decoder.buffered == 0


def test_every_two_chunk_split_decodes_identically_through_get_buffer():
    for cut in range(len(SMALL_STREAM) + 1):
        decoder = FrameDecoder()
        frames = []
        for piece in (SMALL_STREAM[:cut], SMALL_STREAM[cut:]):
            space = decoder.get_buffer()
            space[:len(piece)] = piece
            frames.extend(decoder.buffer_updated(len(piece)))
        assert frames == SMALL_BODIES, cut


def test_every_three_chunk_split_decodes_identically():
    n = len(SMALL_STREAM)
    for i in range(n + 1):
        for j in range(i, n + 1):
            decoder = FrameDecoder()
            frames = []
            for piece in (SMALL_STREAM[:i], SMALL_STREAM[i:j], SMALL_STREAM[j:]):
                frames.extend(decoder.feed(piece))
            assert frames == SMALL_BODIES, (i, j)


def test_frames_are_returned_as_soon_as_complete():
    decoder = FrameDecoder()
    stream = SMALL_STREAM
    first_end = HEADER_SIZE + len(SMALL_BODIES[0])
    assert decoder.feed(stream[:first_end - 1]) == []
    assert decoder.buffered == first_end - 1
    # Completing frame 1 also completes the empty frame 2 once its header is in.
    assert decoder.feed(stream[first_end - 1:first_end]) == [b"alpha"]
    assert decoder.buffered == 0
    assert decoder.feed(stream[first_end:first_end + HEADER_SIZE]) == [b""]
    assert decoder.feed(stream[first_end + HEADER_SIZE:]) == [SMALL_BODIES[2]]


def test_large_frame_is_a_view_small_frame_is_bytes():
    big = bytes(range(256)) * (LARGE_FRAME // 256)
    assert len(big) == LARGE_FRAME
    decoder = FrameDecoder()
    frames = decoder.feed(encode([b"x" * (LARGE_FRAME - 1), big]))
    assert type(frames[0]) is bytes
    assert isinstance(frames[1], memoryview)
    assert frames[1] == big


def test_frame_bigger_than_read_buffer_grows_then_releases_the_buffer():
    body = random.Random(1).randbytes(3 * READ_BUFFER_SIZE + 7)
    decoder = FrameDecoder()
    stream = encode([body, b"after"])
    frames = []
    offset = 0
    while offset < len(stream):
        space = decoder.get_buffer()
        n = min(len(space), 1000, len(stream) - offset)
        space[:n] = stream[offset:offset + n]
        offset += n
        frames.extend(decoder.buffer_updated(n))
        assert len(decoder._buf) <= len(body) + HEADER_SIZE
    assert [bytes(f) for f in frames] == [body, b"after"]
    # The big buffer went out with the frame; the decoder is back to normal size.
    assert len(decoder._buf) == READ_BUFFER_SIZE
    assert decoder.buffered == 0


def test_get_buffer_room_grows_with_what_arrived_then_takes_the_whole_frame():
    """Once a header announces N bytes, the buffer grows as they arrive (not
    all at once: see test_frame_memory.py), and the last step has room for
    the whole rest of the frame."""
    body = b"z" * (150 * KIB)
    stream = encode([body])
    decoder = FrameDecoder()
    offset = 0
    while True:
        space = decoder.get_buffer()
        assert len(space) > 0
        if offset and len(space) >= len(stream) - offset:
            break
        n = min(len(space), len(stream) - offset)
        space[:n] = stream[offset:offset + n]
        offset += n
        assert decoder.buffer_updated(n) == []
    rest = len(stream) - offset
    space[:rest] = stream[offset:]
    [frame] = decoder.buffer_updated(rest)
    assert frame == body


# --------------------------------------------------------- memory bound

def test_buffer_stays_bounded_after_many_frames():
    rng = random.Random(7)
    sizes = [rng.choice([0, 1, 10, 100, 1000, 20 * KIB, LARGE_FRAME, 40 * KIB, 70 * KIB])
             for _ in range(400)]
    bodies = make_bodies(sizes, 3)
    decoder = FrameDecoder()
    stream = encode(bodies)
    frames = decode_with_feed(decoder, split(stream, [777, 1, 5000, 3, 65536]), max(sizes))
    assert_frames(frames, bodies)
    assert decoder.buffered == 0
    assert len(decoder._buf) <= memory_bound(max(sizes))


def test_many_small_frames_never_grow_the_buffer():
    bodies = [bytes([i % 256]) * (i % 300) for i in range(3000)]
    decoder = FrameDecoder()
    frames = []
    for piece in split(encode(bodies), [4093]):
        frames.extend(decoder.feed(piece))
        assert len(decoder._buf) == READ_BUFFER_SIZE
        assert decoder.buffered < 300 + HEADER_SIZE
    assert frames == bodies


# -------------------------------------------------------- oversized frames

def test_oversized_length_raises_as_soon_as_the_header_is_in():
    decoder = FrameDecoder(max_frame_size=1000)
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(frame_header(1001))  # no body at all
    assert info.value.size == 1001
    assert info.value.limit == 1000
    assert isinstance(info.value, RemoteProtocolError)
    assert "1001" in str(info.value) and "1000" in str(info.value)


def test_oversized_length_split_header_one_byte_at_a_time():
    decoder = FrameDecoder(max_frame_size=1000)
    header = frame_header(70000)
    for i in range(HEADER_SIZE - 1):
        assert decoder.feed(header[i:i + 1]) == []
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(header[HEADER_SIZE - 1:])
    assert (info.value.size, info.value.limit) == (70000, 1000)


def test_oversized_length_through_get_buffer_one_byte_at_a_time():
    decoder = FrameDecoder(max_frame_size=10)
    header = frame_header(2**32 - 1)
    for i in range(HEADER_SIZE - 1):
        decoder.get_buffer()[:1] = header[i:i + 1]
        assert decoder.buffer_updated(1) == []
    decoder.get_buffer()[:1] = header[-1:]
    with pytest.raises(FrameTooLarge) as info:
        decoder.buffer_updated(1)
    assert (info.value.size, info.value.limit) == (2**32 - 1, 10)
    # Nothing was allocated for the announced size.
    assert len(decoder._buf) == READ_BUFFER_SIZE


@pytest.mark.parametrize("limit", [1, 5, 1000, LARGE_FRAME, READ_BUFFER_SIZE + 3])
def test_exactly_max_frame_size_is_accepted(limit):
    decoder = FrameDecoder(max_frame_size=limit)
    body = bytes(i % 251 for i in range(limit))
    [frame] = decoder.feed(encode([body]))
    assert frame == body
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(frame_header(limit + 1))
    assert (info.value.size, info.value.limit) == (limit + 1, limit)


def test_oversized_frame_error_is_sticky():
    decoder = FrameDecoder(max_frame_size=10)
    with pytest.raises(FrameTooLarge):
        decoder.feed(frame_header(11) + b"x" * 11)
    with pytest.raises(FrameTooLarge):
        decoder.feed(encode([b"ok"]))
    with pytest.raises(FrameTooLarge):
        decoder.get_buffer()
    with pytest.raises(FrameTooLarge):
        decoder.check()


def test_frames_before_a_bad_prefix_come_first_then_the_error():
    decoder = FrameDecoder(max_frame_size=10)
    good = encode([b"one", b"two"])
    assert decoder.feed(good + frame_header(11) + b"rest") == [b"one", b"two"]
    with pytest.raises(FrameTooLarge) as info:
        decoder.check()
    assert info.value.size == 11
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"")


def test_frames_before_a_bad_prefix_come_first_then_the_error_via_get_buffer():
    decoder = FrameDecoder(max_frame_size=10)
    data = encode([b"one"]) + frame_header(1000)
    space = decoder.get_buffer()
    space[:len(data)] = data
    assert decoder.buffer_updated(len(data)) == [b"one"]
    with pytest.raises(FrameTooLarge):
        decoder.get_buffer()


def test_frames_from_earlier_pieces_are_returned_when_a_later_piece_is_bad():
    """feed() copies in buffer-sized steps; a bad prefix found in a later step
    must not lose frames found in an earlier one."""
    decoder = FrameDecoder(max_frame_size=READ_BUFFER_SIZE)
    bodies = [b"a" * 40000, b"b" * 40000]
    data = encode(bodies) + frame_header(READ_BUFFER_SIZE + 1)
    assert [bytes(f) for f in decoder.feed(data)] == bodies
    with pytest.raises(FrameTooLarge):
        decoder.check()


# ------------------------------------------------------ configuration

@pytest.mark.parametrize("bad", [0, -1, -(2**40), ABSOLUTE_MAX_FRAME_SIZE + 1, 2**64])
def test_max_frame_size_out_of_range_is_rejected(bad):
    with pytest.raises(ValueError):
        FrameDecoder(max_frame_size=bad)


@pytest.mark.parametrize("good", [1, 4, DEFAULT_MAX_FRAME_SIZE, ABSOLUTE_MAX_FRAME_SIZE])
def test_max_frame_size_in_range_is_accepted(good):
    decoder = FrameDecoder(max_frame_size=good)
    assert decoder.max_frame_size == good
    assert decoder.buffered == 0


def test_constants():
    assert HEADER_SIZE == 4
    assert ABSOLUTE_MAX_FRAME_SIZE == 2**32 - 1
    assert DEFAULT_MAX_FRAME_SIZE == 16 * 1024 * 1024
    assert FrameDecoder().max_frame_size == DEFAULT_MAX_FRAME_SIZE
    assert LARGE_FRAME == 32 * KIB and READ_BUFFER_SIZE == 64 * KIB
    assert set(framing.__all__) >= {"HEADER_SIZE", "FrameDecoder", "frame_header"}


@pytest.mark.parametrize("length, header", [
    (0, b"\x00\x00\x00\x00"),
    (1, b"\x00\x00\x00\x01"),
    (0x01020304, b"\x01\x02\x03\x04"),
    (2**32 - 1, b"\xff\xff\xff\xff"),
])
def test_frame_header_is_big_endian_u32(length, header):
    assert frame_header(length) == header


def test_frame_header_rejects_lengths_the_prefix_cannot_say():
    with pytest.raises(struct.error):
        frame_header(2**32)
    with pytest.raises(struct.error):
        frame_header(-1)


def test_large_read_buffers_are_reused_only_once_their_frames_are_gone():
    decoder = FrameDecoder()
    body = b"L" * (1024 * 1024)
    stream = frame_header(len(body)) + body

    def one_frame():
        [frame] = decoder.feed(stream)
        assert bytes(frame) == body
        return frame

    held = one_frame()
    first_buffer = held.obj
    kept = one_frame()  # `held` is alive: its buffer must not be written into
    assert kept.obj is not first_buffer and bytes(held) == body
    second_buffer = kept.obj
    del held, kept
    reused = one_frame()  # nothing uses the last buffer any more: take it again
    assert reused.obj is second_buffer
