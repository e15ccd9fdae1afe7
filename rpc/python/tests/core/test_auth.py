"""The shared-secret challenge (rpc/protos/README.md §4.2), on sessions in
memory: both sides prove they know the secret without sending it, each
over its own nonce and the other's; any failure closes with
UNAUTHENTICATED before the session opens."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onedrive_rpc.core import auth
from onedrive_rpc.core import events as ev
from onedrive_rpc.core import wire_pb2
from onedrive_rpc.core.framing import frame_header
from onedrive_rpc.core.errors import AuthenticationFailed, RemoteProtocolError, StatusCode
from onedrive_rpc.core.session import Role, Session, State
from onedrive_rpc.testing.helpers import envelopes, framed, wire

SECRET = b"correct horse battery staple"
OTHER = b"a different secret of 16+ bytes"


def client(secret=SECRET, **kwargs):
    session = Session(Role.CLIENT, peer_id="c", secret=secret, **kwargs)
    session.start(0.0)
    return session


def server(secret=SECRET, **kwargs):
    return Session(Role.SERVER, peer_id="s", session_id="S", secret=secret, **kwargs)


def kinds(data):
    return [env.WhichOneof("kind") for env in envelopes(data)]


def closed_with(session, data):
    [env] = envelopes(data)
    assert env.WhichOneof("kind") == "close"
    assert env.close.status.code == StatusCode.UNAUTHENTICATED
    assert session.state is State.CLOSED
    return env.close.status.message


def test_both_prove_the_secret_then_the_session_opens():
    c, s = client(), server()
    hello = wire(c)
    assert len(envelopes(hello)[0].hello.auth_nonce) == auth.MIN_NONCE
    assert s.receive_data(hello, 0.0) == []
    challenge = wire(s)
    assert kinds(challenge) == ["challenge"]  # not a Welcome yet
    assert c.receive_data(challenge, 0.0) == []
    proof = wire(c)
    assert kinds(proof) == ["proof"]
    [opened] = s.receive_data(proof, 0.0)
    assert type(opened) is ev.Handshaken and s.state is State.OPEN and s.authenticated
    [welcomed] = c.receive_data(wire(s), 0.0)
    assert type(welcomed) is ev.Handshaken and c.state is State.OPEN and c.authenticated
    # The secret itself never crossed the wire.
    assert SECRET not in hello + challenge + proof


def test_a_client_with_the_wrong_secret_is_refused():
    c, s = client(OTHER), server()
    s.receive_data(wire(c), 0.0)
    # The client checks the server first: the server's proof is wrong for its secret.
    with pytest.raises(AuthenticationFailed, match="the server does not know the shared secret"):
        c.receive_data(wire(s), 0.0)
    assert "does not know the shared secret" in closed_with(c, wire(c))


def test_a_proof_made_with_the_wrong_secret_is_refused_by_the_server():
    c, s = client(), server()
    s.receive_data(wire(c), 0.0)
    c.receive_data(wire(s), 0.0)
    [proof] = envelopes(wire(c))
    proof.proof.mac = bytes(32)
    with pytest.raises(AuthenticationFailed, match="wrong shared secret"):
        s.receive_data(framed(proof), 0.0)
    assert closed_with(s, wire(s)) == "wrong shared secret: the proof does not match"


def test_a_recorded_hello_and_proof_do_not_open_another_handshake():
    c, s = client(), server()
    hello = wire(c)
    s.receive_data(hello, 0.0)
    c.receive_data(wire(s), 0.0)
    proof = wire(c)
    again = server()  # replayed to a new handshake: it challenges with a new nonce
    again.receive_data(hello, 0.0)
    wire(again)
    with pytest.raises(AuthenticationFailed, match="wrong shared secret"):
        again.receive_data(proof, 0.0)


def test_a_client_without_the_secret_is_refused_at_its_hello():
    c, s = client(None), server()
    with pytest.raises(AuthenticationFailed, match="requires authentication with a shared secret"):
        s.receive_data(wire(c), 0.0)
    closed_with(s, wire(s))


def test_a_client_with_a_secret_refuses_a_server_that_does_not_ask_for_it():
    c, s = client(), server(None)
    s.receive_data(wire(c), 0.0)  # a server without a secret ignores the nonce
    with pytest.raises(AuthenticationFailed, match="the server did not prove it knows the shared"):
        c.receive_data(wire(s), 0.0)
    closed_with(c, wire(c))


def test_a_challenge_to_a_client_that_offered_none_is_a_protocol_error():
    c, s = client(None), server()
    hello = envelopes(wire(c))[0]
    hello.hello.auth_nonce = b"n" * 16  # someone else's nonce
    s.receive_data(framed(hello), 0.0)
    with pytest.raises(RemoteProtocolError, match="offered no authentication"):
        c.receive_data(wire(s), 0.0)


def test_a_resume_is_asked_only_after_the_proof():
    first_c, first_s = client(), server()
    first_s.receive_data(wire(first_c), 0.0)
    first_c.receive_data(wire(first_s), 0.0)
    first_s.receive_data(wire(first_c), 0.0)
    first_c.receive_data(wire(first_s), 0.0)
    c = Session(Role.CLIENT, peer_id="c", secret=SECRET, reliability=first_c.reliability,
                resume_session_id="S")
    c.start(0.0)
    s = server()
    assert s.receive_data(wire(c), 0.0) == []  # a Challenge first, no ResumeRequested
    c.receive_data(wire(s), 0.0)
    [asked] = s.receive_data(wire(c), 0.0)
    assert type(asked) is ev.ResumeRequested
    opened = s.accept_resume(first_s.reliability)
    assert opened.resumed and s.authenticated


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Session(Role.SERVER, peer_id="s", secret=b"short")


# ------------------------------------------------------------------ fuzz

_frames = st.one_of(
    st.builds(lambda nonce: _env(hello=dict(version=1, auth_nonce=nonce)), st.binary(max_size=40)),
    st.builds(lambda mac: _env(proof=dict(mac=mac)), st.binary(max_size=40)),
    st.builds(lambda nonce, proof: _env(challenge=dict(nonce=nonce, server_proof=proof)),
              st.binary(max_size=40), st.binary(max_size=40)),
    st.builds(lambda: _env(welcome=dict(version=1, session_id="S"))),
    st.builds(lambda: _env(request=dict(call_id=1, method="/m"))),
    st.binary(max_size=64).map(lambda junk: frame_header(len(junk)) + junk),
)


def _env(**fields):
    env = wire_pb2.Envelope()
    for kind, values in fields.items():
        getattr(env, kind).SetInParent()
        for name, value in values.items():
            setattr(getattr(env, kind), name, value)
    return framed(env)


def _feed(session, frames):
    """Feed `frames` until the session refuses or closes; it must never open."""
    try:
        for data in frames:
            session.receive_data(data, 0.0)
            if session.state is State.CLOSED:
                break
    except RemoteProtocolError:
        assert session.state is State.CLOSED  # refused, with a Close saying why
    assert session.state is not State.OPEN and not session.authenticated


@settings(max_examples=300, deadline=None)
@given(st.lists(_frames, min_size=1, max_size=6))
def test_no_sequence_of_frames_opens_an_authenticating_server_without_the_secret(frames):
    _feed(server(), frames)


@settings(max_examples=300, deadline=None)
@given(st.lists(_frames, min_size=1, max_size=6))
def test_no_sequence_of_frames_opens_an_authenticating_client_without_the_secret(frames):
    c = client()
    wire(c)  # its Hello went out
    _feed(c, frames)


def _hex(text):
    return bytes.fromhex(" ".join(text.split()))


SPEC_HELLO = _hex("""00 00 00 31 b2 01 2e 08 01 12 0c 0a 02 63 31 12 04 74 72 61 79 18 2a
                     1a 05 08 e8 07 10 03 20 80 80 80 08
                     3a 10 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f""")
SPEC_CHALLENGE = _hex("""00 00 00 37 c2 01 34 0a 10 10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f
                         12 20 86 f8 0b c1 96 18 6c e8 ca 32 9a 1c f7 46 2b 6a ae a1 7e c8 27 dc
                         31 54 b2 59 35 6a 74 6b fe 90""")
SPEC_PROOF = _hex("""00 00 00 25 ca 01 22 0a 20 e3 b7 b2 ce 1f ee 39 75 48 09 35 3f d3 d5 ec b1
                     2e 13 9d d2 2e 3f 9c 7c f8 70 0f 85 eb 06 79 23""")


def test_worked_example_bytes_of_the_challenge():
    """Spec §4.2: the exact bytes, with the nonces the spec uses."""
    c = Session(Role.CLIENT, peer_id="c1", name="tray", pid=42,
                secret=b"correct horse battery staple")
    c._negotiation.nonce = bytes(range(16))  # the spec's nonces, not random ones
    s = Session(Role.SERVER, peer_id="s1", name="daemon", pid=7, session_id="abc",
                secret=b"correct horse battery staple")
    s._negotiation.nonce = bytes(range(16, 32))
    c.start(0.0)
    assert wire(c) == SPEC_HELLO
    s.receive_data(SPEC_HELLO, 0.0)
    assert wire(s) == SPEC_CHALLENGE
    c.receive_data(SPEC_CHALLENGE, 0.0)
    assert wire(c) == SPEC_PROOF
    [opened] = s.receive_data(SPEC_PROOF, 0.0)
    assert type(opened) is ev.Handshaken and kinds(wire(s)) == ["welcome"]


def test_a_server_can_turn_a_client_away_after_taking_its_hello():
    """An owner's own check (a token in the metadata) comes after the core's:
    the Welcome queued for the client is dropped for a Close."""
    c, s = client(None), server(None)
    [opened] = s.receive_data(wire(c), 0.0)
    assert type(opened) is ev.Handshaken
    s.refuse_hello(StatusCode.UNAUTHENTICATED, "token expired")
    assert closed_with(s, wire(s)) == "token expired"
