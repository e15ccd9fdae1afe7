"""Hostile or broken bytes from one connection close only that connection:
the server keeps serving a bystander whose calls never fail."""
from __future__ import annotations

import gevent
import pytest

import onedrive_rpc as rpc
from onedrive_rpc.core import wire_pb2
from onedrive_rpc.core.framing import FrameDecoder, frame_header
from onedrive_rpc.core.session import Role, Session
from onedrive_rpc.handshake import write_all
from onedrive_rpc.testing import echo_pb2
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.transport import ConnectionClosed, connect_stream

Msg = echo_pb2.Msg


class Bystander:
    """Another client calling all along; counts what worked and what failed."""

    def __init__(self, url):
        self.peer = rpc.connect(url, timeout=5)
        self.client = rpc.Client(self.peer, ECHO)
        self.ok = 0
        self.failures = []
        self._greenlet = gevent.spawn(self._run)

    def _run(self):
        while True:
            try:
                assert self.client.echo(Msg(text="still?"), timeout=5).text == "still?"
                self.ok += 1
            except rpc.RpcError as exc:
                self.failures.append(exc)
            gevent.sleep(0.001)

    def check_still_served(self, more=20):
        target = self.ok + more
        with gevent.Timeout(10, AssertionError(f"bystander stalled at {self.ok} calls")):
            while self.ok < target:
                gevent.sleep(0.01)
        assert self.failures == []

    def stop(self):
        self._greenlet.kill()
        self.peer.close()


@pytest.fixture
def bystander(remote_url):
    watcher = Bystander(remote_url)
    watcher.check_still_served(5)
    yield watcher
    watcher.stop()


def hello(version=wire_pb2.PROTOCOL_VERSION_1) -> bytes:
    env = wire_pb2.Envelope()
    env.hello.version = version
    env.hello.identity.peer_id = "raw"
    body = env.SerializeToString()
    return frame_header(len(body)) + body


def request_frame() -> bytes:
    session = Session(Role.CLIENT, peer_id="raw")
    session.state = session.state.OPEN  # white-box: only to encode one frame
    session.send_request(1, "/onedrive_rpc.testing.Echo/Echo", Msg(data=b"z" * 1000).SerializeToString())
    return b"".join(bytes(b) for b in session.data_to_send())


def send(stream, data: bytes) -> None:
    write_all(stream, [data])


def frames_until_closed(stream, timeout=5.0):
    """Everything the server sends until it hangs up, as Envelopes."""
    decoder = FrameDecoder()
    frames = []
    with gevent.Timeout(timeout, AssertionError(f"server did not close within {timeout}s")):
        while True:
            try:
                n = stream.recv_into(decoder.get_buffer())
            except ConnectionClosed:
                break
            if n == 0:
                break
            for frame in decoder.buffer_updated(n):
                env = wire_pb2.Envelope()
                env.ParseFromString(frame)
                frames.append(env)
    stream.close()
    return frames


def close_status(frames):
    assert frames and frames[-1].WhichOneof("kind") == "close", frames
    return frames[-1].close.status


def test_garbage_bytes_close_only_that_connection(remote_url, bystander):
    stream = connect_stream(remote_url, timeout=5)
    send(stream, frame_header(10) + b"garbage!!!")
    status = close_status(frames_until_closed(stream))
    assert status.code == rpc.StatusCode.INTERNAL and "malformed envelope" in status.message
    bystander.check_still_served()


def test_oversized_frame_closes_only_that_connection(remote_url, bystander):
    stream = connect_stream(remote_url, timeout=5)
    send(stream, hello() + b"\xff\xff\xff\xf0" + b"x" * 100)
    frames = frames_until_closed(stream)
    assert frames[0].WhichOneof("kind") == "welcome"
    status = close_status(frames)
    assert "exceeds the maximum frame size of 16777216 bytes" in status.message
    bystander.check_still_served()


def test_stream_cut_mid_frame_closes_only_that_connection(remote_url, bystander):
    stream = connect_stream(remote_url, timeout=5)
    frame = request_frame()
    send(stream, hello() + frame[: len(frame) // 2])
    gevent.sleep(0)  # let the half frame go out before hanging up
    stream.close()
    bystander.check_still_served()
    # And a call cut the same way from a real client does not wedge anything.
    peer = rpc.connect(remote_url, timeout=5)
    assert rpc.Client(peer, ECHO).echo(Msg(text="fresh"), timeout=5).text == "fresh"
    peer.close()


def test_request_before_handshake_is_a_protocol_error(remote_url, bystander):
    stream = connect_stream(remote_url, timeout=5)
    send(stream, request_frame())
    status = close_status(frames_until_closed(stream))
    assert "request frame received while await_hello" in status.message
    bystander.check_still_served()


def test_protocol_version_mismatch_names_both_versions(remote_url, bystander):
    stream = connect_stream(remote_url, timeout=5)
    send(stream, hello(version=7))
    status = close_status(frames_until_closed(stream))
    assert status.code == rpc.StatusCode.FAILED_PRECONDITION
    assert "client speaks version 7, this server speaks version 1" in status.message
    bystander.check_still_served()


def test_silent_connection_is_closed_after_the_handshake_timeout(url, caplog):
    server = rpc.Server(url, limits=rpc.Limits(handshake_timeout=0.3))
    server.add_service(EchoService())
    server.start()
    try:
        stream = connect_stream(server.url, timeout=5)
        status = close_status(frames_until_closed(stream, timeout=3))
        assert status.code == rpc.StatusCode.DEADLINE_EXCEEDED
        assert "no handshake within 0.3s" in status.message
        assert "no handshake within 0.3s" in caplog.text
    finally:
        server.stop()


def test_connections_over_the_limit_are_refused_clearly(url, peers):
    server = rpc.Server(url, limits=rpc.Limits(max_connections=2))
    server.add_service(EchoService())
    server.start()
    try:
        first, second = peers(server.url), peers(server.url)
        with pytest.raises(rpc.RpcError) as info:
            peers(server.url)
        assert info.value.code == rpc.StatusCode.RESOURCE_EXHAUSTED
        assert "too many connections (2)" in info.value.message
        assert rpc.Client(first, ECHO).echo(Msg(text="1"), timeout=5).text == "1"
        assert rpc.Client(second, ECHO).echo(Msg(text="2"), timeout=5).text == "2"
    finally:
        server.stop()


def test_oversized_frame_is_logged_clearly(url, caplog):
    server = rpc.Server(url)
    server.add_service(EchoService())
    server.start()
    try:
        stream = connect_stream(server.url, timeout=5)
        send(stream, hello() + b"\x7f\xff\xff\xff")
        frames_until_closed(stream)
        assert "frame of 2147483647 bytes exceeds the maximum frame size" in caplog.text
    finally:
        server.stop()
