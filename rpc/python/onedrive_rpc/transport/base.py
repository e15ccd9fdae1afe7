"""The tiny interface every transport implements, and the scheme registry.

The layers above only ever see `Stream` and `Listener`; which transport
served a URL is this module's business alone. A third party adds a scheme
with `register_transport("myscheme", MyTransport)`.
"""
from __future__ import annotations

import abc
from typing import Any, Dict, NamedTuple, Optional, Sequence, Type, Union
from urllib.parse import SplitResult, urlsplit

__all__ = [
    "Stream",
    "Listener",
    "Transport",
    "SecureTransport",
    "PeerCredentials",
    "ConnectionClosed",
    "register_transport",
    "transport_for",
    "connect_stream",
    "listen",
    "peer_key",
]

Buffer = Union[bytes, bytearray, memoryview]


class ConnectionClosed(ConnectionError):
    """The stream was closed (by us, or the peer went away)."""


class PeerCredentials(NamedTuple):
    """The connecting process, as the kernel reports it (unix sockets)."""

    pid: int
    uid: int
    gid: int


class Stream(abc.ABC):
    """A connected, ordered byte stream to one peer.

    `recv_into` and `wait_writable` block the calling greenlet only;
    `send_nowait` never blocks, so it may run inside a hub callback.
    """

    #: Human-readable peer address, e.g. "127.0.0.1:5000" or a socket path.
    address: str = ""
    #: Kernel-reported identity of the peer process, where the OS tells.
    credentials: Optional[PeerCredentials] = None
    #: The peer's certificate as `ssl.SSLSocket.getpeercert()` decodes it
    #: ("subject", "issuer", "notAfter", ...), once a TLS handshake verified
    #: it (tls://); else None.
    certificate: Optional[Dict[str, Any]] = None

    @abc.abstractmethod
    def recv_into(self, buffer: memoryview) -> int:
        """Read at least one byte into `buffer`; 0 means the peer closed."""

    @abc.abstractmethod
    def send_nowait(self, buffers: Sequence[Buffer]) -> int:
        """Write as much of `buffers` as fits now; return the bytes taken."""

    @abc.abstractmethod
    def wait_writable(self) -> None:
        """Block until send_nowait can take more."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close now; greenlets blocked on this stream get ConnectionClosed."""

    def detach(self) -> None:
        """Drop this process's handle without touching the connection (used
        in a forked child, whose parent keeps the connection)."""
        self.close()


class Listener(abc.ABC):
    """Accepts incoming streams on one address."""

    #: The URL peers connect to (a tcp port 0 replaced by the real one).
    url: str = ""

    @abc.abstractmethod
    def accept(self) -> Stream:
        """Block until a peer connects; ConnectionClosed once closed."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop accepting; wakes a blocked accept() with ConnectionClosed."""

    def detach(self) -> None:
        """Drop this process's handle; the parent of a fork keeps listening."""
        self.close()


class Transport(abc.ABC):
    """A URL scheme: how to connect to, and listen on, its addresses."""

    @abc.abstractmethod
    def connect(self, url: SplitResult, timeout: Optional[float]) -> Stream:
        """Open a stream to `url`; TransportError/OSError if it cannot."""

    @abc.abstractmethod
    def listen(self, url: SplitResult) -> Listener:
        """Start listening on `url`."""


class SecureTransport(Transport):
    """A transport that also takes TLS settings (`tls=` of rpc.Server and
    rpc.connect): an rpc.TLS or an ssl.SSLContext. Without them, connect()
    and listen() use the transport's own defaults."""

    @abc.abstractmethod
    def connect_tls(self, url: SplitResult, timeout: Optional[float], tls: Any) -> Stream:
        """Open a stream to `url` secured with `tls`."""

    @abc.abstractmethod
    def listen_tls(self, url: SplitResult, tls: Any) -> Listener:
        """Listen on `url`, securing every stream with `tls`."""


_REGISTRY: Dict[str, Transport] = {}


def register_transport(scheme: str, transport: Union[Transport, Type[Transport]]) -> None:
    """Make `scheme://...` URLs use `transport` (a Transport or its class)."""
    if isinstance(transport, type):
        transport = transport()
    if not isinstance(transport, Transport):
        raise TypeError(f"{transport!r} is not a Transport")
    _REGISTRY[scheme.lower()] = transport


def transport_for(url: str) -> "tuple[Transport, SplitResult]":
    """The registered transport for `url`, with the URL parsed."""
    parsed = urlsplit(url)
    if not parsed.scheme:
        raise ValueError(f"{url!r} is not a URL: expected scheme://address, "
                         f"one of {', '.join(sorted(_REGISTRY))}")
    try:
        return _REGISTRY[parsed.scheme.lower()], parsed
    except KeyError:
        raise ValueError(f"no transport for scheme {parsed.scheme!r} in {url!r}; "
                         f"known: {', '.join(sorted(_REGISTRY))}") from None


def connect_stream(url: str, timeout: Optional[float] = None, tls: Any = None) -> Stream:
    """A stream to `url`; `tls` (rpc.TLS or ssl.SSLContext) for tls:// URLs."""
    transport, parsed = transport_for(url)
    if tls is None:
        return transport.connect(parsed, timeout)
    return _secure(transport, url).connect_tls(parsed, timeout, tls)


def listen(url: str, tls: Any = None) -> Listener:
    """A listener on `url`; `tls` (rpc.TLS or ssl.SSLContext) for tls:// URLs."""
    transport, parsed = transport_for(url)
    if tls is None:
        return transport.listen(parsed)
    return _secure(transport, url).listen_tls(parsed, tls)


def _secure(transport: Transport, url: str) -> SecureTransport:
    if not isinstance(transport, SecureTransport):
        raise ValueError(f"tls= is for tls:// URLs, not {url!r}")
    return transport


def peer_key(stream: Stream) -> str:
    """Whose connection `stream` is, for per-peer limits: the uid on a unix
    socket, the host of a tcp one, else its address."""
    credentials = stream.credentials
    if credentials is not None:
        return f"uid {credentials.uid}"
    host, colon, _port = stream.address.rpartition(":")
    return host if colon else stream.address
