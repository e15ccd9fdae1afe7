"""rpc.Server: listens on a URL, runs a Connection per peer, serves services."""
from __future__ import annotations

import functools
import ipaddress
import logging
import uuid
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

import gevent
from gevent import getcurrent
from gevent.event import Event
from gevent.pool import Group

from . import forking, options_pb2
from .admission import Admission
from .broker import Broker
from .brokers import Backend
from .config import Heartbeat, Limits
from .core import events as ev
from .auth import Auth, Authenticate, UnixPeers, split_auth
from .core.budget import ByteBudget, OutputBudget
from .core.events import PeerInfo
from .core.workqueue import DeadLetter, QueueStats
from .core.reliability import Reliability
from .core.session import Role, Session
from .calls import Context, Identity
from .driver import Connection, End
from .errors import PeerLost, RpcError, StatusCode
from .handshake import perform_handshake, refuse
from .health import HEALTH, HealthService
from .hooks import PeerHooks
from .interceptors import Authorize, InterceptorLike, interception
from .identity import local_identity
from .inspection import Inspection, inspect
from .logs import Throttled
from .patterns import Received
from .service import Registry, Service, policy_of, prefetch_of
from .tls import TlsSetting
from .validation import Validation, service_has_rules, warm
from .transport import ConnectionClosed, Listener, Stream, listen, peer_key

__all__ = ["Server", "DEFAULT_SESSION_GRACE"]

#: Seconds a server keeps the session of a peer whose connection broke, so
#: that it can reconnect and resume without losing calls: long enough for a
#: reconnect with backoff, short enough not to hoard dead peers' state.
DEFAULT_SESSION_GRACE = 10.0

# Answered while the server stops: a probe hears NOT_SERVING, not silence.
_HEALTH_METHODS = f"/{HEALTH.full_name}/"

log = logging.getLogger(__name__)


class Server:
    """Serves added services on `url` (tcp://, tls://, unix://, inproc://, ...).

    `reflection=True` also serves onedrive_rpc.Reflection, which tells
    tools (`onedrive-rpc list`) what the server serves and its contracts.
    It serves onedrive_rpc.Health (is it serving? `onedrive-rpc health`)
    unless `health=False`; `set_serving` changes what it says.
    `admin=True` serves onedrive_rpc.Admin, the operators' view of its
    peers, subscriptions and queues (`onedrive-rpc admin`, `top`; see
    admin.py for who may use it); `inspect()` gives the same from code.

    `tls` (rpc.TLS or an ssl.SSLContext) is required with a tls:// URL:
    the server's certificate and key, and for mutual TLS the CA of the
    clients' certificates (handlers see them as `context.certificate`).

    `interceptors` run, first to last, around every action a peer asks
    for (calls, streams, notifications, publish, subscribe, produce,
    consume, broadcast, listen: see rpc.Action); `authorize(identity,
    action, method, target)` is asked last and a falsy answer refuses the
    action with PERMISSION_DENIED (see interceptors.Authorize).
    Messages whose types carry protovalidate rules are checked after
    that (INVALID_ARGUMENT with the violations), unless `validate=False`;
    `validate_responses=True` checks what handlers answer too (see
    onedrive_rpc.validation).

    `broker` (an onedrive_rpc.brokers.Backend) is where the work queues
    live and how publishes, holds and broadcasts reach other servers; None
    (the default): brokers.InProcess(), the queues in this process and no
    other server. Peers do not see the difference. A backend serves one
    server; the server closes it when it stops.

    `start()` returns at once (`url` then tells the real address, e.g. the
    port picked for tcp port 0); `serve_forever()` blocks until `stop()`.
    """

    def __init__(self, url: str, *, broker: Optional[Backend] = None,
                 name: Optional[str] = None,
                 limits: Optional[Limits] = None,
                 heartbeat: Optional[Heartbeat] = None,
                 session_grace: float = DEFAULT_SESSION_GRACE,
                 include_error_details: bool = False,
                 auth: Optional[Auth] = None,
                 insecure: bool = False,
                 authenticate: Optional[Authenticate] = None,
                 reflection: bool = False,
                 health: bool = True,
                 admin: bool = False,
                 tls: Optional[TlsSetting] = None,
                 interceptors: Sequence[InterceptorLike] = (),
                 authorize: Optional[Authorize] = None,
                 validate: bool = True,
                 validate_responses: bool = False) -> None:
        self._url = url
        self._tls = tls
        self._name = name
        self.limits = limits or Limits()
        self.heartbeat = heartbeat or Heartbeat()
        #: Seconds a lost peer's session is kept for it to resume (0: never).
        self.session_grace = session_grace
        self._sessions: Dict[str, Connection] = {}
        # Streams still in their handshake: stop() ends them too.
        self._admitting = Group()
        self._admission = Admission(self.limits)
        shared, unix_peers = split_auth(auth)
        #: The shared secret clients must prove they know (None: anyone may talk).
        self._secret = shared.secret if shared is not None else None
        #: Who may connect over a unix socket (the kernel says who connects).
        self._unix_peers = unix_peers or UnixPeers.default()
        self._insecure = insecure
        #: Vets each client's Hello (tokens in its metadata, ...): see Authenticate.
        self._authenticate = authenticate
        #: What all peers' calls in flight may hold together (max_server_call_bytes).
        self._call_budget = ByteBudget(self.limits.max_server_call_bytes)
        #: What all peers' frames being received may hold (max_server_read_bytes).
        self._read_budget = ByteBudget(self.limits.max_server_read_bytes)
        #: What all peers' connections hold for them (max_server_queued_bytes).
        self._output_budget: OutputBudget[Any] = OutputBudget(self.limits.max_server_queued_bytes)
        self._warn = Throttled(log)
        self._hooks = PeerHooks()
        self._registry = Registry(include_error_details=include_error_details)
        # Around every action of a peer: calls (the registry's) and the
        # patterns (the broker's). Message validation joins them, innermost,
        # once a service whose messages carry rules is added.
        self._interceptors, self._authorize = tuple(interceptors), authorize
        self._validation = Validation(validate_responses) if validate else None
        self._validating = False
        self._registry.interception = chain = interception(interceptors, authorize)
        self._broker = Broker(self._registry, lambda: [conn.outlet for conn in self._connections],
                              local_identity(name)[0], self.limits, chain, broker)
        if reflection:
            # Lists what this server serves (onedrive_rpc.Reflection): for
            # `onedrive-rpc list` and calls without generated code.
            from .reflection import ReflectionService
            self._registry.add(ReflectionService(self._registry.services_view))
        #: What onedrive_rpc.Health says of each service (None: not served).
        self._health: Optional[HealthService] = None
        if health:
            self._health = HealthService()
            self.add_service(self._health)
        if admin:
            # For operators (onedrive-rpc admin, top): see admin.py for who may use it.
            from .admin import AdminService
            self.add_service(AdminService(self, open_to_anyone=authorize is not None))
        self._listener: Optional[Listener] = None
        self._acceptor: Optional[gevent.Greenlet] = None
        self._connections: List[Connection] = []
        self._stopped = Event()
        self._stopping = False
        #: Bytes the connections that ended had received and sent.
        self._ended_bytes = [0, 0]
        # What serve_metrics() started (stop() stops it).
        self._metrics_http: Optional[Any] = None

    @property
    def url(self) -> str:
        """The address peers connect to (the real one once started)."""
        return self._listener.url if self._listener is not None else self._url

    @property
    def interceptors(self) -> Sequence[InterceptorLike]:
        """The interceptors it was built with (besides authorize)."""
        return self._interceptors

    @property
    def connections(self) -> List[Connection]:
        return list(self._connections)

    def bytes_transferred(self) -> Tuple[int, int]:
        """(received, sent): bytes read from and written to peers since the
        start, after their handshakes, framing included: ended sessions'
        too, unlike inspect()."""
        received, sent = self._ended_bytes
        for conn in self._connections:
            received += conn.bytes_in
            sent += conn.outbox.bytes_out
        return received, sent

    def serve_metrics(self, port: int = 0, host: str = "127.0.0.1") -> Tuple[str, int]:
        """Serve this server's Prometheus metrics over HTTP (GET /metrics)
        on host:port until stop(); returns the address bound (port 0:
        one picked). Needs `pip install onedrive-rpc[metrics]`; see
        onedrive_rpc.metrics (per-call metrics need its ServerMetrics
        among the interceptors)."""
        if self._metrics_http is not None:
            raise RuntimeError("this server already serves its metrics")
        from .metrics import serve_http  # prometheus_client: only with the extra
        self._metrics_http = serve_http(self, port, host)
        return self._metrics_http.address  # type: ignore[no-any-return]

    def add_service(self, service: Service) -> None:
        """Serve `service`. Its publish/subscribe, producer/consumer and
        broadcast methods, where it defines them, make this server a
        subscriber (to every topic), consumer or listener of its own."""
        validation = self._validation
        if validation is not None and service_has_rules(service.descriptor, validation.responses):
            warm(service.descriptor, validation.responses)  # ValueError: rules that do not compile
            if not self._validating:
                self._validating = True
                chain = interception(self._interceptors, self._authorize, innermost=[validation])
                self._registry.interception = chain
                self._broker.use_interception(chain)
        if self._health is not None:
            self._health.set(service.descriptor.full_name, True)
        for handler in self._registry.add(service):
            func, info = handler.func, handler.info
            if func is None:
                continue
            decode = info.input_type.FromString
            if info.pattern == options_pb2.PUBLISH_SUBSCRIBE:
                policy, queue_limit = policy_of(func)
                self._broker.subscribe(info.path, ">", decode, _receiver(func), policy=policy,
                                       queue_limit=queue_limit)
            elif info.pattern == options_pb2.PRODUCER_CONSUMER:
                self._broker.consume(info.path, decode, func, prefetch_of(func))
            elif info.pattern == options_pb2.BROADCAST:
                self._broker.listen(info.path, decode, _receiver(func))

    def start(self) -> "Server":
        if self._listener is not None:
            raise RuntimeError("server already started")
        if self._stopping:
            raise RuntimeError("a stopped server cannot start again")
        host = beyond_loopback(self._url)
        checked = self._secret is not None or self._authenticate is not None
        if host is not None and not checked and not self._insecure:
            raise ValueError(
                f"refusing to serve {self._url} without authentication or TLS: {host} is "
                f"reachable from other machines, and nothing would check who connects; pass "
                f"auth=rpc.SharedSecret(...) or authenticate=, serve tls://, or insecure=True to "
                f"serve it anyway (as gRPC's add_insecure_port)")
        self._listener = listen(self._url, tls=self._tls)
        self._acceptor = gevent.spawn(self._accept_loop, self._listener)
        forking.track(self)
        log.info("serving %s on %s", ", ".join(self._registry.services) or "nothing", self.url)
        return self

    def set_serving(self, service: str, serving: bool) -> None:
        """What onedrive_rpc.Health says of `service` (a full name, or ""
        for the server as a whole): e.g. NOT_SERVING while a dependency is
        down. Watchers hear of it at once."""
        if self._health is None:
            raise RuntimeError("this server was built with health=False")
        self._health.set(service, serving)

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
        # From now on serve() refuses new calls (but health checks, which
        # say NOT_SERVING), and the health watchers' streams end.
        if self._health is not None:
            self._health.stop()
        if grace:
            gevent.joinall([gevent.spawn(conn.drain, grace) for conn in self._connections])
        # Concurrently: each close may wait up to a second for its flush.
        gevent.joinall([gevent.spawn(conn.close, StatusCode.UNAVAILABLE, "server stopped")
                        for conn in list(self._connections)])
        if self._acceptor is not None and self._acceptor is not getcurrent():
            self._acceptor.kill()
        self._admitting.kill(block=False)
        self._broker.close()
        if self._metrics_http is not None:
            self._metrics_http.stop()
        self._stopped.set()

    def inspect(self, subscription_limit: Optional[int] = None) -> Inspection:
        """Its sessions (connected and suspended), subscriptions (the first
        `subscription_limit`, None: all) and work queues now: what
        `onedrive-rpc admin` shows."""
        return inspect(self._connections, self._broker, urlsplit(self.url).scheme,
                       subscription_limit)

    def disconnect(self, session_id: str, reason: str = "disconnected by the server") -> bool:
        """Close the connection of session `session_id` and end the session
        (the peer hears `reason`; it may connect again, as a new session).
        False if there is no such session."""
        conn = self._sessions.get(session_id)
        if conn is None or conn.closed:
            return False
        log.info("disconnecting: %s: %s", conn.origin.who, reason, extra=conn.origin.fields)
        conn.close(StatusCode.UNAVAILABLE, reason)
        return True

    @property
    def broker(self) -> Broker:
        """Topics, work queues and broadcasts this server hosts. Code in the
        serving process publishes, subscribes, produces, consumes,
        broadcasts and listens through it as a peer would: `rpc.Client(server,
        ...)` does."""
        return self._broker

    def configure_queue(self, method: str, *, max_attempts: Optional[int] = None,
                        max_tasks: Optional[int] = None, max_bytes: Optional[int] = None,
                        max_dead_letters: Optional[int] = None) -> None:
        """Limits of work queue `method` ("/pkg.Svc/M"): attempts before a
        task becomes a dead letter (default 5), tasks and payload bytes held
        before produce() answers RESOURCE_EXHAUSTED (100,000 and 64 MiB),
        dead letters kept (10,000)."""
        given = dict(max_attempts=max_attempts, max_tasks=max_tasks, max_bytes=max_bytes,
                     max_dead_letters=max_dead_letters)
        self._broker.configure_queue(method, **{k: v for k, v in given.items() if v is not None})

    def queue_stats(self, method: str) -> QueueStats:
        """Counts of work queue `method` ("/pkg.Svc/M"): ready, in flight,
        consumers, dead letters, produced, completed, failed attempts,
        redeliveries."""
        return self._broker.queue_stats(method)

    def dead_letters(self, method: str) -> List[DeadLetter]:
        """Tasks of work queue `method` that failed too often: each with its
        id, attempts, last error, payload and when it died."""
        return self._broker.dead_letters(method)

    def replay_dead_letters(self, method: str, task_ids: Optional[Iterable[int]] = None) -> int:
        """Give dead letters (all, or those named) to the consumers again,
        attempts counted afresh; returns how many."""
        return self._broker.replay(method, task_ids)

    def purge_dead_letters(self, method: str) -> int:
        return self._broker.purge(method)

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
            self._admitting.spawn(self._admit, stream)

    def _admit(self, stream: Stream) -> None:
        """Handshake a new stream, then give it a new session or the
        suspended one it resumes."""
        peer_id, name, pid = local_identity(self._name)
        session = Session(Role.SERVER, peer_id=peer_id, name=name, pid=pid,
                          max_frame_size=self.limits.max_frame_size,
                          session_id=uuid.uuid4().hex,
                          heartbeat_interval=self.heartbeat.interval,
                          heartbeat_misses=self.heartbeat.misses,
                          max_metadata_size=self.limits.max_metadata_size,
                          max_metadata_entries=self.limits.max_metadata_entries,
                          min_heartbeat_interval=self.limits.min_heartbeat_interval,
                          max_concurrent_calls=self.limits.max_concurrent_calls,
                          max_call_bytes=self.limits.max_call_bytes,
                          call_budget=self._call_budget, read_budget=self._read_budget,
                          secret=self._secret, publish_window=self.limits.publish_window,
                          session_grace=self.session_grace)
        key = peer_key(stream)
        refusal = self._admission.refusal(key, self._connections)
        code = StatusCode.RESOURCE_EXHAUSTED
        if refusal is None:
            refusal, code = self._unix_peers.refusal(stream.credentials), StatusCode.UNAUTHENTICATED
        if refusal is not None:
            self._warn.warning("refused", "refusing %s: %s", stream.address, refusal)
            refuse(stream, session, code, refusal)
            stream.close()
            session.release()
            return
        # What the authenticate hook made of the peer (at most one Identity).
        vetted: List[Identity] = []
        vet = (functools.partial(self._vet_hello, stream, vetted)
               if self._authenticate is not None else None)
        try:
            handshaken, events = perform_handshake(stream, session, self.limits.handshake_timeout,
                                                   functools.partial(self._resolve_resume,
                                                                     stream, session, vetted),
                                                   vet)
        except RpcError as exc:
            self._warn.warning("handshake", "closing %s: %s", stream.address, exc.message)
            return
        finally:
            self._admission.handshake_done(key)
        if self._stopping:
            refuse(stream, session, StatusCode.UNAVAILABLE, "server stopped")
            stream.close()
            session.release()
            return
        if handshaken.resumed:
            conn = self._sessions.get(handshaken.session_id)
            if conn is not None:
                # The client saw its connection die before we did (a black
                # hole); it proved with the resume token that it is the client.
                conn.replace()
            if conn is not None and conn.suspended:
                conn.resume(stream, session, events)
                self._hooks.fire("resumed", handshaken.peer)
                return
            stream.close()  # its grace ran out during the handshake: let it retry
            session.release()
            return
        conn = Connection(stream, session, self, limits=self.limits,
                          session_grace=self.session_grace, output_budget=self._output_budget)
        conn.identity = vetted[0] if vetted else None
        self._connections.append(conn)
        self._sessions[handshaken.session_id] = conn
        conn.start(events)
        origin = conn.origin
        log.info("connected: %s (identity %s; pid %d, peer id %s, as it says)", origin.who,
                 origin.identity.label,
                 handshaken.peer.pid, handshaken.peer.peer_id, extra=origin.fields)
        self._hooks.fire("connected", handshaken.peer)

    def _vet_hello(self, stream: Stream, vetted: List[Identity], peer: PeerInfo,
                   metadata: Mapping[str, str]) -> None:
        """Ask the authenticate hook about a Hello: the Identity it returns
        is the peer's; None, or an exception, turns it away."""
        assert self._authenticate is not None
        try:
            identity = self._authenticate(peer, metadata)
        except RpcError:
            raise
        except Exception:
            log.exception("the authenticate hook failed for %s", stream.address)
            identity = None
        if identity is None:
            raise RpcError(StatusCode.UNAUTHENTICATED, "authentication failed")
        if not isinstance(identity, Identity):
            raise TypeError(f"authenticate must return an rpc.Identity or None, not {identity!r}")
        vetted.append(identity)

    def _resolve_resume(self, stream: Stream, session: Session, vetted: List[Identity],
                        request: ev.ResumeRequested) -> Optional[Reliability]:
        # Only the state: the Session checks the resume token against it
        # before anything changes (see _admit for a live old connection).
        conn = self._sessions.get(request.session_id)
        if conn is None or conn.closed:
            return None
        proven = vetted[0] if vetted else Identity.of(session.authenticated, stream.credentials,
                                                      stream.certificate)
        if proven != conn.incoming.origin.identity:
            # The token may have leaked: another identity gets a session of its own.
            self._warn.warning("resume", "not resuming session %s for %s: it was %s %s, this "
                               "connection is %s %s", request.session_id, stream.address,
                               *conn.incoming.origin.identity, *proven)
            return None
        return conn.session.reliability

    # ------------------------------------------- ConnectionOwner: the driver calls

    def serve(self, call: Context, event: Any) -> None:
        """Run the handler of an incoming call or notification; while
        stopping, only a health check (which then says NOT_SERVING)."""
        if self._stopping and not event.method.startswith(_HEALTH_METHODS):
            raise RpcError(StatusCode.UNAVAILABLE, "server is stopping")
        self._registry.dispatch(call, event)

    def on_pattern_event(self, conn: Connection, event: Any) -> None:
        """A publish/subscribe, work queue or broadcast frame: the broker's."""
        self._broker.handle(conn.outlet, event)

    def on_suspended(self, conn: Connection, reason: RpcError) -> None:
        """A peer's stream was lost; its session waits for a resume, in a
        bounded pool: past it, the oldest suspended session ends."""
        if conn.peer is not None:
            self._hooks.fire("lost", conn.peer, reason)
        # A block subscriber that is gone must not hold publishers back.
        self._broker.suspended(conn.outlet)
        bound = self.limits.max_suspended_sessions
        for old in self._admission.to_evict(self._connections):
            self._warn.warning("evicted", "ending suspended session %s of %s: more than %d "
                               "suspended sessions", old.session.session_id, old.address, bound)
            old.abort(PeerLost(f"session ended: the server keeps at most {bound} suspended "
                               f"sessions"))

    def after_fork_in_child(self, parent_pid: int) -> None:
        # The child does not serve: the listening socket is the parent's.
        self._stopping = True
        if self._listener is not None:
            self._listener.detach()

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

    def on_peer_resumed(self, callback: Callable[[PeerInfo], None]) -> Callable[[PeerInfo], None]:
        """Call `callback(peer)` when a lost peer comes back within the
        session grace period and its session resumes."""
        return self._hooks.add("resumed", callback)

    def on_closed(self, conn: Connection) -> None:
        """A peer's connection ended: its session and receivers go."""
        try:
            self._connections.remove(conn)
        except ValueError:
            pass
        self._broker.forget(conn.outlet, lost=conn.end is not End.ORDERLY)
        self._ended_bytes[0] += conn.bytes_in
        self._ended_bytes[1] += conn.outbox.bytes_out
        if self._sessions.get(conn.session.session_id) is conn:
            del self._sessions[conn.session.session_id]
        log.info("%s: %s: %s", "disconnected" if conn.end is End.ORDERLY else "session ended",
                 conn.origin.who, conn.close_reason.message if conn.close_reason else "closed",
                 extra=conn.origin.fields)
        report = conn.end_to_report()
        if conn.peer is not None and report is not None:
            self._hooks.fire(report, conn.peer, conn.close_reason)


def _receiver(func: Callable[[Any, Received], Any]) -> Callable[[Received], None]:
    """A service method as a subscription or listener callback."""
    def receive(received: Received) -> None:
        func(received.message, received)
    return receive


def beyond_loopback(url: str) -> Optional[str]:
    """The host of a plain tcp:// URL that other machines can reach (not a
    loopback address or "localhost"); None for anything else."""
    parsed = urlsplit(url)
    if parsed.scheme.lower() != "tcp":
        return None
    host = parsed.hostname or ""
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass  # a name: it may resolve to anything
    return host or None
