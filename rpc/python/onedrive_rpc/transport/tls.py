"""tls://host:port — TCP with TLS 1.2+ (`tls://[::1]:5000`; port 0 picks a free port).

The standard library's `ssl` on the same non-blocking sockets as tcp://,
waited on with gevent's hub (as SocketStream does): gevent.ssl's sockets
wait inside their calls, and `send_nowait` must never wait. What a
non-blocking TLS call cannot finish it reports as SSLWantRead/WriteError;
the stream then waits, in the calling greenlet only, for the direction
TLS asked for.

A client does its TLS handshake inside connect (under the connect
timeout), so a certificate that fails verification is a TransportError
naming the URL. A server's streams come out of accept() before their
handshake, which runs at the first read or write: in the server's
per-connection admission greenlet, under its handshake timeout, never in
the accept loop.
"""
from __future__ import annotations

import errno
import re
import socket
import ssl
from typing import Any, List, Optional, Sequence
from urllib.parse import SplitResult

import gevent

from ..errors import TransportError
from ..tls import TlsSetting, client_context, server_context
from .base import Buffer, ConnectionClosed, Listener, SecureTransport, Stream
from .sockets import SocketListener, SocketStream
from .tcp import connect_tcp, format_address, listen_tcp

__all__ = ["TlsStream", "TlsTransport"]

_READ = 1
_WRITE = 2
#: Bytes one send_nowait hands to TLS at most (ssl has no sendmsg, so
#: buffers are joined): a few records' worth, so a join copies little.
_MAX_SEND = 256 * 1024


class TlsStream(SocketStream):
    """A TLS connection over a non-blocking socket.

    The reading greenlet and the writing side each have their own pair of
    watchers, since TLS may make a read wait for the socket to be writable
    and a write wait for it to be readable, and a watcher has one waiter.
    """

    def __init__(self, sock: ssl.SSLSocket, address: str) -> None:
        super().__init__(sock, address)
        self._tls = sock
        loop = self._hub.loop
        fd = sock.fileno()
        # The reader's other direction, and the writer's.
        self._read_wants_write = loop.io(fd, _WRITE)
        self._write_wants_read = loop.io(fd, _READ)
        self._watchers += [self._read_wants_write, self._write_wants_read]
        #: What the last write that could not finish waits for.
        self._write_blocked_on = self._write_watcher
        self._handshaken = False

    def handshake(self) -> None:
        """Finish the TLS handshake, waiting in this greenlet;
        ConnectionClosed (saying why) if it fails."""
        while not self._handshaken:
            wants = self._handshake_step()
            if wants == _READ:
                self._wait(self._read_watcher)
            elif wants == _WRITE:
                self._wait(self._read_wants_write)

    def _handshake_step(self) -> int:
        """Advance the handshake without waiting: 0 once done, else the
        direction it waits for."""
        if self._closed:
            raise ConnectionClosed("stream closed")
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            return _READ
        except ssl.SSLWantWriteError:
            return _WRITE
        except (OSError, ValueError) as exc:
            raise ConnectionClosed(f"TLS handshake failed: {describe(exc)}") from exc
        self._handshaken = True
        # Empty when the peer's certificate was not verified (none asked for).
        self.certificate = self._tls.getpeercert() or None
        return 0

    def recv_into(self, buffer: memoryview) -> int:
        self.handshake()
        while True:
            try:
                return self._tls.recv_into(buffer)
            except ssl.SSLWantReadError:
                watcher = self._read_watcher
            except ssl.SSLWantWriteError:
                watcher = self._read_wants_write
            except (OSError, ValueError) as exc:
                if self._closed:
                    raise ConnectionClosed("stream closed") from None
                raise ConnectionClosed(f"connection broken: {describe(exc)}") from exc
            self._wait(watcher)

    def send_nowait(self, buffers: Sequence[Buffer]) -> int:
        if self._closed:
            raise ConnectionClosed("stream closed")
        if not self._handshaken:
            wants = self._handshake_step()
            if wants:
                self._write_blocked_on = (self._write_wants_read if wants == _READ
                                          else self._write_watcher)
                return 0
        if not buffers:
            return 0
        data = _joined(buffers)
        try:
            # After a Want error, OpenSSL must see the same bytes again (it
            # may have sent part of them): the caller still holds them
            # untaken at the front, and _joined takes at least as many.
            return self._tls.send(data)
        except ssl.SSLWantWriteError:
            self._write_blocked_on = self._write_watcher
        except ssl.SSLWantReadError:
            self._write_blocked_on = self._write_wants_read
        except (OSError, ValueError) as exc:
            if self._closed:
                raise ConnectionClosed("stream closed") from None
            raise ConnectionClosed(f"connection broken: {describe(exc)}") from exc
        return 0

    def wait_writable(self) -> None:
        watcher, self._write_blocked_on = self._write_blocked_on, self._write_watcher
        self._wait(watcher)

    def shutdown_write(self) -> None:
        # A TLS connection has no half-close (ssl's shutdown() drops the TLS
        # state); the peer reads EOF when the stream closes.
        pass


def _joined(buffers: Sequence[Buffer]) -> Buffer:
    """The front of `buffers`, up to _MAX_SEND bytes (at least the first)."""
    first = buffers[0]
    if len(buffers) == 1 or len(first) >= _MAX_SEND:
        return memoryview(first)[:_MAX_SEND]
    parts: List[Buffer] = []
    size = 0
    for buf in buffers:
        if size + len(buf) > _MAX_SEND:
            parts.append(memoryview(buf)[:_MAX_SEND - size])
            break
        parts.append(buf)
        size += len(buf)
    return b"".join(parts)


_SSL_LOCATION = re.compile(r"\s*\(_ssl\.c:\d+\)$")


def describe(exc: BaseException) -> str:
    """What went wrong in TLS, in words ("certificate verify failed: ...")."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return "the peer closed the connection (is it a tls:// peer, and does it accept us?)"
    if isinstance(exc, ssl.SSLError):
        text = exc.args[1] if len(exc.args) > 1 else str(exc)
        return _SSL_LOCATION.sub("", str(text))
    return getattr(exc, "strerror", None) or str(exc)


class TlsTransport(SecureTransport):
    """tls:// URLs. `server` and `client` are the settings used when
    rpc.Server and rpc.connect give no `tls=`: by default a server has
    none (it needs its certificate) and a client trusts the system's CAs.
    """

    def __init__(self, server: Optional[TlsSetting] = None,
                 client: Optional[TlsSetting] = None) -> None:
        self._server = server
        self._client = client

    def connect(self, url: SplitResult, timeout: Optional[float]) -> Stream:
        return self.connect_tls(url, timeout, self._client)

    def listen(self, url: SplitResult) -> Listener:
        if self._server is None:
            raise ValueError(f"a tls:// server needs its certificate: rpc.Server({url.geturl()!r}, "
                             f"tls=rpc.TLS(certfile=..., keyfile=...))")
        return self.listen_tls(url, self._server)

    def connect_tls(self, url: SplitResult, timeout: Optional[float], tls: Any) -> Stream:
        context, server_hostname = client_context(tls)
        where = url.geturl()
        with gevent.Timeout(timeout, TransportError(
                errno.ETIMEDOUT, f"connecting to {where} timed out after {timeout}s")):
            sock = connect_tcp(url, timeout)
            try:
                address = format_address(sock.getpeername())
                tls_sock = context.wrap_socket(sock, do_handshake_on_connect=False,
                                               server_hostname=server_hostname or url.hostname)
            except BaseException:
                sock.close()
                raise
            stream = TlsStream(tls_sock, address)
            try:
                stream.handshake()
            except ConnectionClosed as exc:
                stream.close()
                # rpc.connect says "cannot connect to <url>: " before it.
                raise TransportError(errno.EPROTO, str(exc)) from exc
            except BaseException:
                stream.close()
                raise
        return stream

    def listen_tls(self, url: SplitResult, tls: Any) -> Listener:
        context = server_context(tls)
        sock = listen_tcp(url)

        def secure(conn: socket.socket, addr: Any) -> Stream:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # The handshake waits for the first read or write (see above).
            return TlsStream(context.wrap_socket(conn, server_side=True,
                                                 do_handshake_on_connect=False),
                             format_address(addr))

        return SocketListener(sock, f"tls://{format_address(sock.getsockname())}", secure)
