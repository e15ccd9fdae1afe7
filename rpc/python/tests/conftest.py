"""Shared fixtures: transports to parametrise over, servers in and out of process.

Every test runs under pytest-timeout (tox.ini), and an exception that
escapes any greenlet fails the test that caused it.
"""
from __future__ import annotations

import itertools
import os

import gevent
import pytest
from gevent.hub import get_hub

import onedrive_rpc as rpc
from onedrive_rpc.transport.tls import TlsTransport
from onedrive_rpc.logs import Throttled
from onedrive_rpc.testing.echo_service import EchoService
from onedrive_rpc.testing.helpers import TEST_TLS_ENV, use_test_certificates
from onedrive_rpc.testing.process import ServerProcess

TRANSPORTS = ["tcp", "tls", "unix", "inproc"]
_names = itertools.count()


@pytest.fixture(autouse=True)
def fresh_warnings():
    """Each test sees the first of each rate-limited warning."""
    Throttled.forget_all()


@pytest.fixture(autouse=True)
def greenlet_errors():
    """Fail the test if a greenlet died of an unexpected exception."""
    hub = get_hub()
    errors = []
    original = hub.handle_error

    def handle_error(context, type_, value, tb):
        if not issubclass(type_, (gevent.GreenletExit,) + hub.SYSTEM_ERROR):
            errors.append((context, type_, value))
        return original(context, type_, value, tb)

    hub.handle_error = handle_error
    try:
        yield errors
    finally:
        hub.handle_error = original
    assert not errors, f"greenlets failed: {errors}"


def make_url(transport: str, tmp_path) -> str:
    n = next(_names)
    if transport in ("tcp", "tls"):
        return f"{transport}://127.0.0.1:0"
    if transport == "unix":
        return f"unix://{tmp_path}/s{n}.sock"
    return f"inproc://test-{os.getpid()}-{n}"


@pytest.fixture(scope="session")
def certificates(tmp_path_factory):
    """A test CA (trustme: made now, never committed) and what it issued,
    as PEM files: ca.pem, server.pem (key and chain for 127.0.0.1, ::1 and
    localhost), client.pem (CN "client-1")."""
    import trustme

    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    ca.issue_cert("127.0.0.1", "::1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(directory / "server.pem"))
    ca.issue_cert("client-1@example.test", common_name="client-1"
                  ).private_key_and_cert_chain_pem.write_to_path(str(directory / "client.pem"))
    return directory


@pytest.fixture(params=TRANSPORTS)
def transport(request) -> str:
    if request.param == "tls":
        # Servers and clients that give no tls= (every test written for all
        # transports), here and in child processes, use the test certificates.
        directory = str(request.getfixturevalue("certificates"))
        use_test_certificates(directory)
        monkeypatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setenv(TEST_TLS_ENV, directory)
        request.addfinalizer(lambda: rpc.register_transport("tls", TlsTransport))
    return request.param


@pytest.fixture
def url(transport, tmp_path) -> str:
    """A fresh address to listen on, for each transport."""
    return make_url(transport, tmp_path)


@pytest.fixture
def local_server(url):
    """An EchoService served in this process."""
    server = rpc.Server(url)
    service = EchoService()
    server.add_service(service)
    server.start()
    server.service = service
    yield server
    server.stop()


@pytest.fixture
def remote_url(transport, tmp_path):
    """An EchoService in a child process for tcp/unix; in this process for inproc
    (which cannot cross processes)."""
    url = make_url(transport, tmp_path)
    if transport == "inproc":
        server = rpc.Server(url)
        server.add_service(EchoService())
        server.start()
        yield server.url
        server.stop()
    else:
        with ServerProcess(url) as proc:
            yield proc.url


@pytest.fixture
def servers():
    """servers(url, service, **options) -> a started rpc.Server of
    `service`, stopped after the test."""
    started = []

    def serve(url, service, **options):
        server = rpc.Server(url, **options)
        server.add_service(service)
        started.append(server.start())
        return server

    yield serve
    for server in started:
        server.stop()


@pytest.fixture
def served(servers):
    """An EchoService on loopback TCP in this process, keeping a broken
    connection's session 5 s for a resume."""
    return servers("tcp://127.0.0.1:0", EchoService(), session_grace=5.0)


@pytest.fixture
def peers():
    """Peers a test opens through this fixture are closed after it."""
    opened = []

    def connect(url, **kwargs):
        peer = rpc.connect(url, **kwargs)
        opened.append(peer)
        return peer

    yield connect
    for peer in opened:
        peer.close()


@pytest.fixture
def server_process(transport, tmp_path):
    """A child process serving EchoService, to kill or freeze (tcp and unix)."""
    if transport == "inproc":
        pytest.skip("inproc cannot cross processes")
    with ServerProcess(make_url(transport, tmp_path)) as proc:
        yield proc
