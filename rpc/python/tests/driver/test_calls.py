"""IncomingCalls and OutgoingCalls: serving (backpressure, reader takeover,
deadlines, cancels, stream credit) and calling (failing what is pending,
confirmed notifications, giving up). Over in-memory streams; where the
other side must not answer or acknowledge on its own it is a RawPeer (see
conftest.py)."""
from __future__ import annotations

import time
from typing import List

import gevent
import pytest
from gevent.event import Event

from onedrive_rpc.calls import CallAborted
from onedrive_rpc.config import Limits
from onedrive_rpc.core import events as ev
from onedrive_rpc.errors import PeerLost, RpcError, StatusCode

SOON = 5.0  # seconds to wait for anything that should happen at once


def count(events, kind) -> int:
    return sum(type(event) is kind for event in events)


def outcome_of(function, *args, **kwargs):
    """What function returns, or the RpcError it raises (to spawn it)."""
    try:
        return function(*args, **kwargs)
    except RpcError as exc:
        return exc


# ------------------------------------------------------------------ incoming


def test_past_the_peers_limit_a_call_waits_its_turn_unsent(connect, blocker):
    """The server announced 1 call at once: the second waits at the
    caller, is never refused, and goes once the first is answered."""
    pair = connect(server_limits=Limits(max_concurrent_calls=1))
    assert pair.client.session.peer_max_calls == 1
    block = pair.server_owner.handlers["/block"] = blocker(b"first")
    first = pair.client.outgoing.call_future("/block", b"", bytes)
    assert block.entered.wait(SOON)
    second = gevent.spawn(outcome_of, pair.client.outgoing.call, "/echo", b"second", bytes,
                          timeout=SOON)
    with pytest.raises(gevent.Timeout):
        second.get(timeout=0.2)
    assert pair.server.session.reliability.received == 1  # the second was never sent
    block.release.set()
    assert first.get(timeout=SOON) == b"first"
    assert second.get(timeout=SOON) == b"second"
    assert pair.server_owner.methods() == ["/block", "/echo"]


def test_calls_waiting_for_their_turn_go_in_the_order_they_came(connect, blocker):
    pair = connect(server_limits=Limits(max_concurrent_calls=2))
    block = pair.server_owner.handlers["/block"] = blocker()
    echoed = []

    def recording_echo(call, event):
        echoed.append(bytes(event.payload))
        call.reply(bytes(event.payload))

    pair.server_owner.handlers["/echo"] = recording_echo
    held = [pair.client.outgoing.call_future("/block", b"", bytes) for _ in range(2)]
    assert block.entered.wait(SOON)
    waiting = [gevent.spawn(outcome_of, pair.client.outgoing.call, "/echo", str(i).encode(), bytes,
                            timeout=SOON) for i in range(20)]
    gevent.sleep(0)  # all of them in line
    block.release.set()
    assert [g.get(timeout=SOON) for g in waiting] == [str(i).encode() for i in range(20)]
    assert [future.get(timeout=SOON) for future in held] == [b"done", b"done"]
    assert echoed == [str(i).encode() for i in range(20)]


def test_a_call_whose_deadline_passes_in_line_fails_without_being_sent(connect, blocker):
    pair = connect(server_limits=Limits(max_concurrent_calls=1))
    block = pair.server_owner.handlers["/block"] = blocker()
    first = pair.client.outgoing.call_future("/block", b"", bytes)
    assert block.entered.wait(SOON)
    started = time.monotonic()
    with pytest.raises(RpcError) as raised:
        pair.client.outgoing.call("/echo", b"late", bytes, timeout=0.2)
    assert 0.15 < time.monotonic() - started < SOON
    assert raised.value.code == StatusCode.DEADLINE_EXCEEDED
    assert "waited behind the 1 calls the peer serves at once" in raised.value.message
    block.release.set()
    assert first.get(timeout=SOON) == b"done"
    assert pair.server_owner.methods() == ["/block"]


def test_time_spent_in_line_counts_against_the_deadline(connect, blocker):
    """A call that waited 0.3 s of its 0.5 s times out 0.5 s after it was made."""
    pair = connect(server_limits=Limits(max_concurrent_calls=1))
    first = pair.server_owner.handlers["/first"] = blocker()
    later = pair.server_owner.handlers["/later"] = blocker()
    held = pair.client.outgoing.call_future("/first", b"", bytes)
    assert first.entered.wait(SOON)
    gevent.spawn_later(0.3, first.release.set)
    started = time.monotonic()
    with pytest.raises(RpcError) as raised:
        pair.client.outgoing.call("/later", b"", bytes, timeout=0.5)
    took = time.monotonic() - started
    assert raised.value.code == StatusCode.DEADLINE_EXCEEDED
    assert later.entered.is_set() and 0.45 < took < 0.9, took
    assert held.get(timeout=SOON) == b"done"
    later.release.set()


def test_a_cancelled_call_frees_its_place_at_once(connect, blocker):
    """The caller gives up on a call whose handler is still running: the
    next call goes at once and is served, though the first handler has
    not ended yet (the server does not count a cancelled call either)."""
    pair = connect(server_limits=Limits(max_concurrent_calls=1))
    stubborn = Event()

    def ignores_cancel(call, event):
        stubborn.set()
        while True:  # keeps running a while after its cancel
            try:
                gevent.sleep(SOON)
                return
            except CallAborted:
                continue

    pair.server_owner.handlers["/stubborn"] = ignores_cancel
    future = pair.client.outgoing.call_future("/stubborn", b"", bytes)
    assert stubborn.wait(SOON)
    assert future.cancel()
    assert pair.client.outgoing.call("/echo", b"next", bytes, timeout=SOON) == b"next"


def test_callers_in_line_fail_when_the_connection_is_lost(connect, blocker):
    pair = connect(server_limits=Limits(max_concurrent_calls=1))
    block = pair.server_owner.handlers["/block"] = blocker()
    first = pair.client.outgoing.call_future("/block", b"", bytes)
    assert block.entered.wait(SOON)
    waiting = [gevent.spawn(outcome_of, pair.client.outgoing.call, "/echo", b"", bytes,
                            timeout=SOON) for _ in range(3)]
    gevent.sleep(0)
    pair.client.abort(PeerLost("cut"))
    for outcome in [g.get(timeout=SOON) for g in waiting] + [first.exception]:
        assert isinstance(outcome, PeerLost), outcome
    block.release.set()


def test_past_its_limit_of_notifications_the_reader_stops_until_one_finishes(connect, blocker):
    """Notifications and handlers still ending share max_concurrent_calls
    more places; past them the reader stops (backpressure), and the
    ticker does not hold that silence against the peer."""
    pair = connect(server_limits=Limits(max_concurrent_calls=1))
    block = pair.server_owner.handlers["/n"] = blocker()
    for _ in range(3):
        pair.client.outgoing.notify("/n", b"")
    assert block.entered.wait(SOON)
    with pytest.raises(gevent.Timeout):
        gevent.with_timeout(0.2, pair.client.outgoing.call, "/echo", b"x", bytes)
    assert pair.server.incoming.paused
    assert pair.server_owner.methods() == ["/n", "/n"]  # the third read, not served
    block.release.set()
    assert pair.client.outgoing.call("/echo", b"y", bytes, timeout=SOON) == b"y"
    assert pair.server_owner.methods()[:3] == ["/n", "/n", "/n"]  # then the echoes


def test_a_blocked_handler_hands_reading_over(connect, blocker):
    pair = connect()
    block = pair.server_owner.handlers["/block"] = blocker()
    slow = pair.client.outgoing.call_future("/block", b"", bytes)
    assert block.entered.wait(SOON)
    # Another call completes while the first handler is still blocked.
    assert pair.client.outgoing.call("/echo", b"meanwhile", bytes, timeout=SOON) == b"meanwhile"
    assert not slow.ready() and not block.finished.is_set()
    [blocked] = block.calls
    assert not pair.server.is_reader(blocked.greenlet)  # a new reader took over
    block.release.set()
    assert slow.get(timeout=SOON) == b"done"  # the old reader answers, then exits
    assert pair.server.calls == {}


def test_a_deadline_aborts_the_handler(connect, blocker, monkeypatch):
    pair = connect()
    block = pair.server_owner.handlers["/block"] = blocker()
    # The request carries a 0.2 s deadline, but the caller does not time out
    # on its own (which would send a Cancel instead): only the server's
    # deadline can end this call.
    session = pair.client.session
    send_request = session.send_request

    def with_deadline(call_id, method, payload, timeout, *rest):
        send_request(call_id, method, payload, 0.2, *rest)

    monkeypatch.setattr(session, "send_request", with_deadline)
    started = time.monotonic()
    future = pair.client.outgoing.call_future("/block", b"", bytes)
    with pytest.raises(RpcError) as err:
        future.get(timeout=SOON)
    assert err.value.code == StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started >= 0.2 * 0.9  # (libev's cached loop time: slack)
    assert block.finished.wait(SOON)
    assert isinstance(block.aborted, CallAborted)
    assert block.aborted.code == StatusCode.DEADLINE_EXCEEDED
    [call] = block.calls
    assert call.cancelled and call.deadline is not None and call.time_remaining() == 0.0


def test_a_cancel_from_the_caller_aborts_the_handler(connect, blocker):
    pair = connect()
    block = pair.server_owner.handlers["/block"] = blocker()
    future = pair.client.outgoing.call_future("/block", b"", bytes)
    assert block.entered.wait(SOON)
    assert future.cancel("changed my mind") is True
    with pytest.raises(RpcError) as err:
        future.get(timeout=SOON)
    assert err.value.code == StatusCode.CANCELLED
    assert block.finished.wait(SOON)
    assert block.aborted.code == StatusCode.CANCELLED
    assert block.aborted.message == "changed my mind"
    assert block.calls[0].cancelled
    pair.client.outgoing.call("/echo", b"", bytes, timeout=SOON)
    assert pair.server.calls == {} and pair.client.outgoing.pending == {}


def test_a_stream_sends_items_as_the_caller_grants_credit(connect):
    pair = connect()
    sent: List[int] = []
    waiting = Event()

    def stream(call, event):
        call.streaming = True
        for i in range(5):
            if i == 2:
                waiting.set()  # the window of 2 is used up
            call.send_item(b"%d" % i)
            sent.append(i)
        call.reply(b"")

    pair.server_owner.handlers["/stream"] = stream
    items = pair.client.outgoing.open_stream("/stream", b"", bytes, timeout=SOON, window=2)
    assert waiting.wait(SOON)
    [(_, call)] = pair.server_owner.served
    assert sent == [0, 1] and call.credit == 0  # waits: nothing was consumed yet
    assert list(items) == [b"0", b"1", b"2", b"3", b"4"]
    assert sent == [0, 1, 2, 3, 4] and items.done


def test_a_stream_waiting_for_credit_ends_when_the_caller_cancels(connect):
    pair = connect()
    outcome = {}
    waiting = Event()

    def stream(call, event):
        call.streaming = True
        call.send_item(b"only")
        waiting.set()
        try:
            call.send_item(b"never")
        except CallAborted as exc:
            outcome["aborted"] = exc
            raise

    pair.server_owner.handlers["/stream"] = stream
    items = pair.client.outgoing.open_stream("/stream", b"", bytes, window=1)
    assert waiting.wait(SOON)
    assert items.cancel() is True
    with pytest.raises(RpcError) as err:
        next(items)
    assert err.value.code == StatusCode.CANCELLED
    pair.client.outgoing.call("/echo", b"", bytes, timeout=SOON)  # the Cancel was read before this
    assert outcome["aborted"].code == StatusCode.CANCELLED and pair.server.calls == {}


def test_a_handler_running_when_the_connection_ends_sees_cancelled_and_finishes(connect, blocker):
    pair = connect()
    block = pair.server_owner.handlers["/block"] = blocker()
    future = pair.client.outgoing.call_future("/block", b"", bytes)
    assert block.entered.wait(SOON)
    [call] = block.calls
    pair.server.abort(PeerLost("server going down"))
    assert call.cancelled and "server going down" in call.abort.message
    assert not call.greenlet.dead  # never killed: it may clean up
    block.release.set()
    assert block.finished.wait(SOON)
    assert block.aborted is None  # it ran to its end; the answer goes nowhere
    call.greenlet.join(SOON)
    assert call.greenlet.successful()
    with pytest.raises(PeerLost):
        future.get(timeout=SOON)


# ------------------------------------------------------------------ outgoing


def test_closing_fails_everything_pending_with_the_reason(connect_raw):
    client, raw = connect_raw()
    futures = [client.outgoing.call_future(f"/m{i}", b"", bytes) for i in range(3)]
    items = client.outgoing.open_stream("/s", b"", bytes)
    notifier = gevent.spawn(outcome_of, client.outgoing.notify, "/n", b"", confirm=True, timeout=SOON)
    raw.read_until(lambda events: count(events, ev.RequestReceived) == 4
                   and count(events, ev.NotifyReceived) == 1)
    assert len(client.outgoing.pending) == 4 and len(client.outgoing.confirms) == 1
    client.close(StatusCode.UNAVAILABLE, "going away")
    for future in futures:
        with pytest.raises(PeerLost, match="going away"):
            future.get(timeout=SOON)
    with pytest.raises(PeerLost, match="going away"):
        next(items)
    failed = notifier.get(timeout=SOON)
    assert isinstance(failed, PeerLost) and failed.message == "going away"
    assert client.outgoing.pending == {} and not client.outgoing.confirms
    with pytest.raises(PeerLost, match="going away"):
        client.outgoing.call("/later", b"", bytes, timeout=SOON)


def test_a_confirmed_notify_returns_once_the_peer_acks_it(connect_raw):
    client, raw = connect_raw()
    notifier = gevent.spawn(client.outgoing.notify, "/n", b"hello", confirm=True, timeout=SOON)
    raw.read_until(lambda events: count(events, ev.NotifyReceived) == 1)
    notifier.join(0.1)
    assert not notifier.ready()  # received, but not acknowledged yet
    raw.ack()
    assert notifier.get(timeout=SOON) is None
    assert not client.outgoing.confirms
    [notify] = raw.of_type(ev.NotifyReceived)
    assert notify.method == "/n" and bytes(notify.payload) == b"hello"


def test_an_unconfirmed_notify_times_out(connect_raw):
    client, raw = connect_raw()
    with pytest.raises(RpcError) as err:
        client.outgoing.notify("/n", b"", confirm=True, timeout=0.1)
    assert err.value.code == StatusCode.DEADLINE_EXCEEDED
    assert not client.outgoing.confirms


def test_a_confirmed_notify_over_a_connection_returns(connect):
    pair = connect()
    pair.client.outgoing.notify("/n", b"x", confirm=True, timeout=SOON)
    pair.client.outgoing.call("/echo", b"", bytes, timeout=SOON)
    assert pair.server_owner.methods() == ["/n", "/echo"]


def test_abandon_sends_a_cancel(connect_raw):
    client, raw = connect_raw()
    future = client.outgoing.call_future("/m", b"", bytes)
    raw.read_until(lambda events: count(events, ev.RequestReceived) == 1)
    assert future.cancel("not needed") is True
    raw.read_until(lambda events: count(events, ev.CancelReceived) == 1)
    assert raw.of_type(ev.CancelReceived) == [ev.CancelReceived(future.call_id, "not needed")]
    assert client.outgoing.pending == {}
    client.outgoing.abandon(future.call_id, "again")  # no longer pending: nothing is sent
    client.outgoing.abandon(999, "never made")
    assert client.session.queued_bytes == 0


def test_a_call_that_times_out_cancels_it_on_the_peer(connect_raw):
    client, raw = connect_raw()
    with pytest.raises(RpcError) as err:
        client.outgoing.call("/m", b"", bytes, timeout=0.1)
    assert err.value.code == StatusCode.DEADLINE_EXCEEDED
    raw.read_until(lambda events: count(events, ev.CancelReceived) == 1)
    [request] = raw.of_type(ev.RequestReceived)
    # Saying why: the peer's own timer may not have fired yet.
    assert raw.of_type(ev.CancelReceived) == [ev.CancelReceived(request.call_id,
                                                                "deadline exceeded", True)]
    assert request.timeout == pytest.approx(0.1)


def test_call_ids_count_up_and_answers_find_their_callers(connect_raw):
    client, raw = connect_raw()
    futures = [client.outgoing.call_future("/m", b"", bytes) for _ in range(3)]
    raw.read_until(lambda events: count(events, ev.RequestReceived) == 3)
    ids = [request.call_id for request in raw.of_type(ev.RequestReceived)]
    assert ids == [f.call_id for f in futures] == [1, 2, 3]
    for call_id in reversed(ids):  # answered out of order
        raw.session.send_response(call_id, 0, payload=b"#%d" % call_id)
    raw.flush()
    assert [f.get(timeout=SOON) for f in futures] == [b"#1", b"#2", b"#3"]
