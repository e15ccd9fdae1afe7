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


@settings(max_examples=300, deadline=None)
@given(st.lists(_frames, min_size=1, max_size=6))
def test_no_sequence_of_frames_opens_an_authenticating_server_without_the_secret(frames):
    s = server()
    try:
        for data in frames:
            s.receive_data(data, 0.0)
            if s.state is State.CLOSED:
                break
    except RemoteProtocolError:
        assert s.state is State.CLOSED  # refused, with a Close saying why
    assert s.state is not State.OPEN and not s.authenticated


@settings(max_examples=300, deadline=None)
@given(st.lists(_frames, min_size=1, max_size=6))
def test_no_sequence_of_frames_opens_an_authenticating_client_without_the_secret(frames):
    c = client()
    wire(c)
    try:
        for data in frames:
            c.receive_data(data, 0.0)
            if c.state is State.CLOSED:
                break
    except RemoteProtocolError:
        assert c.state is State.CLOSED
    assert c.state is not State.OPEN and not c.authenticated
