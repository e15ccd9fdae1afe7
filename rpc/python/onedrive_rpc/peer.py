"""rpc.connect(url) -> Peer: one session with a server, carrying any number of calls."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from .config import Heartbeat, Limits
from .core.events import PeerInfo
from .core.session import Role, Session
from .driver import CallFuture, Connection
from .errors import PeerLost, RpcError, StatusCode
from .hooks import PeerHooks
from .identity import local_identity
from .transport import connect_stream

__all__ = ["Peer", "connect"]

#: Seconds connect() waits for the connection and the handshake by default.
DEFAULT_CONNECT_TIMEOUT = 10.0


class Peer:
    """A connected peer. Calls go through `call`/`call_future`, or a Client."""

    def __init__(self, url: str, connection: Connection, hooks: Optional[PeerHooks] = None) -> None:
        self.url = url
        self._connection = connection
        self._hooks = hooks or PeerHooks()

    def on_lost(self, callback: Callable[[RpcError], None]) -> Callable[[RpcError], None]:
        """Call `callback(reason)` if the connection dies, hangs past the
        heartbeat bound or is cut off (not after close())."""
        return self._hooks.add("lost", callback)

    def on_disconnected(self, callback: Callable[[RpcError], None]) -> Callable[[RpcError], None]:
        """Call `callback(reason)` when the connection ends in order."""
        return self._hooks.add("disconnected", callback)

    @property
    def info(self) -> Optional[PeerInfo]:
        """The remote side's identity from the handshake."""
        return self._connection.peer

    @property
    def session_id(self) -> str:
        return self._connection.session.session_id

    @property
    def closed(self) -> bool:
        return self._connection.closed

    @property
    def close_reason(self) -> Optional[RpcError]:
        return self._connection.close_reason

    def call(self, method: str, payload: bytes, decode: Callable[[Any], Any],
             timeout: Optional[float] = None,
             metadata: Optional[Mapping[str, str]] = None) -> Any:
        """Low level: call "/pkg.Service/Method" with serialized `payload`."""
        return self._connection.call(method, payload, decode, timeout, metadata)

    def call_future(self, method: str, payload: bytes, decode: Callable[[Any], Any],
                    timeout: Optional[float] = None,
                    metadata: Optional[Mapping[str, str]] = None) -> CallFuture:
        return self._connection.call_future(method, payload, decode, timeout, metadata)

    def close(self, grace: Optional[float] = None) -> None:
        """Close the connection in order: refuse new calls (UNAVAILABLE), let
        calls in flight finish for up to `grace` seconds, then send Close.
        Calls still pending after that fail with UNAVAILABLE."""
        if grace:
            self._connection.drain(grace)
        self._connection.close(StatusCode.UNAVAILABLE, "peer closed the connection")

    def __enter__(self) -> "Peer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Peer {self.url} {state}>"


def connect(url: str, *, name: Optional[str] = None,
            timeout: Optional[float] = DEFAULT_CONNECT_TIMEOUT,
            limits: Optional[Limits] = None,
            heartbeat: Optional[Heartbeat] = None,
            metadata: Optional[Mapping[str, str]] = None) -> Peer:
    """Connect to a server and finish the handshake, or raise RpcError.

    UNAVAILABLE (PeerLost) if nothing answers, DEADLINE_EXCEEDED if the
    handshake takes longer than `timeout`, FAILED_PRECONDITION on a
    protocol version mismatch.
    """
    limits = limits or Limits()
    heartbeat = heartbeat or Heartbeat()
    try:
        stream = connect_stream(url, timeout)
    except OSError as exc:
        raise PeerLost(f"cannot connect to {url}: {exc.strerror or exc}") from exc
    peer_id, my_name, pid = local_identity(name)
    session = Session(Role.CLIENT, peer_id=peer_id, name=my_name, pid=pid,
                      max_frame_size=limits.max_frame_size, metadata=metadata,
                      heartbeat_interval=heartbeat.interval, heartbeat_misses=heartbeat.misses)
    hooks = PeerHooks()
    connection = Connection(stream, session, limits=limits,
                            on_close=lambda conn: hooks.fire("disconnected" if conn.orderly else "lost",
                                                             conn.close_reason))
    connection.start()
    connection.wait_handshake(timeout)
    return Peer(url, connection, hooks)
