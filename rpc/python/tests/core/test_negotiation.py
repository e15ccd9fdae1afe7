"""Negotiation on its own: handshake frames in, a Step (what the Session
must do) out. The Session-level behaviour is in test_session.py and
test_resumption.py; these pin the decisions. Pure: no sockets, no clocks."""
from __future__ import annotations

import pytest

from onedrive_rpc.core import events as ev
from onedrive_rpc.core import wire_pb2
from onedrive_rpc.core.errors import (LocalProtocolError, RemoteProtocolError, ResumeRefused, StatusCode,
                                      VersionMismatch)
from onedrive_rpc.core.negotiation import PROTOCOL_VERSION, Negotiation
from onedrive_rpc.core.reliability import Reliability


TOKEN = bytes(range(16))


def negotiation(interval=1.0, misses=3, resume="", token=b"", grace=0.0):
    return Negotiation(peer_id="me", name="n", pid=7, max_frame_size=4096, metadata={"k": "v"},
                       heartbeat_interval=interval, heartbeat_misses=misses,
                       resume_session_id=resume, resume_token=token, session_grace=grace)


@pytest.mark.parametrize("grace, on_the_wire, learned", [(10.0, 10_000, 10.0), (0.25, 250, 0.25),
                                                         (0.0, 0, 0.0)])
def test_the_welcome_says_how_long_the_server_keeps_a_session_for_a_resume(
        grace, on_the_wire, learned):
    """Spec §4.2: a client can learn it (0: not said, as from older servers)."""
    client, server = negotiation(), negotiation(grace=grace)
    welcome = server.on_hello(client.hello(0).hello, "S").reply.welcome
    assert welcome.session_grace_ms == on_the_wire
    client.on_welcome(welcome)
    assert client.peer_session_grace == learned


# ------------------------------------------------------------ resume token

def test_every_welcome_carries_the_servers_token_and_the_client_keeps_it():
    server = negotiation(token=TOKEN)
    step = server.on_hello(negotiation().hello(0).hello, "S")
    assert step.reply.welcome.resume_token == TOKEN and step.resume_token == TOKEN
    assert negotiation().on_welcome(step.reply.welcome).resume_token == TOKEN


def test_a_resume_presents_the_token_the_client_was_given():
    hello = negotiation(resume="S").hello(received=3, token=TOKEN).hello
    assert (hello.resume_session_id, hello.resume_token) == ("S", TOKEN)
    assert negotiation().hello(0, token=TOKEN).hello.resume_token == b""  # not resuming: never sent


@pytest.mark.parametrize("presented", [b"", TOKEN[:-1] + b"x", TOKEN + b"x", b"S"],
                         ids=["none", "wrong", "longer", "the-session-id"])
def test_a_resume_without_the_sessions_token_is_refused_and_changes_nothing(presented):
    server = negotiation(token=b"n" * 16)
    server.on_hello(negotiation(resume="S").hello(received=0, token=presented).hello, "new")
    kept = Reliability()
    kept.resume_token = TOKEN
    with pytest.raises(ResumeRefused) as refused:
        server.accept_resume(kept)
    assert refused.value.status is StatusCode.UNAUTHENTICATED
    assert str(refused.value).startswith("cannot resume session S: the resume token does not match")
    assert kept.resume_token == TOKEN
    # The Hello can still be answered with a new session.
    assert server.refuse_resume("new").reply.welcome.resumed is False


def test_a_session_without_a_token_cannot_be_resumed_at_all():
    server = negotiation(token=b"n" * 16)
    server.on_hello(negotiation(resume="S").hello(received=0, token=b"").hello, "new")
    with pytest.raises(ResumeRefused):
        server.accept_resume(Reliability())


def test_hello_says_who_we_are_and_what_we_take_once():
    client = negotiation(interval=0.5, resume="S")
    hello = client.hello(received=12).hello
    assert (hello.version, hello.max_frame_size) == (PROTOCOL_VERSION, 4096)
    assert (hello.identity.peer_id, hello.identity.name, hello.identity.pid) == ("me", "n", 7)
    assert (hello.heartbeat.interval_ms, hello.heartbeat.misses) == (500, 3)
    assert dict(hello.metadata) == {"k": "v"}
    assert (hello.resume_session_id, hello.resume_received_seq) == ("S", 12)
    with pytest.raises(LocalProtocolError):
        client.hello(received=12)


def test_the_server_welcomes_with_the_smaller_interval_and_its_own_misses():
    client, server = negotiation(interval=0.2, misses=9), negotiation(interval=1.0, misses=2)
    step = server.on_hello(client.hello(0).hello, "S1")
    assert step.interval == 0.2 and step.session_id == "S1" and step.resend_after is None
    assert step.peer == ev.PeerInfo("me", "n", 7) and step.peer_max_frame_size == 4096
    assert step.event == ev.Handshaken(step.peer, "S1", {"k": "v"}, False)
    welcome = step.reply.welcome
    assert (welcome.session_id, welcome.heartbeat.interval_ms, welcome.heartbeat.misses) == ("S1", 200, 2)
    answer = client.on_welcome(welcome)
    assert answer.interval == 0.2 and answer.session_id == "S1" and answer.reply is None


def test_a_resume_waits_for_the_owner_then_resends_after_what_the_client_has():
    client, server = negotiation(resume="S"), negotiation()
    step = server.on_hello(client.hello(received=3, token=TOKEN).hello, "new")
    assert step.event == ev.ResumeRequested("S", 3, step.peer, {"k": "v"}) and step.reply is None
    kept = Reliability()
    kept.received = 5
    kept.next_seq = 4  # sent 1..3: the client has them all
    kept.resume_token = TOKEN
    accepted = server.accept_resume(kept)
    assert accepted.reliability is kept and accepted.session_id == "S" and accepted.resend_after == 3
    assert accepted.reply.welcome.resumed and accepted.reply.welcome.resume_received_seq == 5
    with pytest.raises(LocalProtocolError, match="no resumption was requested"):
        server.refuse_resume("new")


def test_a_resume_claiming_frames_never_sent_is_refused_before_any_welcome():
    """Spec §4.2: a protocol error, answered with a Close instead of the
    Welcome; the session it named is left as it was."""
    client, server = negotiation(resume="S"), negotiation()
    server.on_hello(client.hello(received=3, token=TOKEN).hello, "new")
    kept = Reliability()
    kept.next_seq = 3  # sent 1..2
    kept.resume_token = TOKEN
    with pytest.raises(RemoteProtocolError, match="cannot resume session S: the Hello says it "
                       "received seq 3, but the last frame sent was 2"):
        server.accept_resume(kept)
    assert kept.next_seq == 3 and kept.peer_acked == 0


def test_a_client_whose_session_is_gone_starts_a_new_reliability():
    client, server = negotiation(resume="S"), negotiation()
    server.on_hello(client.hello(received=3).hello, "new")
    welcome = server.refuse_resume("new").reply.welcome
    step = client.on_welcome(welcome)
    assert step.event.resumed is False and step.session_id == "new"
    assert isinstance(step.reliability, Reliability) and step.resend_after is None


@pytest.mark.parametrize("field, value, message", [
    ("version", 2, "protocol version mismatch: the client speaks version 2"),
    ("max_frame_size", 1000, "maximum frame size of 1000 bytes"),
])
def test_what_the_server_refuses(field, value, message):
    hello = negotiation().hello(0)
    setattr(hello.hello, field, value)
    with pytest.raises(RemoteProtocolError, match=message) as info:
        negotiation().on_hello(hello.hello, "S")
    assert isinstance(info.value, VersionMismatch) == (field == "version")


def test_a_heartbeat_interval_below_10_ms_is_refused():
    hello = wire_pb2.Hello(version=PROTOCOL_VERSION)
    hello.heartbeat.interval_ms = 9
    with pytest.raises(RemoteProtocolError, match="at least 10 ms"):
        negotiation().on_hello(hello, "S")
