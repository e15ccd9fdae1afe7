"""A session id is no secret; only the client the session's Welcome went to
can resume it (issue 11: 100 % of ~1,200 takeover attempts succeeded: a
peer that learned a victim's session id from a Broadcast resumed it, took
its replies and destroyed its session).

Every Welcome carries a random resume token that no other frame and no
other peer sees; a Hello that names a session without its token is refused
with UNAUTHENTICATED and the session, its connection and its calls go on.
"""
from __future__ import annotations

import pytest
from gevent.event import Event

import onedrive_rpc as rpc
from onedrive_rpc.core import wire_pb2
from onedrive_rpc.core.reliability import Reliability
from onedrive_rpc.core.session import Role, Session
from onedrive_rpc.handshake import write_all
from onedrive_rpc.testing.echo_pb2 import Msg
from onedrive_rpc.testing.echo_service import ECHO
from onedrive_rpc.testing.helpers import read_envelopes
from onedrive_rpc.transport import connect_stream


def _try_to_resume(url: str, session_id: str, token: bytes) -> wire_pb2.Envelope:
    """Hello resuming `session_id` with `token`; the server's answer."""
    stolen = Reliability()
    stolen.resume_token = token
    session = Session(Role.CLIENT, peer_id="attacker", reliability=stolen,
                      resume_session_id=session_id)
    session.start(0.0)
    stream = connect_stream(url, timeout=5)
    try:
        write_all(stream, session.data_to_send())
        [answer] = read_envelopes(stream, 1, closed=True)
        return answer
    finally:
        stream.close()


@pytest.mark.parametrize("token", [b"", b"\0" * 16, b"guess-me-please!" * 2],
                         ids=["no-token", "zeros", "a-guess"])
def test_a_peer_that_learned_a_session_id_cannot_resume_it(served, token):
    victim = rpc.connect(served.url, timeout=5)
    attacker = rpc.connect(served.url, timeout=5)
    hooks = []
    served.on_peer_lost(lambda peer, reason: hooks.append(("lost", reason.message)))
    try:
        listener = rpc.Client(attacker, ECHO).announce.listen()
        victim_echo = rpc.Client(victim, ECHO)
        victim_echo.announce.broadcast(Msg(text="hello"), confirm=True, timeout=5)
        heard = listener.get(timeout=5)
        assert heard.publisher == victim.session_id  # what every listener learns
        in_flight = victim_echo.sleep.future(Msg(text="mine", delay=0.3), timeout=10)

        answer = _try_to_resume(served.url, heard.publisher, token)

        assert answer.WhichOneof("kind") == "close"
        assert answer.close.status.code == rpc.StatusCode.UNAUTHENTICATED
        assert answer.close.status.message.startswith(
            f"cannot resume session {victim.session_id}: the resume token does not match")
        # The victim never noticed: same session, its reply, its next call.
        assert in_flight.get(timeout=5).text == "mine"
        assert victim_echo.echo(Msg(text="still mine"), timeout=5).text == "still mine"
        assert victim.session_id == heard.publisher and not victim.closed
        assert hooks == []
    finally:
        attacker.close()
        victim.close()


def test_the_client_itself_resumes_with_its_token(served):
    """A cut connection comes back into the same session (the token travels
    in the client's Hello; a new Welcome brings a new token)."""
    peer = rpc.connect(served.url, timeout=5)
    resumed = Event()
    peer.on_resumed(lambda session_id: resumed.set())
    try:
        session_id = peer.session_id
        served.connections[0].stream.close()  # cut it from the server's side
        assert resumed.wait(10)
        assert peer.session_id == session_id
        assert rpc.Client(peer, ECHO).echo(Msg(text="back"), timeout=5).text == "back"
    finally:
        peer.close()
