"""rpc.Server: listens on a URL, runs a Connection per peer, serves services."""
from __future__ import annotations

import logging
import uuid
from typing import Callable, List, Optional

import gevent
from gevent import getcurrent
from gevent.event import Event
from gevent.hub import get_hub

from . import forking
from .config import Heartbeat, Limits
from .core import events as ev
from .core.events import PeerInfo
from .core.session import Role, Session
from .driver import Connection
from .errors import RpcError, StatusCode
from .hooks import PeerHooks
from .identity import local_identity
from .service import Registry, Service
from .transport import ConnectionClosed, Listener, listen

__all__ = ["Server"]

log = logging.getLogger("onedrive_rpc")


class Server:
    """Serves added services on `url` (tcp://, unix://, inproc://, ...).

    `start()` returns at once (`url` then tells the real address, e.g. the
    port picked for tcp port 0); `serve_forever()` blocks until `stop()`.
    """

    def __init__(self, url: str, *, name: Optional[str] = None,
                 limits: Optional[Limits] = None,
                 heartbeat: Optional[Heartbeat] = None,
                 include_tracebacks: bool = False) -> None:
        self._url = url
        self._name = name
        self.limits = limits or Limits()
        self.heartbeat = heartbeat or Heartbeat()
        self._hooks = PeerHooks()
        self._registry = Registry(include_tracebacks=include_tracebacks)
        self._listener: Optional[Listener] = None
        self._acceptor: Optional[gevent.Greenlet] = None
        self._connections: List[Connection] = []
        self._stopped = Event()
        self._stopping = False

    @property
    def url(self) -> str:
        """The address peers connect to (the real one once started)."""
        return self._listener.url if self._listener is not None else self._url

    @property
    def connections(self) -> List[Connection]:
        return list(self._connections)

    def add_service(self, service: Service) -> None:
        self._registry.add(service)

    def start(self) -> "Server":
        if self._listener is not None:
            raise RuntimeError("server already started")
        if self._stopping:
            raise RuntimeError("a stopped server cannot start again")
        self._listener = listen(self._url)
        self._acceptor = gevent.spawn(self._accept_loop, self._listener)
        forking.track(self)
        log.info("serving %s on %s", ", ".join(self._registry.services) or "nothing", self.url)
        return self

    def serve_forever(self) -> None:
        if self._listener is None:
            self.start()
        self._stopped.wait()

    def stop(self, grace: Optional[float] = None) -> None:
        """Stop accepting, refuse new calls (UNAVAILABLE), let calls in flight
        finish for up to `grace` seconds, then close every connection."""
        if self._stopping:
            self._stopped.wait()
            return
        self._stopping = True
        if self._listener is not None:
            self._listener.close()
        refusal = RpcError(StatusCode.UNAVAILABLE, "server is stopping")
        for conn in self._connections:
            conn.refuse_calls = refusal
        if grace:
            gevent.joinall([gevent.spawn(conn.drain, grace) for conn in self._connections])
        for conn in list(self._connections):
            conn.close(StatusCode.UNAVAILABLE, "server stopped")
        if self._acceptor is not None and self._acceptor is not getcurrent():
            self._acceptor.kill()
        self._stopped.set()

    def __enter__(self) -> "Server":
        if self._listener is None:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _accept_loop(self, listener: Listener) -> None:
        while True:
            try:
                stream = listener.accept()
            except ConnectionClosed:
                return
            peer_id, name, pid = local_identity(self._name)
            session = Session(Role.SERVER, peer_id=peer_id, name=name, pid=pid,
                              max_frame_size=self.limits.max_frame_size,
                              session_id=uuid.uuid4().hex,
                              heartbeat_interval=self.heartbeat.interval,
                              heartbeat_misses=self.heartbeat.misses)
            conn = Connection(stream, session, dispatch=self._registry.dispatch,
                              limits=self.limits, on_handshake=self._on_handshake,
                              on_close=self._on_close)
            if len(self._connections) >= self.limits.max_connections:
                log.warning("refusing %s: %d connections already", stream.address,
                            len(self._connections))
                gevent.spawn(conn.close, StatusCode.RESOURCE_EXHAUSTED,
                             f"server has too many connections ({self.limits.max_connections})")
                continue
            if self._stopping:
                conn.refuse_calls = RpcError(StatusCode.UNAVAILABLE, "server is stopping")
            self._connections.append(conn)
            timer = get_hub().loop.timer(self.limits.handshake_timeout)
            timer.start(self._handshake_expired, conn, timer)
            conn.start()

    def _forget_after_fork(self, parent_pid: int) -> None:
        # The child does not serve: the listening socket is the parent's.
        self._stopping = True
        if self._listener is not None:
            self._listener.detach()

    def _handshake_expired(self, conn: Connection, timer) -> None:
        timer.close()
        if not conn.handshake.ready() and not conn.closed:
            log.warning("closing %s: no handshake within %ss", conn.stream.address,
                        self.limits.handshake_timeout)
            conn.close(StatusCode.DEADLINE_EXCEEDED,
                       f"no handshake within {self.limits.handshake_timeout}s")

    def on_peer_connected(self, callback: Callable[[PeerInfo], None]) -> Callable[[PeerInfo], None]:
        """Call `callback(peer)` when a peer finishes its handshake."""
        return self._hooks.add("connected", callback)

    def on_peer_lost(self, callback: Callable[[PeerInfo, RpcError], None]
                     ) -> Callable[[PeerInfo, RpcError], None]:
        """Call `callback(peer, reason)` when a peer dies, hangs past the
        heartbeat bound, is cut off or breaks the protocol."""
        return self._hooks.add("lost", callback)

    def on_peer_disconnected(self, callback: Callable[[PeerInfo, RpcError], None]
                             ) -> Callable[[PeerInfo, RpcError], None]:
        """Call `callback(peer, reason)` when a connection ends in order
        (a Close frame, sent by either side)."""
        return self._hooks.add("disconnected", callback)

    def _on_handshake(self, conn: Connection, event: ev.Handshaken) -> None:
        log.debug("peer %s (%s, pid %d) connected from %s", event.peer.name,
                  event.peer.peer_id, event.peer.pid, conn.stream.address)
        self._hooks.fire("connected", event.peer)

    def _on_close(self, conn: Connection) -> None:
        try:
            self._connections.remove(conn)
        except ValueError:
            pass
        log.debug("connection from %s closed: %s", conn.stream.address, conn.close_reason)
        if conn.peer is not None:
            self._hooks.fire("disconnected" if conn.orderly else "lost", conn.peer, conn.close_reason)
