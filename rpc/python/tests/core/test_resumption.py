"""Resuming a session on a new connection: whatever was cut, every call and
every answer arrives exactly once. Pure sessions on a fake link."""
from __future__ import annotations

import itertools

import pytest

from onedrive_rpc.core import events as ev
from onedrive_rpc.core.reliability import Reliability
from onedrive_rpc.core.session import Role, Session, State
from onedrive_rpc.errors import LocalProtocolError, RemoteProtocolError

METHOD = "/a.B/C"
CALLS = 4


def take(session):
    return b"".join(bytes(b) for b in session.data_to_send())


def frames(data):
    from onedrive_rpc.core.framing import FrameDecoder
    return [len(f).to_bytes(4, "big") + bytes(f) for f in FrameDecoder().feed(data)]


def connect(client_rel=None, server_rel_lookup=None, resume_id=""):
    client = Session(Role.CLIENT, peer_id="c", reliability=client_rel, resume_session_id=resume_id)
    server = Session(Role.SERVER, peer_id="s", session_id="fresh" if resume_id else "S")
    client.start(0.0)
    [event] = server.receive_data(take(client), 0.0)
    if isinstance(event, ev.ResumeRequested):
        rel = server_rel_lookup(event.session_id) if server_rel_lookup else None
        server_hs = server.accept_resume(rel) if rel is not None else server.refuse_resume()
    else:
        server_hs = event
    events = client.receive_data(take(server), 0.0)
    assert isinstance(events[0], ev.Handshaken)
    return client, server, server_hs, events


@pytest.mark.parametrize("requests_delivered,answered,answers_delivered",
                         [(r, a, d) for r in range(CALLS + 1) for a in range(r + 1) for d in range(a + 1)])
def test_every_call_and_answer_arrives_exactly_once_across_a_cut(
        requests_delivered, answered, answers_delivered):
    client, server, _, _ = connect()
    for call_id in range(1, CALLS + 1):
        client.send_request(call_id, METHOD, f"req-{call_id}".encode())
    got_requests = [e.call_id for f in frames(take(client))[:requests_delivered]
                    for e in server.receive_data(f, 1.0)]
    for call_id in got_requests[:answered]:
        server.send_response(call_id, 0, payload=f"resp-{call_id}".encode())
    got_answers = [e.call_id for f in frames(take(server))[:answers_delivered]
                   for e in client.receive_data(f, 1.0)]
    # The connection breaks: whatever was not delivered is gone. The server
    # finishes the calls it has while nobody is connected.
    for call_id in got_requests[answered:]:
        server.send_response(call_id, 0, payload=f"resp-{call_id}".encode())
    take(server)

    old_server = server
    client, server, server_hs, events = connect(
        client.reliability, lambda sid: old_server.reliability if sid == "S" else None, resume_id="S")
    assert server_hs.resumed and events[0].resumed and events[0].session_id == "S"
    got_answers += [e.call_id for e in events[1:]]
    got_requests += [e.call_id for e in server.receive_data(take(client), 2.0)]
    for call_id in range(1, CALLS + 1):
        if call_id in got_requests[len(got_requests) - (CALLS - requests_delivered):]:
            server.send_response(call_id, 0, payload=f"resp-{call_id}".encode())
    got_answers += [e.call_id for e in client.receive_data(take(server), 2.0)]

    assert sorted(got_requests) == list(range(1, CALLS + 1))  # each request once
    assert sorted(got_answers) == list(range(1, CALLS + 1))  # each answer once
    # Within the heartbeat bound, owed acks go out and both buffers empty.
    server.tick(2.5)
    client.tick(2.5)
    client.receive_data(take(server), 2.6)
    server.receive_data(take(client), 2.6)
    assert client.unacked_bytes == 0 and server.unacked_bytes == 0


def test_an_unknown_session_starts_over_and_says_so():
    client, server, _, _ = connect()
    client.send_request(1, METHOD, b"lost with the old session")
    take(client)
    old_rel = client.reliability
    client, server, server_hs, events = connect(old_rel, lambda sid: None, resume_id="S")
    assert not server_hs.resumed and events[0].resumed is False
    assert events[0].session_id == "fresh"
    assert client.reliability is not old_rel and client.reliability.next_seq == 1
    assert take(client) == b""  # nothing of the old session is resent
    client.send_request(1, METHOD, b"new")
    [request] = server.receive_data(take(client), 0.0)
    assert request.call_id == 1


def test_a_client_claiming_frames_never_sent_is_refused():
    client, server, _, _ = connect()
    bogus = Reliability()
    bogus.received = 99  # the server never sent 99 frames
    bogus.resume_token = client.reliability.resume_token
    with pytest.raises(RemoteProtocolError, match="cannot resume session S: the Hello says it "
                       "received seq 99"):
        connect(bogus, lambda sid: server.reliability, resume_id="S")


def test_a_welcome_resuming_a_session_not_asked_for_is_refused():
    client = Session(Role.CLIENT, peer_id="c")
    server = Session(Role.SERVER, peer_id="s", session_id="S")
    client.start(0.0)
    server.receive_data(take(client), 0.0)
    data = bytearray(take(server))
    from onedrive_rpc.core import wire_pb2
    env = wire_pb2.Envelope()
    env.ParseFromString(bytes(data[4:]))
    env.welcome.resumed = True
    body = env.SerializeToString()
    with pytest.raises(RemoteProtocolError, match="asked for 'a new session'"):
        client.receive_data(len(body).to_bytes(4, "big") + body, 0.0)


def test_resume_answers_only_a_pending_request():
    server = Session(Role.SERVER, peer_id="s")
    with pytest.raises(LocalProtocolError):
        server.refuse_resume()
    assert server.state is State.AWAIT_HELLO


def test_a_lost_peer_closes_without_ending_a_resumable_session():
    client, server, _, _ = connect()
    client.end_session_on_loss = False
    events = client.tick(10.0)
    assert [type(e) for e in events] == [ev.PeerSilent]
    from onedrive_rpc.core import wire_pb2
    env = wire_pb2.Envelope()
    env.ParseFromString(frames(take(client))[-1][4:])
    assert env.close.end_session is False


def test_exhaustive_cases_are_many():
    # Guards the parametrisation above against silently shrinking.
    cases = [(r, a, d) for r in range(CALLS + 1) for a in range(r + 1) for d in range(a + 1)]
    assert len(cases) == len(set(cases)) == sum(
        1 for _ in itertools.product(range(CALLS + 1), repeat=3)
        if _[1] <= _[0] and _[2] <= _[1])


def test_answers_given_while_suspended_reach_the_caller_after_the_resume():
    client, server, _, _ = connect()
    client.send_request(1, METHOD, b"slow call")
    [request] = server.receive_data(take(client), 0.0)
    # The client freezes: the server's heartbeat gives up on the connection...
    server.end_session_on_loss = False
    assert [type(e) for e in server.tick(10.0)] == [ev.PeerSilent]
    server.suspend()
    assert server.state is State.SUSPENDED and take(server) == b""
    # ...while the handler finishes and answers into the resend buffer.
    server.send_response(request.call_id, 0, payload=b"done")
    assert take(server) == b""
    # The client thaws, reconnects and resumes: the answer arrives once.
    old_server = server
    client, server, _, events = connect(client.reliability, lambda sid: old_server.reliability,
                                        resume_id="S")
    assert [(type(e), getattr(e, "call_id", None)) for e in events] == [
        (ev.Handshaken, None), (ev.ResponseReceived, 1)]
    assert bytes(events[1].payload) == b"done"


def test_frames_taken_while_the_resume_handshake_finishes_are_not_skipped():
    client, server, _, _ = connect()
    client.send_request(1, METHOD, b"one")
    server.receive_data(take(client), 0.0)
    old_server = server
    old_server.suspend()
    # The client resumes; the server's Welcome and resend are being written...
    client2 = Session(Role.CLIENT, peer_id="c", reliability=client.reliability, resume_session_id="S")
    server2 = Session(Role.SERVER, peer_id="s", session_id="fresh")
    client2.start(0.0)
    [request] = server2.receive_data(take(client2), 0.0)
    server2.accept_resume(old_server.reliability)
    welcome = take(server2)
    # ...while a handler answers through the old, suspended session.
    old_server.send_response(1, 0, payload=b"answered in the window")
    server2.queue_frames_sent_since_resend()
    events = client2.receive_data(welcome + take(server2), 0.0)
    assert [type(e) for e in events] == [ev.Handshaken, ev.ResponseReceived]
    assert bytes(events[1].payload) == b"answered in the window"


def test_a_resume_whose_welcome_was_lost_can_be_tried_again():
    """The server resumed the session but its Welcome was lost with the
    connection: the client still holds the session's token, which must
    still work (a token that changed in the lost Welcome would lock the
    client out of its own session)."""
    client, server, _, _ = connect()
    token = client.reliability.resume_token
    attempt = Session(Role.CLIENT, peer_id="c", reliability=client.reliability, resume_session_id="S")
    attempt.start(0.0)
    first = Session(Role.SERVER, peer_id="s", session_id="fresh")
    first.receive_data(take(attempt), 0.0)
    first.accept_resume(server.reliability)
    take(first)  # the Welcome, lost with the connection
    assert client.reliability.resume_token == token
    again, _, resumed, events = connect(client.reliability, lambda sid: server.reliability, "S")
    assert resumed.resumed and events[0].resumed
