"""Transports chosen by URL scheme: tcp://, tls://, unix://, inproc://, or one you register."""
from .base import (ConnectionClosed, Listener, PeerCredentials, SecureTransport, Stream,
                   Transport, connect_stream, listen, peer_key, register_transport, transport_for)
from .inproc import InprocTransport
from .tcp import TcpTransport
from .tls import TlsTransport
from .unix import UnixTransport

__all__ = [
    "ConnectionClosed",
    "Listener",
    "PeerCredentials",
    "SecureTransport",
    "Stream",
    "Transport",
    "connect_stream",
    "listen",
    "peer_key",
    "register_transport",
    "transport_for",
]

register_transport("tcp", TcpTransport)
register_transport("tls", TlsTransport)
register_transport("unix", UnixTransport)
register_transport("inproc", InprocTransport)
