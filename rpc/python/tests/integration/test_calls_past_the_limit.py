"""More calls than the server serves at once: the client waits its turn,
nobody is declared lost, nothing fails (issue 10: at 1,024 calls in
flight the server stopped reading, missed the client's heartbeats and
declared it dead; with reconnect disabled all 1,100 calls failed).

The server announces max_concurrent_calls in its Welcome; the client
queues its calls past it (HTTP/2's MAX_CONCURRENT_STREAMS). A client that
ignores the limit gets RESOURCE_EXHAUSTED for the excess, and the server
goes on reading it (heartbeats, cancels) meanwhile.
"""
from __future__ import annotations


import gevent
import pytest
from gevent import socket

import onedrive_rpc as rpc
from onedrive_rpc.core import wire_pb2
from onedrive_rpc.core.framing import FrameDecoder
from onedrive_rpc.core.session import Role, Session
from onedrive_rpc.testing.echo_pb2 import Msg
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.helpers import framed, receive_via_buffer, wait_until, wire
from onedrive_rpc.testing.process import ServerProcess

SLEEP = f"/{ECHO.full_name}/Sleep"
# A peer silent for 1.5 s is declared lost: less than the calls take (2 s),
# with room for a loaded machine's scheduling.
HEARTBEAT = rpc.Heartbeat(interval=0.5, misses=3)
LONG_CALL = 2.0


@pytest.mark.parametrize("calls", [1100, 5000])
def test_more_long_calls_than_the_server_serves_at_once_all_complete(calls):
    # The server (its own process, default limits: 1,024 calls at once)
    # would otherwise stop reading the client for a whole call.
    server = ServerProcess("tcp://127.0.0.1:0", heartbeat=(HEARTBEAT.interval, HEARTBEAT.misses))
    server.start()
    peer = rpc.connect(server.url, heartbeat=HEARTBEAT, reconnect=rpc.Reconnect(enabled=False))
    client = rpc.Client(peer, ECHO)
    answers, failures = [], []

    def one(i):
        try:
            answers.append(int(client.sleep(Msg(text=str(i), delay=LONG_CALL), timeout=90).text))
        except rpc.RpcError as exc:
            failures.append(f"{exc.code.name}: {exc.message}")

    try:
        callers = [gevent.spawn(one, i) for i in range(calls)]
        gevent.joinall(callers, timeout=90)
        assert failures[:3] == [] and len(failures) == 0
        assert sorted(answers) == list(range(calls))
        assert not peer.closed
    finally:
        peer.close()
        server.kill()


def _server(service=None, **limits):
    server = rpc.Server("tcp://127.0.0.1:0", limits=rpc.Limits(**limits),
                        heartbeat=HEARTBEAT)
    server.add_service(service or EchoService())
    return server.start()


def test_at_the_limit_a_cancel_frees_a_place_at_once():
    """Four 30 s calls fill a server that serves four at once; the caller
    gives up on one, and its next call is served at once: the server reads
    the Cancel (it does not stop reading at its limit) and no longer
    counts the cancelled call."""
    service = EchoService()
    server = _server(service, max_concurrent_calls=4)
    peer = rpc.connect(server.url, reconnect=rpc.Reconnect(enabled=False))
    client = rpc.Client(peer, ECHO)
    try:
        held = [client.sleep.future(Msg(delay=30), timeout=60) for _ in range(4)]
        wait_until(lambda: service.calls["sleep"] == 4)
        later = gevent.spawn(client.echo, Msg(text="next"), timeout=10)
        gevent.sleep(0.1)
        assert not later.ready()  # waiting its turn
        held[0].cancel()
        assert later.get(timeout=5).text == "next"
        assert not any(future.ready() for future in held[1:])
    finally:
        peer.close()
        server.stop()


def test_a_client_ignoring_the_limit_gets_resource_exhausted_and_keeps_its_session(caplog):
    """Six 1 s calls against a limit of 4, sent by a client that does not
    count: two are refused at once; the four are served; the server keeps
    reading (our heartbeats) and does not declare us lost meanwhile."""
    server = _server(max_concurrent_calls=4)
    sock = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=10)
    try:
        session = Session(Role.CLIENT, peer_id="ignores-limits", heartbeat_interval=0.2)
        session.start(0.0)
        sock.sendall(wire(session))
        while session.peer is None:
            receive_via_buffer(session, sock.recv(65536), 0.0)
        assert session.peer_max_calls == 4
        seq = session.reliability.next_seq
        for call_id in range(1, 7):
            env = wire_pb2.Envelope(seq=seq, payload=Msg(delay=1.0).SerializeToString())
            env.request.call_id = call_id
            env.request.method = SLEEP
            sock.sendall(framed(env))
            seq += 1
        answers = {}
        frames = FrameDecoder()
        heartbeat = wire_pb2.Envelope()
        heartbeat.heartbeat.sent_us = 1
        with gevent.Timeout(10):
            while len(answers) < 6:
                sock.settimeout(0.1)
                sock.sendall(framed(heartbeat))  # we are alive, and say so every 0.1 s
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    continue
                assert data, f"the server closed the connection; answers so far: {answers}"
                for frame in frames.feed(data):
                    env = wire_pb2.Envelope.FromString(bytes(frame))
                    if env.HasField("response"):
                        status = env.response.status
                        answers[env.response.call_id] = (status.code, status.message)
        refused = {call_id for call_id, (code, _) in answers.items() if code != 0}
        assert refused == {5, 6}
        assert all(answers[i][1].startswith("too many calls in flight") for i in refused)
        assert all(answers[i] == (0, "") for i in (1, 2, 3, 4))
        assert len(server.connections) == 1
        # Logged once (the second refusal within the second is counted, not logged).
        logged = [r.getMessage() for r in caplog.records if "refused call" in r.getMessage()]
        assert len(logged) == 1 and "too many calls in flight" in logged[0]
    finally:
        sock.close()
        server.stop()
