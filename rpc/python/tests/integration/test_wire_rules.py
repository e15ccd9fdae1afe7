"""Rules of the wire protocol an implementer in another language tripped
on (issue 13), each through a real server and raw frames: a method name
that is not one, a resume claiming frames never sent, the connection a
resume replaces, serve-echo stopped with Ctrl-C."""
from __future__ import annotations

import signal

import pytest

import onedrive_rpc as rpc
from onedrive_rpc.core.pattern_frames import Produce
from onedrive_rpc.core.reliability import Reliability
from onedrive_rpc.core.session import Role, Session
from onedrive_rpc.driver.connection import REPLACED
from onedrive_rpc.handshake import write_all
from onedrive_rpc.testing.echo_pb2 import Msg
from onedrive_rpc.testing.echo_service import ECHO
from onedrive_rpc.testing.helpers import framed, read_envelopes, wait_until
from onedrive_rpc.testing.process import ServerProcess
from onedrive_rpc.transport import connect_stream


class RawClient:
    """A client Session over a real stream, driven by hand."""

    def __init__(self, url: str, session: Session) -> None:
        self.session = session
        self.stream = connect_stream(url, timeout=5)
        session.start(0.0)
        self.flush()

    def flush(self) -> None:
        write_all(self.stream, self.session.data_to_send())

    def frames(self, count: int, closed: bool = False):
        envs = read_envelopes(self.stream, count, closed=closed)
        return [e for e in envs if e.WhichOneof("kind") != "heartbeat"]

    def close(self) -> None:
        self.stream.close()


def _open(url: str) -> RawClient:
    client = RawClient(url, Session(Role.CLIENT, peer_id="raw"))
    [welcome] = client.frames(1)
    client.session.receive_data(framed(welcome), 0.0)
    return client


@pytest.mark.parametrize("method", ["onedrive_rpc.testing.Echo/Echo", "Echo", "/a/b/c", "/ x/y"])
def test_a_method_name_that_is_not_one_is_invalid_argument_naming_the_form(served, method):
    client = _open(served.url)
    try:
        client.session.send_request(1, method, Msg(text="x").SerializeToString())
        client.session.send(Produce(method, b"", call_id=2))
        client.flush()
        answers = client.frames(2)
        expected = f"method {method!r} is not of the form /<package>.<Service>/<Method>"
        assert [(a.response.call_id, a.response.status.code, a.response.status.message)
                for a in answers] == [(1, rpc.StatusCode.INVALID_ARGUMENT, expected),
                                      (2, rpc.StatusCode.INVALID_ARGUMENT, expected)]
    finally:
        client.close()


def test_an_unknown_method_of_the_right_form_is_still_unimplemented(served):
    client = _open(served.url)
    try:
        client.session.send_request(1, "/onedrive_rpc.testing.Echo/Nope", b"")
        client.flush()
        [answer] = client.frames(1)
        assert answer.response.status.code == rpc.StatusCode.UNIMPLEMENTED
        assert answer.response.status.message == (
            "service onedrive_rpc.testing.Echo has no method 'Nope'")
    finally:
        client.close()


def test_a_resume_claiming_frames_never_sent_gets_a_close_and_no_welcome(served):
    """Spec §4.2: refused before any Welcome; the session it named goes on."""
    peer = rpc.connect(served.url, timeout=5)
    try:
        assert rpc.Client(peer, ECHO).echo(Msg(text="a"), timeout=5).text == "a"
        [conn] = served.connections
        sent = conn.session.reliability.next_seq - 1
        bogus = Reliability()
        bogus.received = sent + 1
        bogus.resume_token = conn.session.reliability.resume_token
        attempt = RawClient(served.url, Session(Role.CLIENT, peer_id="raw", reliability=bogus,
                                                resume_session_id=peer.session_id))
        try:
            [answer] = attempt.frames(1, closed=True)
        finally:
            attempt.close()
        assert answer.WhichOneof("kind") == "close"
        assert answer.close.status.code == rpc.StatusCode.INTERNAL
        assert answer.close.status.message == (
            f"protocol error: cannot resume session {peer.session_id}: the Hello says it "
            f"received seq {sent + 1}, but the last frame sent was {sent}")
        # The session, its connection and its calls are untouched.
        assert served.connections == [conn] and not conn.suspended
        assert rpc.Client(peer, ECHO).echo(Msg(text="b"), timeout=5).text == "b"
    finally:
        peer.close()


def test_the_connection_a_resume_replaces_is_told_why_with_a_close(served):
    """Spec §4.2: not an EOF, which looks like a crash."""
    first = _open(served.url)
    try:
        [conn] = served.connections
        again = Reliability()
        again.resume_token = conn.session.reliability.resume_token
        second = RawClient(served.url, Session(Role.CLIENT, peer_id="raw", reliability=again,
                                               resume_session_id=conn.session.session_id))
        try:
            [welcome] = second.frames(1)
            assert welcome.welcome.resumed
            [close] = first.frames(1, closed=True)
            assert close.WhichOneof("kind") == "close"
            assert (close.close.status.code, close.close.status.message,
                    close.close.end_session) == (rpc.StatusCode.UNAVAILABLE, REPLACED, False)
        finally:
            second.close()
    finally:
        first.close()


def test_a_client_waits_for_a_resume_no_longer_than_the_server_keeps_its_session():
    """Spec §4.2: the Welcome says how long (session_grace_ms); a client
    that would wait a minute learns that its frozen server gives up after
    1 s, and ends the session then instead of holding it a minute."""
    with ServerProcess("tcp://127.0.0.1:0", args=["--session-grace", "1"],
                       heartbeat=(0.1, 3)) as proc:
        peer = rpc.connect(proc.url, timeout=5, reconnect=rpc.Reconnect(grace=60),
                           heartbeat=rpc.Heartbeat(interval=0.1, misses=3))
        try:
            assert rpc.Client(peer, ECHO).echo(Msg(text="hi"), timeout=5).text == "hi"
            proc.stop()  # SIGSTOP: silent; reconnecting finds nobody answering
            wait_until(lambda: peer.close_reason is not None
                       and "not resumed within 1.0s" in peer.close_reason.message, timeout=10)
        finally:
            proc.cont()
            peer.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_echo_stops_in_order_on_sigint_as_on_sigterm(tmp_path, signum):
    """Ctrl-C used to drop every connection without a Close."""
    with ServerProcess(f"unix://{tmp_path}/echo.sock") as proc:
        peer = rpc.connect(proc.url, timeout=5)
        try:
            assert rpc.Client(peer, ECHO).echo(Msg(text="hi"), timeout=5).text == "hi"
            proc.signal(signum)
            assert proc.wait(10) == 0
            wait_until(lambda: peer.closed, timeout=10)
            assert isinstance(peer.close_reason, rpc.PeerLost)
            assert "server stopped" in peer.close_reason.message
        finally:
            peer.close()
