"""tls:// and mutual TLS: who is refused, how clearly, and that the rest goes on.

Every other integration test written for all transports also runs over
tls:// (the `transport` fixture); these are the refusals, the certificate
a handler sees, and a resume through a cut TLS connection. Certificates
come from trustme, made for each run (the `certificates` fixture).
"""
from __future__ import annotations

import dataclasses
import logging
import ssl
import time

import gevent
import pytest
import trustme
from gevent import socket
from gevent.event import AsyncResult

import onedrive_rpc as rpc
from onedrive_rpc.testing import echo_pb2
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.faults import FaultProxy
from onedrive_rpc.testing.helpers import wait_until

Msg = echo_pb2.Msg
HANDSHAKE_TIMEOUT = 2.0


class CertificateProbe(EchoService):
    """Echo that records the caller's certificate."""

    def __init__(self):
        super().__init__()
        self.certificates = []

    def echo(self, request, context):
        self.certificates.append(context.certificate)
        assert context.origin.certificate is context.certificate
        return request


@pytest.fixture
def tls_server(certificates):
    """Start a tls:// server with the test certificate (settings overridable)."""
    servers = []

    def serve(url="tls://127.0.0.1:0", service=None, **settings):
        tls = rpc.TLS(certfile=str(certificates / "server.pem"), **settings)
        server = rpc.Server(url, tls=tls, limits=rpc.Limits(handshake_timeout=HANDSHAKE_TIMEOUT))
        server.add_service(service or EchoService())
        servers.append(server.start())
        return server

    yield serve
    for server in servers:
        server.stop()


def trusting(certificates, **settings):
    return rpc.TLS(cafile=str(certificates / "ca.pem"), **settings)


def test_a_tls_client_verifies_the_server_and_calls(tls_server, certificates, peers):
    server = tls_server()
    assert server.url.startswith("tls://127.0.0.1:")
    peer = peers(server.url, tls=trusting(certificates))
    assert rpc.Client(peer, ECHO).echo(Msg(text="hi"), timeout=5).text == "hi"


def test_ipv6_works_like_tcp(tls_server, certificates, peers):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = tls_server("tls://[::1]:0")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    assert server.url.startswith("tls://[::1]:")
    peer = peers(server.url, tls=trusting(certificates))  # the name checked: ::1
    assert rpc.Client(peer, ECHO).echo(Msg(text="v6"), timeout=5).text == "v6"


def test_a_plain_client_is_refused_and_tls_clients_are_served_meanwhile(
        tls_server, certificates, peers, caplog):
    server = tls_server()
    client = rpc.Client(peers(server.url, tls=trusting(certificates)), ECHO)
    # A plain tcp client of the tls:// server, and one that says nothing.
    host, port = server.url[len("tls://"):].rsplit(":", 1)
    silent = socket.create_connection((host, int(port)))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="onedrive_rpc"):
        with pytest.raises(rpc.RpcError) as refused:
            rpc.connect(server.url.replace("tls://", "tcp://"), timeout=10, reconnect=None)
        assert time.monotonic() - started < HANDSHAKE_TIMEOUT
        assert refused.value.code == rpc.StatusCode.UNAVAILABLE
        # Meanwhile, the TLS client is served; and the silent one is closed
        # after the handshake timeout, without holding anyone up.
        assert client.echo(Msg(text="still"), timeout=5).text == "still"
        silent.settimeout(HANDSHAKE_TIMEOUT + 3)
        assert silent.recv(100) == b""
        assert client.echo(Msg(text="again"), timeout=5).text == "again"
    silent.close()
    assert any("TLS handshake failed" in r.getMessage() for r in caplog.records), \
        [r.getMessage() for r in caplog.records]


def test_a_client_trusting_another_ca_is_refused_saying_why(tls_server, tmp_path, peers):
    server = tls_server()
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with pytest.raises(rpc.RpcError) as refused:
        rpc.connect(server.url, tls=rpc.TLS(cafile=str(other)), timeout=5)
    assert refused.value.code == rpc.StatusCode.UNAVAILABLE
    assert server.url in refused.value.message
    assert "certificate verify failed: " in refused.value.message
    # By default, the system's CAs: they do not know the test CA either.
    with pytest.raises(rpc.RpcError, match="certificate verify failed"):
        rpc.connect(server.url, timeout=5)


def test_a_certificate_for_another_name_is_refused(tls_server, certificates):
    server = tls_server()
    with pytest.raises(rpc.RpcError) as refused:
        rpc.connect(server.url, tls=trusting(certificates, server_hostname="db.example.test"),
                    timeout=5)
    assert refused.value.code == rpc.StatusCode.UNAVAILABLE
    assert "certificate verify failed: Hostname mismatch" in refused.value.message
    assert "db.example.test" in refused.value.message


def test_mutual_tls_refuses_a_client_without_a_certificate_and_shows_the_subject(
        tls_server, certificates, peers):
    probe = CertificateProbe()
    server = tls_server(service=probe, cafile=str(certificates / "ca.pem"),
                        require_client_cert=True)
    with pytest.raises(rpc.RpcError) as refused:
        rpc.connect(server.url, tls=trusting(certificates), timeout=5, reconnect=None)
    assert refused.value.code == rpc.StatusCode.UNAVAILABLE
    assert "certificate required" in refused.value.message
    # A client certificate from another CA is refused too.
    stranger = trustme.CA().issue_cert("stranger@example.test", common_name="stranger")
    stranger_pem = certificates / "stranger.pem"
    stranger.private_key_and_cert_chain_pem.write_to_path(str(stranger_pem))
    with pytest.raises(rpc.RpcError):
        rpc.connect(server.url, tls=trusting(certificates, certfile=str(stranger_pem)), timeout=5,
                    reconnect=None)

    peer = peers(server.url, tls=trusting(certificates, certfile=str(certificates / "client.pem")))
    rpc.Client(peer, ECHO).echo(Msg(text="me"), timeout=5)
    (certificate,) = probe.certificates
    assert (("commonName", "client-1"),) in certificate["subject"]
    assert certificate["subjectAltName"] == (("email", "client-1@example.test"),)
    assert len(server.connections) == 1


def test_without_client_certificates_handlers_see_none(tls_server, certificates, peers):
    probe = CertificateProbe()
    server = tls_server(service=probe)
    peer = peers(server.url, tls=trusting(certificates))
    rpc.Client(peer, ECHO).echo(Msg(), timeout=5)
    assert probe.certificates == [None]


def test_a_session_resumes_over_a_cut_tls_connection(tls_server, certificates, peers):
    server = tls_server()
    proxy = FaultProxy(server.url).start()  # forwards the TLS bytes as they are
    try:
        assert proxy.url.startswith("tls://")
        resumed, server_resumed = AsyncResult(), AsyncResult()
        server.on_peer_resumed(server_resumed.set)
        peer = peers(proxy.url, tls=trusting(certificates),
                     reconnect=rpc.Reconnect(initial_delay=0.05, max_delay=0.2))
        peer.on_resumed(resumed.set)
        session = peer.session_id
        client = rpc.Client(peer, ECHO)
        futures = [client.sleep.future(Msg(text=str(i), delay=0.3), timeout=20) for i in range(5)]
        wait_until(lambda: len(server.connections) == 1 and proxy.connections == 1)
        proxy.cut()
        assert [f.get(timeout=20).text for f in futures] == [str(i) for i in range(5)]
        assert resumed.get(timeout=10) == session
        server_resumed.get(timeout=10)
        assert peer.session_id == session
        assert client.echo(Msg(text="after"), timeout=5).text == "after"
    finally:
        proxy.stop()


def test_settings_are_checked_when_made_and_at_start(certificates, tmp_path):
    with pytest.raises(dataclasses.FrozenInstanceError):
        rpc.TLS().cafile = "x"  # type: ignore[misc]
    with pytest.raises(ValueError, match="keyfile given without certfile"):
        rpc.TLS(keyfile="key.pem")
    with pytest.raises(ValueError, match="needs cafile"):
        rpc.TLS(certfile="cert.pem", require_client_cert=True)
    with pytest.raises(ValueError, match="needs its certificate"):
        rpc.Server("tls://127.0.0.1:0").start()
    with pytest.raises(ValueError, match="needs its certificate"):
        rpc.Server("tls://127.0.0.1:0", tls=rpc.TLS(cafile=str(certificates / "ca.pem"))).start()
    with pytest.raises(ValueError, match="cannot load TLS certfile"):
        rpc.Server("tls://127.0.0.1:0", tls=rpc.TLS(certfile=str(tmp_path / "none.pem"))).start()
    with pytest.raises(ValueError, match="tls= is for tls:// URLs"):
        rpc.Server("tcp://127.0.0.1:0", tls=rpc.TLS(certfile="cert.pem")).start()
    with pytest.raises(ValueError, match="tls= is for tls:// URLs"):
        rpc.connect("tcp://127.0.0.1:1", tls=rpc.TLS())


def test_a_ready_ssl_context_is_taken_as_it_is(certificates, peers):
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(str(certificates / "server.pem"))
    server = rpc.Server("tls://127.0.0.1:0", tls=server_context)
    server.add_service(EchoService())
    server.start()
    try:
        client_context = ssl.create_default_context(cafile=str(certificates / "ca.pem"))
        peer = peers(server.url, tls=client_context)
        assert rpc.Client(peer, ECHO).echo(Msg(text="ctx"), timeout=5).text == "ctx"
    finally:
        server.stop()


def test_a_stalled_tls_handshake_does_not_block_the_accept_loop(tls_server, certificates, peers):
    server = tls_server()
    host, port = server.url[len("tls://"):].rsplit(":", 1)
    # Ten connections that start TLS but never finish it.
    stalled = [socket.create_connection((host, int(port))) for _ in range(10)]
    try:
        for sock in stalled:
            sock.sendall(b"\x16\x03\x01")  # the start of a ClientHello record
        started = time.monotonic()
        with gevent.Timeout(5):
            peer = peers(server.url, tls=trusting(certificates))
            rpc.Client(peer, ECHO).echo(Msg(), timeout=5)
        assert time.monotonic() - started < 1.0
    finally:
        for sock in stalled:
            sock.close()
