"""FrameDecoder memory follows the bytes received, not the bytes announced
(issue 10: a 4-byte prefix announcing 16 MiB made the server allocate 16 MiB
at once), while a real large frame still arrives whole, as a view of the
buffer it was read into, and that buffer is reused for the next one.
"""
from __future__ import annotations

import random

import pytest

from onedrive_rpc.core import framing
from onedrive_rpc.core.budget import ByteBudget
from onedrive_rpc.core.errors import ReadBudgetExceeded, StatusCode
from onedrive_rpc.core.framing import (DEFAULT_MAX_FRAME_SIZE, GROWTH, HEADER_SIZE, READ_BUFFER_SIZE,
                                       FrameDecoder, frame_header)
from onedrive_rpc.testing.helpers import open_session_pair, wire

KIB = 1024
MIB = 1024 * KIB


def buffers_held(decoder):
    """Every buffer the decoder holds on to: its read buffer and spares."""
    return [b for b in (decoder._buf, decoder._small_spare, decoder._large_spare) if b is not None]


def bytes_held(decoder):
    return sum(len(b) for b in buffers_held(decoder))


def read(decoder, data, step, grow_check=False):
    """recv_into-style reads of at most `step` bytes; returns the frames and
    the buffer the last byte was read into. `grow_check`: the buffer is
    never more than GROWTH times the bytes received plus READ_BUFFER_SIZE
    (data holds one frame)."""
    frames = []
    offset = 0
    target = None
    while offset < len(data):
        space = decoder.get_buffer()
        if grow_check:
            assert len(space.obj) <= GROWTH * offset + READ_BUFFER_SIZE, offset
        n = min(len(space), step, len(data) - offset)
        space[:n] = data[offset:offset + n]
        target = space.obj
        offset += n
        frames.extend(decoder.buffer_updated(n))
    return frames, target


def test_a_prefix_announcing_16_mib_alone_allocates_nothing_more():
    decoder = FrameDecoder()
    assert decoder.feed(frame_header(DEFAULT_MAX_FRAME_SIZE) + b"abcd") == []
    assert decoder.feed(b"efgh") == []
    assert decoder.buffered == HEADER_SIZE + 8
    assert len(decoder._buf) == READ_BUFFER_SIZE
    assert bytes_held(decoder) <= 2 * READ_BUFFER_SIZE


def test_a_prefix_announcing_16_mib_alone_via_get_buffer():
    decoder = FrameDecoder()
    space = decoder.get_buffer()
    space[:HEADER_SIZE + 1] = frame_header(DEFAULT_MAX_FRAME_SIZE) + b"x"
    assert decoder.buffer_updated(HEADER_SIZE + 1) == []
    for _ in range(3):  # asking again for room does not allocate either
        assert len(decoder.get_buffer()) == READ_BUFFER_SIZE - HEADER_SIZE - 1
    assert bytes_held(decoder) <= 2 * READ_BUFFER_SIZE


def test_the_buffer_of_a_large_frame_grows_with_the_bytes_that_arrive():
    size = DEFAULT_MAX_FRAME_SIZE
    decoder = FrameDecoder()
    header = frame_header(size)
    chunk = b"\x5a" * (256 * KIB)
    space = decoder.get_buffer()
    space[:HEADER_SIZE] = header
    decoder.buffer_updated(HEADER_SIZE)
    received = HEADER_SIZE
    largest = 0
    while received < HEADER_SIZE + size:
        space = decoder.get_buffer()
        n = min(len(space), len(chunk), HEADER_SIZE + size - received)
        space[:n] = chunk[:n]
        received += n
        frames = decoder.buffer_updated(n)
        largest = max(largest, len(decoder._buf))
        # Never more than GROWTH times what arrived, plus a read buffer,
        # whatever the prefix announced.
        assert len(decoder._buf) <= GROWTH * received + READ_BUFFER_SIZE, received
    [frame] = frames
    assert len(frame) == size
    assert largest == HEADER_SIZE + size  # the last step is the frame's own size


def test_a_trickle_after_a_16_mib_prefix_stays_small():
    decoder = FrameDecoder()
    decoder.feed(frame_header(DEFAULT_MAX_FRAME_SIZE))
    for _ in range(100):
        decoder.feed(b"x" * 100)  # 10 KB in all
    assert len(decoder._buf) == READ_BUFFER_SIZE


def test_a_1_mib_frame_arrives_whole_as_a_view_of_the_buffer_it_was_read_into():
    body = random.Random(5).randbytes(MIB)
    data = frame_header(len(body)) + body
    decoder = FrameDecoder()
    [frame], target = read(decoder, data, 256 * KIB, grow_check=True)
    assert isinstance(frame, memoryview)
    # No copy after the read: the frame is the buffer the last bytes went into.
    assert frame.obj is target and len(target) == len(data)
    assert frame == body


def test_the_next_large_frame_reuses_the_buffer_once_the_first_is_gone(monkeypatch):
    fresh = []
    take_spare = framing.FrameDecoder._take_spare

    def counting(decoder, size):
        spare = decoder._large_spare
        buf = take_spare(decoder, size)
        if size > READ_BUFFER_SIZE and buf is not spare:
            fresh.append(len(buf))
        return buf

    monkeypatch.setattr(framing.FrameDecoder, "_take_spare", counting)
    bodies = [bytes([i]) * MIB for i in range(5)]
    decoder = FrameDecoder()
    first_buffer = None
    for i, body in enumerate(bodies):
        [frame], target = read(decoder, frame_header(MIB) + body, 256 * KIB)
        assert frame == body and frame.obj is target
        if first_buffer is None:
            first_buffer = target
        assert target is first_buffer, f"frame {i} was read into a new buffer"
        frame.release()
        del frame, target
    # Growing cost buffers for the first frame only; the others were read
    # straight into the spare it left.
    assert len(fresh) <= 3 and fresh[-1] == HEADER_SIZE + MIB


def test_frames_of_a_shared_read_after_a_grown_frame_are_intact():
    bodies = [b"a" * (300 * KIB), b"tail", b"b" * (40 * KIB), b"c" * (700 * KIB)]
    data = b"".join(frame_header(len(b)) + b for b in bodies)
    for step in (1000, 64 * KIB, 300 * KIB, len(data)):
        decoder = FrameDecoder()
        frames, _ = read(decoder, data, step)
        assert [bytes(f) for f in frames] == bodies, step
        assert decoder.buffered == 0


def test_discard_keeps_only_a_small_buffer():
    decoder = FrameDecoder()
    big = b"q" * (2 * MIB)
    [frame] = decoder.feed(frame_header(len(big)) + big)
    del frame  # its buffer is now the large spare
    decoder.feed(frame_header(MIB) + b"r" * (600 * KIB))  # half a frame: a grown buffer
    assert bytes_held(decoder) > MIB
    decoder.discard()
    assert buffers_held(decoder) == [decoder._buf] and len(decoder._buf) == READ_BUFFER_SIZE
    assert decoder.buffered == 0


def test_a_suspended_session_holds_no_read_buffer_beyond_the_small_one():
    # A session kept for its grace period after its connection broke reads
    # nothing more: the large spare and a half-read frame's buffer go.
    client, server = open_session_pair()
    client.send_request(1, "/a.B/C", b"1" * (2 * MIB))
    client.send_request(2, "/a.B/C", b"2" * MIB)
    data = wire(client)
    first = len(data) - (MIB + 100)
    [request] = server.receive_data(data[:first + 600 * KIB], 1.0)
    del request  # its buffer is now the large spare; the next one is half read
    assert bytes_held(server._decoder) > MIB
    server.suspend()
    decoder = server._decoder
    assert buffers_held(decoder) == [decoder._buf] and len(decoder._buf) == READ_BUFFER_SIZE


# ------------------------------------------------ a read budget shared by many

def large_held(decoder):
    """What a decoder counts against a shared budget: its large buffers."""
    return sum(len(b) for b in (decoder._buf, decoder._large_spare)
               if b is not None and len(b) > READ_BUFFER_SIZE)


def test_decoders_sharing_a_budget_hold_no_more_than_it_together():
    budget = ByteBudget(6 * MIB)
    first, second = FrameDecoder(budget=budget), FrameDecoder(budget=budget)
    part = frame_header(4 * MIB) + b"x" * (3 * MIB)  # 3 of a 4 MiB frame
    read(first, part, 256 * KIB)
    assert budget.used == large_held(first) == HEADER_SIZE + 4 * MIB
    with pytest.raises(ReadBudgetExceeded) as raised:
        read(second, part, 256 * KIB)
    assert raised.value.status is StatusCode.RESOURCE_EXHAUSTED
    assert "exceed its limit of 6291456 bytes (max_server_read_bytes)" in str(raised.value)
    assert budget.used <= budget.limit
    assert budget.used == large_held(first) + large_held(second)
    # The first frame completes and goes: only a spare is left, if any.
    [frame], _ = read(first, b"y" * MIB, 256 * KIB)
    del frame
    assert budget.used == large_held(first) + large_held(second)
    first.close()
    second.close()
    assert budget.used == 0


def test_a_spare_is_kept_only_while_the_budget_is_less_than_half_used():
    budget = ByteBudget(3 * MIB)
    decoder = FrameDecoder(budget=budget)
    [frame] = read(decoder, frame_header(MIB) + b"x" * MIB, 64 * KIB)[0]
    del frame
    assert decoder._large_spare is not None  # 1 MiB of 3: kept for the next frame
    assert budget.used == large_held(decoder)
    crowded = ByteBudget(3 * MIB)
    crowded.used = 2 * MIB  # others hold most of it
    decoder = FrameDecoder(budget=crowded)
    [frame] = read(decoder, frame_header(MIB // 2) + b"x" * (MIB // 2), 64 * KIB)[0]
    del frame
    assert decoder._large_spare is None and crowded.used == 2 * MIB
