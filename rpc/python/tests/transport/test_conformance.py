"""One suite, every transport: streams must behave alike for the layers above."""
from __future__ import annotations

import errno
import os
import socket
import stat

import gevent
import pytest

import onedrive_rpc as rpc
from onedrive_rpc.errors import TransportError
from onedrive_rpc.handshake import write_all
from onedrive_rpc.testing import echo_pb2
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.transport import ConnectionClosed, connect_stream, listen
from onedrive_rpc.transport.inproc import InprocTransport
from onedrive_rpc.transport.tls import TlsStream


@pytest.fixture
def pair(url):
    listener = listen(url)
    accepted = gevent.spawn(_accept, listener)
    client = connect_stream(listener.url, timeout=5)
    server = accepted.get(timeout=5)
    yield client, server
    client.close()
    server.close()
    listener.close()


def _accept(listener):
    stream = listener.accept()
    if isinstance(stream, TlsStream):
        # A server's TLS handshake waits for the stream's first read or
        # write (the server's admission greenlet); here, it happens now.
        stream.handshake()
    return stream


def send_all(stream, data):
    write_all(stream, [data])


def recv_exactly(stream, size):
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = stream.recv_into(view[got:])
        if n == 0:
            raise EOFError(f"EOF after {got} of {size} bytes")
        got += n
    return bytes(buf)


def test_bytes_flow_both_ways_in_order(pair):
    client, server = pair
    send_all(client, b"ping")
    assert recv_exactly(server, 4) == b"ping"
    assert client.send_nowait([b"a", b"bc", memoryview(b"def")]) == 6
    assert recv_exactly(server, 6) == b"abcdef"
    send_all(server, b"pong")
    assert recv_exactly(client, 4) == b"pong"


def test_large_transfer_with_backpressure(pair):
    client, server = pair
    data = os.urandom(1024 * 1024) * 8
    writer = gevent.spawn(send_all, client, data)
    assert recv_exactly(server, len(data)) == data
    writer.get(timeout=10)


def test_peer_close_reads_as_eof(pair):
    client, server = pair
    send_all(client, b"last words")
    client.close()
    assert recv_exactly(server, 10) == b"last words"
    with gevent.Timeout(5):
        assert server.recv_into(memoryview(bytearray(10))) == 0


def outcome(func, *args):
    """Run func in a greenlet that returns, rather than dies of, its exception."""
    def run():
        try:
            return func(*args)
        except Exception as exc:
            return exc
    return gevent.spawn(run)


def test_close_wakes_a_blocked_reader(pair):
    client, _ = pair
    reader = outcome(client.recv_into, memoryview(bytearray(10)))
    gevent.sleep(0)  # one loop pass: it runs until it blocks
    assert not reader.ready()
    client.close()
    assert isinstance(reader.get(timeout=5), ConnectionClosed)


def test_sending_on_a_closed_stream_fails(pair):
    client, _ = pair
    client.close()
    with pytest.raises(ConnectionClosed):
        client.send_nowait([b"x"])


def test_closing_the_listener_wakes_accept(url):
    listener = listen(url)
    acceptor = outcome(listener.accept)
    gevent.sleep(0)  # one loop pass: it runs until it blocks
    assert not acceptor.ready()
    listener.close()
    assert isinstance(acceptor.get(timeout=5), ConnectionClosed)


def test_connecting_to_nobody_fails_clearly(url):
    listener = listen(url)
    address = listener.url
    listener.close()
    with pytest.raises(OSError):
        connect_stream(address, timeout=5)
    with pytest.raises(rpc.PeerLost, match="cannot connect"):
        rpc.connect(address, timeout=5)


def test_unknown_scheme_and_bad_urls():
    with pytest.raises(ValueError, match="no transport for scheme 'carrier'"):
        connect_stream("carrier://pigeon")
    with pytest.raises(ValueError, match="not a URL"):
        listen("127.0.0.1:5000")
    with pytest.raises(ValueError, match="absolute path"):
        listen("unix://relative.sock")
    with pytest.raises(ValueError, match="needs a host and a port"):
        listen("tcp://127.0.0.1")


def test_tcp_port_zero_reports_the_real_port():
    server = rpc.Server("tcp://127.0.0.1:0")
    server.start()
    try:
        port = int(server.url.rsplit(":", 1)[1])
        assert port > 0 and server.url == f"tcp://127.0.0.1:{port}"
    finally:
        server.stop()


def test_tcp_over_ipv6_loopback(peers):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = rpc.Server("tcp://[::1]:0")
        server.add_service(EchoService())
        server.start()
    except OSError as exc:
        pytest.skip(f"::1 unavailable: {exc}")
    try:
        assert server.url.startswith("tcp://[::1]:")
        client = rpc.Client(peers(server.url), ECHO)
        assert client.echo(echo_pb2.Msg(text="v6"), timeout=5).text == "v6"
    finally:
        server.stop()


def test_unix_socket_is_owner_only_and_removed_after(tmp_path):
    path = tmp_path / "owner.sock"
    listener = listen(f"unix://{path}")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600, oct(mode)
    listener.close()
    assert not path.exists()


def test_unix_stale_socket_file_is_replaced(tmp_path):
    path = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))  # a server that died without cleaning up
    dead.close()
    assert path.exists()
    listener = listen(f"unix://{path}")
    listener.close()


def test_unix_live_socket_and_other_files_are_not_touched(tmp_path):
    path = tmp_path / "live.sock"
    first = listen(f"unix://{path}")
    try:
        with pytest.raises(TransportError) as info:
            listen(f"unix://{path}")
        assert info.value.errno == errno.EADDRINUSE
    finally:
        first.close()
    regular = tmp_path / "data.txt"
    regular.write_text("precious")
    with pytest.raises(TransportError, match="not a socket"):
        listen(f"unix://{regular}")
    assert regular.read_text() == "precious"


def test_a_registered_scheme_serves_rpc(peers):
    class Tunnel(InprocTransport):
        """A third party's transport; here inproc under another name."""

    rpc.register_transport("tunnel", Tunnel)
    server = rpc.Server("tunnel://svc")
    server.add_service(EchoService())
    server.start()
    try:
        assert server.url == "inproc://svc"  # the listener names itself
        client = rpc.Client(peers("tunnel://svc"), ECHO)
        assert client.echo(echo_pb2.Msg(text="via tunnel"), timeout=5).text == "via tunnel"
    finally:
        server.stop()
    with pytest.raises(TypeError):
        rpc.register_transport("bad", object())
