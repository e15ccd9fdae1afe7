"""Transports chosen by URL scheme: tcp://, unix://, inproc://, or one you register."""
from .base import (ConnectionClosed, Listener, PeerCredentials, Stream, Transport,
                   connect_stream, listen, peer_key, register_transport, transport_for)
from .inproc import InprocTransport
from .tcp import TcpTransport
from .unix import UnixTransport

__all__ = [
    "ConnectionClosed",
    "Listener",
    "PeerCredentials",
    "Stream",
    "Transport",
    "connect_stream",
    "listen",
    "peer_key",
    "register_transport",
    "transport_for",
]

register_transport("tcp", TcpTransport)
register_transport("unix", UnixTransport)
register_transport("inproc", InprocTransport)
