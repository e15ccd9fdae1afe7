"""Connection: its phases (RUNNING, SUSPENDED, CLOSED), how it ended and
what its owner hears of it, resume, drain, refusals, and event routing.
Two real Connections over an in-memory stream pair; see conftest.py."""
from __future__ import annotations

import logging

import gevent
import pytest

from onedrive_rpc.core import events as ev
from onedrive_rpc.core.pattern_frames import Credit, Publish, Subscribe, Unsubscribe
from onedrive_rpc.driver import End, Phase, refuse_pattern_event
from onedrive_rpc.errors import PeerLost, RpcError, StatusCode
from onedrive_rpc.testing.helpers import framed

SOON = 5.0  # seconds to wait for anything that should happen at once


def test_a_call_round_trips_and_the_handler_sees_who_called(connect):
    pair = connect()
    assert pair.client.outgoing.call("/echo", b"hi", bytes, timeout=SOON) == b"hi"
    [(method, call)] = pair.server_owner.served
    assert method == "/echo"
    assert call.peer.name == "client" and call.address == pair.server.address
    assert pair.client.peer.name == "server"
    assert pair.client.session.session_id == pair.server.session.session_id != ""
    assert pair.client.phase is pair.server.phase is Phase.RUNNING
    assert pair.client.end is None and pair.client.end_to_report() is None


def test_eof_with_a_grace_period_suspends_then_the_grace_runs_out(connect):
    pair = connect(server_grace=0.3)
    server, owner = pair.server, pair.server_owner
    pair.client.abort(PeerLost("cut off"))  # no Close frame: the server reads EOF
    assert owner.suspended.wait(SOON)
    assert server.phase is Phase.SUSPENDED and server.suspended and not server.closed
    assert server.end is None and server.end_to_report() is None
    [reason] = owner.suspensions
    assert isinstance(reason, PeerLost) and "connection closed by" in reason.message
    assert server.suspend_reason is reason
    # Nobody resumed it: the grace period ends the connection, as a loss
    # the owner already heard of.
    assert owner.closed.wait(SOON)
    assert server.phase is Phase.CLOSED and server.end is End.LOST
    assert server.end_to_report() is None
    assert "not resumed within 0.3s" in server.close_reason.message
    assert len(owner.suspensions) == 1 and owner.closings == 1


def test_eof_without_a_grace_period_ends_the_connection_as_lost(connect):
    pair = connect(server_grace=0.0)
    server, owner = pair.server, pair.server_owner
    pair.client.abort(PeerLost("cut off"))
    assert owner.closed.wait(SOON)
    assert server.phase is Phase.CLOSED and server.closed and not server.suspended
    assert server.end is End.LOST and server.end_to_report() == "lost"
    assert isinstance(server.close_reason, PeerLost)
    assert owner.suspensions == [] and owner.closings == 1
    assert server.closed_event.is_set()


def test_close_is_orderly_on_both_sides(connect):
    pair = connect(client_grace=5.0, server_grace=5.0)  # an orderly end never suspends
    pair.client.close(StatusCode.UNAVAILABLE, "bye")
    assert pair.client.phase is Phase.CLOSED
    assert pair.client.end is End.ORDERLY and pair.client.end_to_report() == "disconnected"
    assert pair.client_owner.closed.wait(SOON)
    assert pair.server_owner.closed.wait(SOON)
    assert pair.server.end is End.ORDERLY and pair.server.end_to_report() == "disconnected"
    assert pair.server.close_reason.code == StatusCode.UNAVAILABLE
    assert "bye" in pair.server.close_reason.message
    assert pair.client_owner.suspensions == pair.server_owner.suspensions == []
    pair.client.close()  # again: nothing happens
    assert pair.client_owner.closings == 1


def test_the_close_code_reaches_the_peer(connect):
    pair = connect()
    pair.server.close(StatusCode.RESOURCE_EXHAUSTED, "too slow")
    assert pair.client_owner.closed.wait(SOON)
    assert pair.client.end is End.ORDERLY
    assert pair.client.close_reason.code == StatusCode.RESOURCE_EXHAUSTED
    assert pair.client.close_reason.message == "too slow"
    with pytest.raises(RpcError) as err:
        pair.client.outgoing.call("/echo", b"", bytes, timeout=SOON)
    assert err.value.code == StatusCode.RESOURCE_EXHAUSTED  # closed_error(): the reason


def test_resume_over_a_new_stream_completes_a_call_in_flight(connect, blocker):
    pair = connect(client_grace=5.0, server_grace=5.0)
    block = pair.server_owner.handlers["/block"] = blocker(b"made it")
    future = pair.client.outgoing.call_future("/block", b"", bytes)
    assert block.entered.wait(SOON)
    pair.client.stream.close()  # the transport breaks under both sides
    assert pair.client_owner.suspended.wait(SOON) and pair.server_owner.suspended.wait(SOON)
    assert pair.client.phase is pair.server.phase is Phase.SUSPENDED
    block.release.set()  # the answer goes into the server's resend buffer
    assert block.finished.wait(SOON)
    assert not future.ready()
    pair.resume()
    assert future.get(timeout=SOON) == b"made it"
    assert pair.client.phase is pair.server.phase is Phase.RUNNING
    assert pair.client.outgoing.call("/echo", b"again", bytes, timeout=SOON) == b"again"
    assert pair.client.end_to_report() is None and pair.client_owner.closings == 0
    assert len(pair.client_owner.suspensions) == 1


def test_an_answer_given_during_the_resume_handshake_is_sent_after_it(connect, blocker):
    pair = connect(client_grace=5.0, server_grace=5.0)
    block = pair.server_owner.handlers["/block"] = blocker(b"just in time")
    future = pair.client.outgoing.call_future("/block", b"", bytes)
    assert block.entered.wait(SOON)
    pair.client.stream.close()
    assert pair.client_owner.suspended.wait(SOON) and pair.server_owner.suspended.wait(SOON)

    def answer():
        # The handshake's resend is done: this answer is after it.
        block.release.set()
        assert block.finished.wait(SOON)

    pair.resume(between=answer)
    assert future.get(timeout=SOON) == b"just in time"


def test_a_silent_peer_fails_what_is_pending_at_once_and_suspends(connect_raw):
    # Heartbeats every 50 ms, the peer lost after 150 ms of silence; the raw
    # peer never says anything.
    client, raw = connect_raw(grace=5.0, heartbeat_interval=0.05)
    owner = client.owner
    future = client.outgoing.call_future("/m", b"", bytes)
    assert owner.suspended.wait(SOON)
    [reason] = owner.suspensions
    assert "no sign of life" in reason.message
    assert client.phase is Phase.SUSPENDED
    # Failed as the loss was found, not after the grace period (or the bound).
    assert future.ready()
    with pytest.raises(PeerLost, match="no sign of life"):
        future.get()
    with pytest.raises(PeerLost, match="reconnecting"):
        client.outgoing.call("/m", b"", bytes, timeout=SOON)  # new calls fail fast until a resume
    # The Close telling the peer why went out before the stream was dropped.
    raw.read_until(lambda events: any(type(e) is ev.CloseReceived for e in events))
    [close] = [e for e in raw.events if type(e) is ev.CloseReceived]
    assert "no sign of life from you" in close.message and not close.end_session


def test_a_protocol_error_closes_with_the_reason(connect_raw):
    client, raw = connect_raw()
    owner = client.owner
    assert client.outbox.drained.wait(SOON)  # no flush pending from start()
    raw.stream.send_nowait([framed(b"\xff\xff\xff")])  # not an Envelope
    assert owner.closed.wait(SOON)
    assert client.end is End.LOST and client.end_to_report() == "lost"
    assert client.close_reason.message.startswith("protocol error: malformed envelope")
    raw.read_until(lambda events: any(type(e) is ev.CloseReceived for e in events))
    [close] = [e for e in raw.events if type(e) is ev.CloseReceived]
    assert "malformed envelope" in close.message


def test_enter_refuses_to_leave_closed_or_stay_put(connect):
    pair = connect()
    with pytest.raises(RuntimeError, match="RUNNING to RUNNING"):
        pair.server._enter(Phase.RUNNING)
    with pytest.raises(RuntimeError, match="only a suspended connection can resume"):
        pair.server.resume(pair.server.stream, pair.server.session)
    pair.client.close()
    for phase in Phase:
        with pytest.raises(RuntimeError, match="from CLOSED"):
            pair.client._enter(phase)
    assert pair.client.phase is Phase.CLOSED and pair.client.end is End.ORDERLY
    with pytest.raises(PeerLost):
        pair.client.resume(pair.client.stream, pair.client.session)


def test_drain_refuses_new_calls_and_waits_for_those_in_flight(connect, blocker):
    pair = connect()
    client = pair.client
    block = pair.server_owner.handlers["/block"] = blocker()
    future = client.outgoing.call_future("/block", b"", bytes)
    assert block.entered.wait(SOON)
    seen = {}

    def meanwhile():
        # Runs once drain() waits.
        seen["refusing"] = client.refusing_outgoing
        try:
            client.outgoing.call("/echo", b"", bytes, timeout=SOON)
        except RpcError as exc:
            seen["refused"] = exc
        block.release.set()

    helper = gevent.spawn(meanwhile)
    assert client.drain(SOON) is True
    helper.get(timeout=SOON)
    assert seen["refusing"] is True
    assert isinstance(seen["refused"], PeerLost) and seen["refused"].message == "connection is closing"
    assert future.get(timeout=SOON) == b"done"
    assert not client.closed and pair.server_owner.methods() == ["/block"]


def test_drain_gives_up_after_its_grace(connect, blocker):
    pair = connect()
    block = pair.server_owner.handlers["/block"] = blocker()
    future = pair.client.outgoing.call_future("/block", b"", bytes)
    assert block.entered.wait(SOON)
    assert pair.client.drain(0.05) is False
    block.release.set()
    assert future.get(timeout=SOON) == b"done"  # draining cancels nothing


def test_pattern_events_and_pattern_credit_go_to_the_owner(connect):
    pair = connect()
    owner = pair.server_owner
    pair.client.outgoing.send_one_way(Publish("/m", "a.b", b"news"))
    pair.client.grant(Credit(3, subscription_id=7))  # credit for a subscription, not a call
    assert owner.pattern_event.wait(SOON)
    pair.client.outgoing.call("/echo", b"", bytes, timeout=SOON)  # everything before it was read
    publish, credit = owner.pattern_events
    assert type(publish) is ev.PublishReceived
    assert (publish.method, publish.topic, bytes(publish.payload)) == ("/m", "a.b", b"news")
    assert credit == ev.CreditReceived(0, 7, 0, 3)


def test_refuse_pattern_event_answers_unimplemented(connect, caplog):
    pair = connect()
    pair.server_owner.on_pattern = refuse_pattern_event
    with pytest.raises(RpcError) as err:
        pair.client.outgoing.call_frame(Subscribe(1, "/m", "*", 0, 0), timeout=SOON)
    assert err.value.code == StatusCode.UNIMPLEMENTED
    assert "hosts no publish/subscribe" in err.value.message
    # A frame that opens no call cannot be answered: it is logged and dropped.
    caplog.set_level(logging.WARNING, logger="onedrive_rpc")
    pair.client.outgoing.send_one_way(Unsubscribe(1))
    pair.client.outgoing.call("/echo", b"", bytes, timeout=SOON)
    assert any("dropped a UnsubscribeReceived" in r.getMessage() for r in caplog.records)
    assert not pair.server.closed
