"""tcp://host:port — TCP over IPv4 or IPv6 (`tcp://[::1]:5000`); port 0 picks a free port."""
from __future__ import annotations

import ipaddress
import socket
from typing import Optional, Tuple
from urllib.parse import SplitResult

from gevent import socket as gsocket

from .base import Listener, Stream, Transport
from .sockets import SocketListener, SocketStream, connect_socket

__all__ = ["TcpTransport", "connect_tcp", "listen_tcp", "format_address"]


def _host_port(url: SplitResult) -> Tuple[str, int]:
    try:
        host, port = url.hostname, url.port
    except ValueError as exc:
        raise ValueError(f"bad {url.scheme} URL {url.geturl()!r}: {exc}") from None
    if not host or port is None:
        raise ValueError(f"{url.scheme} URL needs a host and a port: {url.geturl()!r}")
    return host, port


def _resolve(host: str, port: int, passive: bool) -> Tuple[int, tuple]:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        # A name: resolve with gevent's resolver (never blocks the hub).
        infos = gsocket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0,
                                    socket.AI_PASSIVE if passive else 0)
        family, _, _, _, sockaddr = infos[0]
        return family, sockaddr
    if ip.version == 6:
        return socket.AF_INET6, (host, port, 0, 0)
    return socket.AF_INET, (host, port)


def format_address(sockaddr: tuple) -> str:
    """host:port, the host in brackets when it is IPv6."""
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _stream(sock: socket.socket, addr) -> SocketStream:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return SocketStream(sock, format_address(addr))


def connect_tcp(url: SplitResult, timeout: Optional[float]) -> socket.socket:
    """A connected non-blocking TCP socket to `url`'s host and port."""
    family, sockaddr = _resolve(*_host_port(url), passive=False)
    sock = connect_socket(family, sockaddr, timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def listen_tcp(url: SplitResult) -> socket.socket:
    """A TCP socket listening on `url`'s host and port (0: a free one)."""
    family, sockaddr = _resolve(*_host_port(url), passive=True)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(socket.SOMAXCONN)
    except BaseException:
        sock.close()
        raise
    return sock


class TcpTransport(Transport):
    def connect(self, url: SplitResult, timeout: Optional[float]) -> Stream:
        sock = connect_tcp(url, timeout)  # TCP_NODELAY set already
        return SocketStream(sock, format_address(sock.getpeername()))

    def listen(self, url: SplitResult) -> Listener:
        sock = listen_tcp(url)
        return SocketListener(sock, f"tcp://{format_address(sock.getsockname())}", _stream)
