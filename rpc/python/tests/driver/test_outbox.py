"""Outbox: coalesced non-blocking writes, the writer greenlet for what the
stream does not take at once, senders waiting for room, and what a failed
write leads to. Over in-memory streams (see conftest.py); the recording
WrappedStream counts the sends."""
from __future__ import annotations

import time
from typing import List

import gevent
import pytest

from onedrive_rpc.config import Limits
from onedrive_rpc.core import events as ev
from onedrive_rpc.driver import End, Phase
from onedrive_rpc.core.pattern_frames import Notify
from onedrive_rpc.driver.outbox import MID_BATCH_FLUSH, WRITE_FAILURE_GRACE
from onedrive_rpc.errors import PeerLost, RpcError, StatusCode
from onedrive_rpc.testing.helpers import envelopes

SOON = 5.0  # seconds to wait for anything that should happen at once


def per_send(sends: List[bytes], kind: str) -> List[int]:
    """How many frames of `kind` each send carried (sends without any left out)."""
    counts = [sum(env.WhichOneof("kind") == kind for env in envelopes(data)) for data in sends]
    return [n for n in counts if n]


def test_calls_made_in_one_loop_pass_go_out_in_one_send(connect):
    pair = connect(wrap=True)
    client_stream, server_stream = pair.client.stream, pair.server.stream
    assert pair.client.outgoing.call("/echo", b"warm-up", bytes, timeout=SOON) == b"warm-up"
    client_sent, server_sent = len(client_stream.sends), len(server_stream.sends)
    futures = [pair.client.outgoing.call_future("/echo", b"%d" % i, bytes) for i in range(20)]
    assert [f.get(timeout=SOON) for f in futures] == [b"%d" % i for i in range(20)]
    assert per_send(client_stream.sends[client_sent:], "request") == [20]
    # The server read them in one go, and its answers went out together too
    # (in a few sends at most: a reader busy for FAIR_SLICE lets others run,
    # and what it answered so far goes out meanwhile).
    answers = per_send(server_stream.sends[server_sent:], "response")
    assert sum(answers) == 20 and len(answers) <= 3, answers


def test_what_the_stream_does_not_take_goes_to_the_writer_greenlet(connect):
    pair = connect(wrap=True)
    client, stream = pair.client, pair.client.stream
    assert client.outgoing.call("/echo", b"warm-up", bytes, timeout=SOON) == b"warm-up"
    stream.max_send = 1000
    stream.writable.clear()
    big = bytes(range(256)) * 40  # 10 KiB
    first = client.outgoing.call_future("/echo", big, bytes)
    assert stream.waiting.wait(SOON)  # the writer waits for the stream
    outbox = client.outbox
    assert outbox.writer is not None and not outbox.drained.is_set()
    assert len(stream.sends[-1]) == 1000 and 0 < outbox.out_bytes < len(big)
    second = client.outgoing.call_future("/echo", b"queued behind", bytes)  # the writer takes it too
    stream.max_send = None
    stream.writable.set()
    assert first.get(timeout=SOON) == big
    assert second.get(timeout=SOON) == b"queued behind"
    assert outbox.drained.wait(SOON) and outbox.writer is None and outbox.out_bytes == 0


def test_a_sender_waits_for_room_while_the_peer_does_not_read_and_goes_on_when_it_acks(connect_raw):
    limit = 16 * 1024
    client, raw = connect_raw(limits=Limits(max_queued_bytes=limit))
    payload = b"x" * 4096
    sent: List[int] = []

    def sender():
        for i in range(8):
            client.outgoing.notify("/n", payload)
            sent.append(i)

    job = gevent.spawn(sender)
    job.join(0.2)
    # Four notifications are more than the limit: the fifth waits.
    assert not job.ready() and len(sent) == 4
    assert client.outbox.room_waiters == 1 and client.session.unacked_bytes > limit
    raw.read_until(lambda events: sum(type(e) is ev.NotifyReceived for e in events) == 4)
    raw.ack()
    job.get(timeout=SOON)
    assert len(sent) == 8 and client.outbox.room_waiters == 0


def test_a_sender_waiting_for_room_fails_when_the_connection_ends(connect_raw):
    client, raw = connect_raw(limits=Limits(max_queued_bytes=16 * 1024))
    payload = b"x" * 4096
    futures = []

    def sender():
        try:
            for _ in range(8):
                futures.append(client.outgoing.call_future("/m", payload, bytes))
        except RpcError as exc:
            return exc

    job = gevent.spawn(sender)
    job.join(0.2)
    assert not job.ready() and len(futures) == 4 and client.outbox.room_waiters == 1
    client.abort(PeerLost("the peer hung"))
    # The call that waited is not sent into the dead session, where nothing
    # would ever answer it: it fails at once.
    failed = job.get(timeout=SOON)
    assert isinstance(failed, PeerLost) and failed.message == "the peer hung"
    assert len(futures) == 4
    for future in futures:
        with pytest.raises(PeerLost, match="the peer hung"):
            future.get(timeout=SOON)
    assert client.outgoing.pending == {}


def test_a_failed_write_loses_the_stream_after_the_grace(connect):
    pair = connect(wrap=True)
    client = pair.client
    assert client.outgoing.call("/echo", b"warm-up", bytes, timeout=SOON) == b"warm-up"
    client.stream.broken = True
    started = time.monotonic()
    future = client.outgoing.call_future("/echo", b"lost", bytes)
    # Not at once: the reader may still find why the peer hung up.
    assert not client.closed_event.wait(WRITE_FAILURE_GRACE / 2)
    assert client.phase is Phase.RUNNING
    assert client.closed_event.wait(SOON)
    # (Slack: libev times the grace from its loop time, cached a little earlier.)
    assert time.monotonic() - started >= WRITE_FAILURE_GRACE * 0.9
    assert client.end is End.LOST and client.end_to_report() == "lost"
    assert client.close_reason.message == "connection lost: connection reset (test)"
    with pytest.raises(PeerLost, match="connection reset"):
        future.get(timeout=SOON)


def test_a_failed_write_still_reports_the_close_the_peer_sent(connect):
    pair = connect(wrap=True)
    client = pair.client
    assert client.outgoing.call("/echo", b"warm-up", bytes, timeout=SOON) == b"warm-up"
    client.stream.broken = True
    future = client.outgoing.call_future("/echo", b"lost", bytes)
    pair.server.close(StatusCode.RESOURCE_EXHAUSTED, "go away")
    assert client.closed_event.wait(SOON)
    assert client.end is End.ORDERLY  # not "lost": the peer said why
    with pytest.raises(RpcError) as err:
        future.get(timeout=SOON)
    assert err.value.code == StatusCode.RESOURCE_EXHAUSTED and err.value.message == "go away"


def test_nothing_is_written_while_suspended(connect, blocker):
    pair = connect(wrap=True, client_grace=5.0, server_grace=5.0)
    block = pair.server_owner.handlers["/block"] = blocker(b"late")
    future = pair.client.outgoing.call_future("/block", b"", bytes)
    assert block.entered.wait(SOON)
    server_stream = pair.server.stream
    pair.client.stream.close()
    assert pair.server_owner.suspended.wait(SOON)
    sends = len(server_stream.sends)
    block.release.set()
    assert block.finished.wait(SOON)
    pair.server.outbox.flush()  # what a flush would write goes nowhere
    assert len(server_stream.sends) == sends and pair.server.session.queued_bytes == 0
    assert pair.server.outbox.drained.is_set()
    pair.resume()
    assert future.get(timeout=SOON) == b"late"  # from the resend buffer


def test_a_large_frames_read_buffer_is_reused_once_its_call_is_done(connect, monkeypatch):
    # A reader holding on to the last event it routed keeps a large
    # payload's buffer exported: every large frame then costs a fresh
    # MiB-sized allocation (page faults, W3 twice as slow).
    from onedrive_rpc.core import framing
    fresh = []
    take_spare = framing.FrameDecoder._take_spare

    def counting(decoder, size):
        spare = take_spare(decoder, size)
        if size > framing.READ_BUFFER_SIZE:
            fresh.append(id(spare))
        return spare

    monkeypatch.setattr(framing.FrameDecoder, "_take_spare", counting)
    pair = connect()
    payload = b"x" * (256 * 1024)
    for _ in range(6):
        assert pair.client.outgoing.call("/echo", payload, bytes, timeout=5.0) == payload
    # Each side reads 6 large frames; after the first one or two, the same
    # buffers come back (a reused spare), not new ones.
    assert len(set(fresh)) <= 4, f"{len(set(fresh))} distinct large buffers for 12 frames"


def test_a_batch_s_worth_goes_out_at_once_and_less_waits_for_the_loop_pass(connect):
    """A stream's items and a broker's pushes: the peer works on the first
    ones while we make more (flush_batch)."""
    pair = connect(wrap=True)
    client, stream = pair.client, pair.client.stream
    assert client.outgoing.call("/echo", b"warm-up", bytes, timeout=SOON) == b"warm-up"
    sent = len(stream.sends)
    queued = 0
    for frames in range(1, 100):  # never yielding to the hub meanwhile
        client.session.send(Notify("/n", b"x" * 100, {}))
        queued = client.session.queued_bytes
        client.outbox.flush_batch()
        if len(stream.sends) > sent:
            break
    assert queued >= MID_BATCH_FLUSH and queued - 150 < MID_BATCH_FLUSH
    assert per_send(stream.sends[sent:], "notify") == [frames]
    client.session.send(Notify("/n", b"x" * 100, {}))
    client.outbox.flush_batch()
    assert len(stream.sends) == sent + 1  # less than a batch: at the end of the pass
    gevent.sleep(0)
    assert per_send(stream.sends[sent:], "notify") == [frames, 1]
