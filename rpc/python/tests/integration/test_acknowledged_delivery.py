"""Acknowledgements flow on real connections, and the resend buffer is
bounded: a peer that stops acknowledging stops its senders, not our memory."""
from __future__ import annotations

import gevent
import pytest

import onedrive_rpc as rpc
from onedrive_rpc.testing.helpers import wait_until
from onedrive_rpc.core.session import Role, Session
from onedrive_rpc.testing import echo_pb2
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.transport import ConnectionClosed, listen

Msg = echo_pb2.Msg


def test_both_sides_forget_what_the_other_acknowledged(url, peers):
    server = rpc.Server(url)
    server.add_service(EchoService())
    server.start()
    try:
        peer = peers(server.url)
        client = rpc.Client(peer, ECHO)
        for i in range(200):
            assert client.echo(Msg(data=b"x" * 1000), timeout=5).data == b"x" * 1000
        ours = peer._connection.session
        theirs = server.connections[0].session
        # Every answer acknowledged our requests; the last answer is acked by
        # the delayed ack within a few ticks.
        wait_until(lambda: ours.unacked_bytes == 0 and theirs.unacked_bytes == 0)
        assert ours.reliability.next_seq - 1 == theirs.reliability.received == 200
        assert theirs.reliability.next_seq - 1 == ours.reliability.received == 200
    finally:
        server.stop()


class SilentServer:
    """Handshakes, then reads everything and acknowledges nothing until told."""

    def __init__(self, url):
        self.listener = listen(url)
        self.url = self.listener.url
        self.session = None
        self.stream = None
        self.requests = 0
        self.greenlet = gevent.spawn(self._serve)

    def _serve(self):
        self.stream = self.listener.accept()
        self.session = Session(Role.SERVER, peer_id="silent", session_id="S",
                               heartbeat_interval=60.0)
        try:
            while True:
                n = self.stream.recv_into(self.session.get_buffer())
                if n == 0:
                    return
                events = self.session.buffer_updated(n, 0.0)  # time stands still: no acks due
                self.requests += sum(1 for e in events if type(e).__name__ == "RequestReceived")
                self._send_only_handshake()
        except ConnectionClosed:
            return

    def _send_only_handshake(self):
        data = self.session.data_to_send()
        if data and self.session.reliability.ack_sent == 0:
            self.stream.send_nowait(data)  # the Welcome (it carries no ack)

    def ack_everything(self):
        self.session.tick(1.0)  # the owed ack is due: a heartbeat carries it
        self.stream.send_nowait(self.session.data_to_send(1.0))

    def close(self):
        self.greenlet.kill()
        if self.stream is not None:
            self.stream.close()
        self.listener.close()


def test_a_peer_that_does_not_acknowledge_blocks_senders_not_memory(url):
    if url.startswith("inproc"):
        pytest.skip("the silent server drives a real socket session by hand")
    silent = SilentServer(url)
    limit = 64 * 1024
    peer = rpc.connect(silent.url, limits=rpc.Limits(max_queued_bytes=limit),
                       heartbeat=rpc.Heartbeat(interval=60.0))
    try:
        client = rpc.Client(peer, ECHO)
        session = peer._connection.session
        futures = [client.echo.future(Msg(data=b"y" * 1000)) for _ in range(10)]
        callers = [gevent.spawn(client.echo, Msg(data=b"z" * 1000)) for _ in range(200)]
        # ~64 requests fit the resend buffer; then every other caller waits.
        wait_until(lambda: silent.requests >= limit // 1100)
        gevent.sleep(0)
        sent = session.reliability.next_seq - 1
        assert limit < session.unacked_bytes <= limit + 1100
        assert sent < 100 and silent.requests == sent
        assert sum(1 for c in callers if not c.dead) == 200
        assert all(not f.ready() for f in futures)
        # One ack frees the buffer: the waiting callers send on.
        silent.ack_everything()
        wait_until(lambda: silent.requests > sent)
        assert session.unacked_bytes <= limit + 1100
    finally:
        gevent.killall(callers)
        peer._connection.abort(rpc.PeerLost("test over"))
        silent.close()
