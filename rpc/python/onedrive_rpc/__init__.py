"""onedrive-rpc: reliable RPC for gevent programs, with protobuf contracts.

    import onedrive_rpc as rpc
    server = rpc.Server("tcp://127.0.0.1:0"); server.add_service(Echo()); server.start()
    peer = rpc.connect(server.url)
    client = rpc.Client(peer, echo_pb2.DESCRIPTOR.services_by_name["Echo"])
"""
from .auth import SharedSecret, UnixPeers
from .client import Client, Endpoint
from .config import Heartbeat, Limits, Reconnect
from .calls import CallFuture, Context, Identity
from .interceptors import Action, Interceptor
from .errors import (FrameTooLarge, LocalProtocolError, PeerLost, ProtocolError,
                     RemoteProtocolError, RpcError, StatusCode, TransportError, Violation)
from .patterns import BroadcastListener, Consumer, Received, Subscription, TaskContext
from .peer import Peer, connect
from .server import Server
from .service import Service, policy, prefetch, unimplemented
from .streams import ServerStream
from .tls import TLS
from .transport import Listener, Stream, Transport, register_transport

__version__ = "0.1.0"

__all__ = [
    "Action",
    "BroadcastListener",
    "CallFuture",
    "Client",
    "Consumer",
    "Context",
    "Endpoint",
    "FrameTooLarge",
    "Heartbeat",
    "Identity",
    "Interceptor",
    "Limits",
    "Listener",
    "LocalProtocolError",
    "Peer",
    "PeerLost",
    "ProtocolError",
    "Received",
    "Reconnect",
    "RemoteProtocolError",
    "RpcError",
    "Server",
    "ServerStream",
    "Service",
    "SharedSecret",
    "StatusCode",
    "TLS",
    "Stream",
    "Subscription",
    "TaskContext",
    "Transport",
    "TransportError",
    "UnixPeers",
    "Violation",
    "connect",
    "policy",
    "prefetch",
    "register_transport",
    "unimplemented",
]
