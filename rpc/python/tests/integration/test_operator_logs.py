"""What an operator reads in the log (issue 14, part 5): one INFO line per
notable event of a peer, naming it and its session, under a logger below
`onedrive_rpc` per module; nothing per call above DEBUG."""
from __future__ import annotations

import logging

import onedrive_rpc as rpc
from onedrive_rpc.testing.echo_pb2 import Msg
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.helpers import wait_until


def _lines(caplog, since=0):
    return [(r.name, r.levelno, r.getMessage()) for r in caplog.records[since:]
            if r.name.startswith("onedrive_rpc") and r.levelno >= logging.INFO]


def test_connect_calls_loss_resume_and_close_each_log_one_line_with_peer_and_session(
        servers, caplog):
    caplog.set_level(logging.INFO, logger="onedrive_rpc")
    server = servers("tcp://127.0.0.1:0", EchoService(), name="daemon")
    peer = rpc.connect(server.url, name="tray", timeout=5)
    try:
        session = peer.session_id
        wait_until(lambda: any("connected: tray" in m for _, _, m in _lines(caplog)))
        [(name, level, connected)] = [line for line in _lines(caplog) if "connected:" in line[2]]
        assert name == "onedrive_rpc.server" and level == logging.INFO
        [record] = [r for r in caplog.records if r.getMessage().startswith("connected:")]
        # The same as record attributes, for JSON or key=value formatters.
        assert (record.peer, record.session_id) == ("tray", session)
        assert record.peer_address.startswith("127.0.0.1:")
        assert f"connected: tray, session {session}, from 127.0.0.1:" in connected

        before = len(caplog.records)
        client = rpc.Client(peer, ECHO)
        for i in range(20):
            assert client.echo(Msg(text=str(i)), timeout=5).text == str(i)
        assert _lines(caplog, before) == [], "nothing per call above DEBUG"

        resumed = []
        peer.on_resumed(resumed.append)
        server.connections[0].stream.close()  # cut it from the server's side
        wait_until(lambda: resumed == [session], timeout=10)
        wait_until(lambda: sum("resumed: " in m for _, _, m in _lines(caplog, before)) == 2)
        lines = _lines(caplog, before)
        assert {m.split(",")[0] for _, _, m in lines if m.startswith("lost: ")} == {
            "lost: tray", "lost: daemon"}  # the server's line names the client, and back
        assert all(f"session {session}" in m for _, _, m in lines)
        assert {name for name, _, _ in lines} == {"onedrive_rpc.driver.connection"}
    finally:
        peer.close()
    wait_until(lambda: any(m.startswith("disconnected: tray") for _, _, m in _lines(caplog)))


def test_refusals_and_dead_letters_name_the_peer_and_session_and_are_rate_limited(
        servers, peers, caplog):
    caplog.set_level(logging.INFO, logger="onedrive_rpc")
    server = servers("tcp://127.0.0.1:0", EchoService(),
                     authorize=lambda identity, action, method, target: action != "publish")
    server.configure_queue("/onedrive_rpc.testing.Echo/Work", max_attempts=1)
    worker = peers(server.url, name="worker")
    echo = rpc.Client(worker, ECHO)
    echo.work.consume(lambda task, context: 1 / 0, prefetch=10, timeout=5)
    before = len(caplog.records)
    for i in range(20):
        echo.work.produce(Msg(text=str(i)), timeout=5)
    wait_until(lambda: len(server.dead_letters("/onedrive_rpc.testing.Echo/Work")) == 20)
    dead = [m for _, level, m in _lines(caplog, before) if m.startswith("dead letter")]
    assert len(dead) == 1, dead  # twenty poison tasks: one line (a flood would be 20)
    assert (f"the last by worker, session {worker.session_id}, from 127.0.0.1:" in dead[0]
            and "ZeroDivisionError" in dead[0])
    [record] = [r for r in caplog.records[before:] if r.getMessage().startswith("dead letter")]
    assert (record.peer, record.session_id) == ("worker", worker.session_id)
    before = len(caplog.records)
    for i in range(20):
        try:
            echo.changed.publish("drive.x", Msg(text=str(i)), confirm=True, timeout=5)
        except rpc.RpcError as exc:
            assert exc.code == rpc.StatusCode.PERMISSION_DENIED
    refused = [(level, m) for _, level, m in _lines(caplog, before) if m.startswith("refused")]
    assert len(refused) == 1, refused
    level, message = refused[0]
    assert level == logging.WARNING
    assert f"to worker, session {worker.session_id}, from 127.0.0.1:" in message
