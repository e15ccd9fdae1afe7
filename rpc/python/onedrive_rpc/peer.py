"""rpc.connect(url) -> Peer: one session with a server, carrying any number of calls."""
from __future__ import annotations

import errno
import itertools
import logging
import random
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple, Union

import gevent
from google.protobuf.descriptor import ServiceDescriptor

from .auth import SharedSecret
from .config import Heartbeat, Limits, Reconnect
from .core import events as ev
from .core.events import PeerInfo
from .core.framing import Payload, Pieces
from .core.pattern_frames import (Broadcast, CallFrame, Consume, Credit, OutFrame, Produce,
                                  Publish, Subscribe, TaskDone, Unsubscribe)
from .core.pubsub import DEFAULT_QUEUE_LIMIT, Policy
from .core.topics import check_pattern, check_topic
from .core.workqueue import MAX_PREFETCH
from .core.session import Role, Session
from .calls import DEFAULT_STREAM_WINDOW, CallFuture, Context
from .dialer import Dialed, Dialer
from .driver import Connection, refuse_pattern_event
from .errors import PeerLost, RpcError, StatusCode
from .failover import PICK_FIRST, Addresses
from .handshake import refuse
from .hooks import PeerHooks
from .identity import local_identity
from .interceptors import Action, InterceptorLike, interception
from .validation import Validation, service_has_rules
from .streams import ServerStream
from .tls import TlsSetting
from .transport import SecureTransport, transport_for
from .patterns import (DEFAULT_LISTENER_QUEUE, DEFAULT_RECEIVER_QUEUE_BYTES, BroadcastListener,
                       Consumer, Received, Receivers, Subscription, TaskContext)

__all__ = ["Peer", "connect"]

log = logging.getLogger(__name__)

DROP_OLDEST = int(Policy.DROP_OLDEST)

_NO_METADATA: Mapping[str, str] = {}

#: Seconds close() spends reconnecting, when the connection is down, to
#: close the session in order.
CLOSE_RECONNECT_TIMEOUT = 2.0

#: Seconds connect() waits for the connection and the handshake by default.
DEFAULT_CONNECT_TIMEOUT = 10.0


class Peer:
    """A connected peer. Calls go through `call`/`call_future`, or a Client.

    If the connection breaks, the peer reconnects by itself (see Reconnect)
    and resumes its session; `on_lost`, `on_resumed` and `on_reconnected`
    (a new session: the old one was gone) tell what happened. Given several
    servers, it moves to another when its own is gone (see failover.py).
    """

    def __init__(self, dialer: Union[Dialer, Sequence[Dialer]], dialed: Dialed, *,
                 limits: Limits, reconnect: Reconnect,
                 interceptors: Sequence[InterceptorLike] = (), validate: bool = True,
                 addresses: Optional[Addresses] = None) -> None:
        #: One Dialer per address, in the order of `addresses`.
        self._dialers: List[Dialer] = [dialer] if isinstance(dialer, Dialer) else list(dialer)
        self._addresses = addresses or Addresses([d.url for d in self._dialers])
        #: Run around everything this peer sends (None: nothing to run).
        self._interception = interception(interceptors)
        self._interceptors = list(interceptors)
        #: Check requests against their rules (see check_requests_of).
        self._validate = validate
        self._validating = False
        self._timeout = self._dialers[0].timeout
        self._limits = limits
        self._reconnect = reconnect
        self._hooks = PeerHooks()
        self._closing = False
        self._reconnector: Optional[gevent.Greenlet] = None
        self._rng = random.Random()
        # The receiving ends of the patterns, by id: they outlive connections
        # and are registered again when a new session starts.
        self._ids = itertools.count(1)
        self._receivers = Receivers()
        self._connection = self._connect(dialed)

    def on_lost(self, callback: Callable[[RpcError], None]) -> Callable[[RpcError], None]:
        """Call `callback(reason)` when the connection dies, hangs past the
        heartbeat bound or is cut off (not after close())."""
        return self._hooks.add("lost", callback)

    def on_resumed(self, callback: Callable[[str], None]) -> Callable[[str], None]:
        """Call `callback(session_id)` when a lost connection came back and
        its session resumed: calls in flight complete."""
        return self._hooks.add("resumed", callback)

    def on_reconnected(self, callback: Callable[[str], None]) -> Callable[[str], None]:
        """Call `callback(new_session_id)` when the peer connected again but
        the old session was gone (server restarted, or grace passed)."""
        return self._hooks.add("reconnected", callback)

    def on_disconnected(self, callback: Callable[[RpcError], None]) -> Callable[[RpcError], None]:
        """Call `callback(reason)` when the connection ends in order."""
        return self._hooks.add("disconnected", callback)

    @property
    def url(self) -> str:
        """The address of the server this peer is connected to now (or was
        last, while it reconnects)."""
        return self._addresses.url

    @property
    def urls(self) -> Tuple[str, ...]:
        """Every address this peer may connect to, in the order given."""
        return self._addresses.urls

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

    def check_requests_of(self, service: ServiceDescriptor) -> None:
        """A Client of `service` is made on this peer: if its requests carry
        rules (and this peer validates), check what it sends from now on
        (validation.Validation, innermost). Peers whose services have no
        rules keep their fast path."""
        if self._validate and not self._validating and service_has_rules(service):
            self._validating = True
            self._interception = interception(self._interceptors, innermost=[Validation()])

    def call(self, method: str, payload: Payload, decode: Callable[[Any], Any],
             timeout: Optional[float] = None,
             metadata: Optional[Mapping[str, str]] = None) -> Any:
        """Low level: call "/pkg.Service/Method" with serialized `payload`."""
        if self._interception is None:
            return self._connection.outgoing.call(method, payload, decode, timeout, metadata)
        return self._intercepted("call", method, lambda md: self._connection.outgoing.call(
            method, payload, decode, timeout, md), payload, metadata=metadata)

    def call_future(self, method: str, payload: Payload, decode: Callable[[Any], Any],
                    timeout: Optional[float] = None,
                    metadata: Optional[Mapping[str, str]] = None) -> CallFuture:
        if self._interception is None:
            return self._connection.outgoing.call_future(method, payload, decode, timeout,
                                                         metadata)
        return self._intercepted("call_future", method, lambda md: self._connection.outgoing.
                                 call_future(method, payload, decode, timeout, md), payload,
                                 metadata=metadata)

    def open_stream(self, method: str, payload: Payload, decode: Callable[[Any], Any],
                    timeout: Optional[float] = None,
                    metadata: Optional[Mapping[str, str]] = None,
                    window: int = DEFAULT_STREAM_WINDOW) -> ServerStream:
        """Low level: open server stream "/pkg.Service/Method"; iterate it."""
        return self._intercepted("stream", method, lambda md: self._connection.outgoing.
                                 open_stream(method, payload, decode, timeout, md, window),
                                 payload, metadata=metadata)

    def notify(self, method: str, payload: Payload, metadata: Optional[Mapping[str, str]] = None,
               confirm: bool = False, timeout: Optional[float] = None) -> None:
        """Low level: send notification "/pkg.Service/Method" (see NotifyMethod)."""
        self._intercepted("notify", method, lambda md: self._connection.outgoing.notify(
            method, payload, md, confirm, timeout), payload, metadata=metadata)

    # ------------------------------------------- publish/subscribe, queues, broadcast

    def publish(self, method: str, topic: str, payload: bytes, confirm: bool = False,
                timeout: Optional[float] = None) -> None:
        """Publish on `topic` of PUBLISH_SUBSCRIBE `method` through the
        server. With `confirm`, return once the server handed it to the
        subscriptions (RpcError if it refused, e.g. UNIMPLEMENTED)."""
        check_topic(topic)
        self._intercepted("publish", method, lambda md: self._connection.outgoing.publish(
            Publish(method, topic, payload), confirm, timeout), payload, topic)

    def subscribe(self, method: str, pattern: str, decode: Callable[[Any], Any],
                  callback: Optional[Callable[[Received], None]] = None, *,
                  queue_limit: int = 0, policy: int = DROP_OLDEST,
                  timeout: Optional[float] = None,
                  queue_bytes: int = DEFAULT_RECEIVER_QUEUE_BYTES) -> Subscription:
        """Subscribe to the topics matching `pattern` of `method`; returns
        once the server has registered it. See Subscription."""
        check_pattern(pattern)
        return self._intercepted("subscribe", method, lambda md: self._subscribe(
            method, pattern, decode, callback, queue_limit, policy, timeout, queue_bytes),
            target=pattern)

    def _subscribe(self, method: str, pattern: str, decode: Callable[[Any], Any],
                   callback: Optional[Callable[[Received], None]], queue_limit: int,
                   policy: int, timeout: Optional[float], queue_bytes: int) -> Subscription:
        sid = next(self._ids)
        sub: Subscription = Subscription(sid, method, pattern, queue_limit or DEFAULT_QUEUE_LIMIT,
                                         policy, decode, callback,
                                         grant=lambda items: self._connection.grant(
                                             Credit(items, subscription_id=sid)),
                                         unsubscribe=self._unsubscribe, queue_bytes=queue_bytes)
        self._receivers.add_subscription(sub)
        try:
            self._register(sub, timeout)
        except BaseException:
            self._receivers.remove_subscription(sid)
            sub.close(RpcError(StatusCode.CANCELLED, "subscribing failed"))
            # Timed out, say, while the server did register it: undo that.
            self._quietly(Unsubscribe(sid))
            raise
        return sub

    def _register(self, what: Any, timeout: Optional[float]) -> None:
        frame: CallFrame
        if isinstance(what, Subscription):
            frame = Subscribe(what.id, what.method, what.pattern, what.queue_limit, what.policy)
        else:
            frame = Consume(what.id, what.method, what.prefetch)
        self._connection.outgoing.call_frame(frame, timeout)

    def _unsubscribe(self, sub: Subscription) -> None:
        if self._receivers.remove_subscription(sub.id) is not None:
            self._quietly(Unsubscribe(sub.id))

    def produce(self, method: str, payload: bytes, timeout: Optional[float] = None) -> None:
        """Put a task on work queue `method`; returns once the queue has it
        (RESOURCE_EXHAUSTED when it is full)."""
        self._intercepted("produce", method, lambda md: self._connection.outgoing.call_frame(
            Produce(method, payload), timeout), payload, method)

    def consume(self, method: str, decode: Callable[[Any], Any],
                handler: Callable[[Any, TaskContext], Any], prefetch: int = 1,
                timeout: Optional[float] = None) -> Consumer:
        """Take tasks of work queue `method`: `handler(task, context)` runs
        for each, up to `prefetch` at once. See Consumer."""
        if not 1 <= prefetch <= MAX_PREFETCH:
            raise ValueError(f"prefetch must be 1..{MAX_PREFETCH}, not {prefetch}")
        return self._intercepted("consume", method, lambda md: self._consume(
            method, decode, handler, prefetch, timeout), target=method)

    def _consume(self, method: str, decode: Callable[[Any], Any],
                 handler: Callable[[Any, TaskContext], Any], prefetch: int,
                 timeout: Optional[float]) -> Consumer:
        cid = next(self._ids)
        consumer = Consumer(cid, method, prefetch, decode, handler,
                            done=lambda task_id, code, message: self._task_done(
                                cid, task_id, code, message),
                            withdraw=self._withdraw)
        self._receivers.add_consumer(consumer)
        try:
            self._register(consumer, timeout)
        except BaseException:
            self._receivers.remove_consumer(cid)
            consumer.stopped = True
            self._quietly(Consume(cid, method, stop=True))
            raise
        return consumer

    def _task_done(self, consumer_id: int, task_id: int, code: int, message: str) -> None:
        self._connection.outgoing.send_one_way(TaskDone(consumer_id, task_id, code, message))

    def _withdraw(self, consumer: Consumer) -> None:
        if self._receivers.remove_consumer(consumer.id) is not None:
            connection = self._connection
            if connection.suspended or connection.closed:
                # Nobody to tell now: the server hands its tasks back when
                # the session ends, or when a resumed one closes.
                self._quietly(Consume(consumer.id, consumer.method, stop=True))
                return
            try:
                self._connection.outgoing.call_frame(
                    Consume(consumer.id, consumer.method, stop=True), self._timeout)
            except RpcError as exc:
                log.info("withdrawing consumer %d of %s: %s", consumer.id, consumer.method,
                         exc.message)

    def broadcast(self, method: str, payload: bytes, confirm: bool = False,
                  timeout: Optional[float] = None) -> None:
        """Broadcast through the server to every other connected peer."""
        self._intercepted("broadcast", method, lambda md: self._send_frame(
            Broadcast(method, payload), confirm, timeout), payload)

    def listen(self, method: str, decode: Callable[[Any], Any],
               callback: Optional[Callable[[Received], None]] = None,
               queue_limit: int = DEFAULT_LISTENER_QUEUE,
               queue_bytes: int = DEFAULT_RECEIVER_QUEUE_BYTES) -> BroadcastListener:
        """Hear the broadcasts of `method`, as `callback(received)` or by
        iterating the returned listener."""
        return self._intercepted("listen", method, lambda md: self._listen(
            method, decode, callback, queue_limit, queue_bytes))

    def _listen(self, method: str, decode: Callable[[Any], Any],
                callback: Optional[Callable[[Received], None]], queue_limit: int,
                queue_bytes: int) -> BroadcastListener:
        listener: BroadcastListener = BroadcastListener(method, decode, callback,
                                                        self._receivers.unlisten,
                                                        queue_limit, queue_bytes)
        self._receivers.add_listener(listener)
        return listener

    def _send_frame(self, frame: CallFrame, confirm: bool, timeout: Optional[float]) -> None:
        """A pattern frame: with `confirm`, as a call the server answers."""
        if confirm:
            self._connection.outgoing.call_frame(frame, timeout)
        else:
            self._connection.outgoing.send_one_way(frame)

    def _intercepted(self, kind: str, method: str, send: Callable[[Mapping[str, str]], Any],
                     payload: Optional[Payload] = None, target: str = "",
                     metadata: Optional[Mapping[str, str]] = None) -> Any:
        """`send(metadata)` through this peer's interceptors, which see
        (and may change) a copy of `metadata`, and the payload as bytes."""
        chain = self._interception
        if chain is None:
            return send(metadata or _NO_METADATA)
        action = Action(kind, method, target, peer=self.info, address=self.url,
                        metadata=dict(metadata or _NO_METADATA),
                        payload=bytes(payload) if isinstance(payload, Pieces) else payload)
        return chain.run(action, lambda: send(action.metadata))

    # ------------------------------------------- ConnectionOwner: the driver calls

    def serve(self, call: Context, event: Any) -> None:
        """A peer serves no methods: the server's calls are refused."""
        raise RpcError(StatusCode.UNIMPLEMENTED, "this peer serves no methods")

    def on_pattern_event(self, connection: Connection, event: Any) -> None:
        """From the connection's reader: what the server pushed."""
        kind = type(event)
        if kind is ev.DeliverReceived:
            sub = self._receivers.subscription(event.subscription_id)
            if sub is not None:
                sub.deliver(event.payload, event.topic, event.publisher, event.publisher_seq,
                            event.dropped)
        elif kind is ev.TaskReceived:
            consumer = self._receivers.consumer(event.consumer_id)
            if consumer is not None:
                consumer.task(event.task_id, event.attempt, event.payload)
            else:  # withdrawn meanwhile: give it back at once
                connection.outgoing.send_one_way(TaskDone(event.consumer_id, event.task_id,
                                                 StatusCode.UNAVAILABLE, "consumer withdrawn"))
        elif kind is ev.BroadcastReceived:
            self._receivers.deliver_broadcast(event.method, event.payload, event.origin)
        else:
            refuse_pattern_event(connection, event)

    def _restore(self, connection: Connection) -> None:
        """A new session: register the subscriptions and consumers again
        (the old session's were lost with it)."""
        receivers = self._receivers
        for what in [*receivers.subscriptions(), *receivers.consumers()]:
            if connection is not self._connection or connection.closed:
                return
            if isinstance(what, Subscription):
                what.restarted()
            try:
                self._register(what, self._timeout)
            except RpcError as exc:
                log.warning("could not restore %r on %s: %s", what, self.url, exc.message)

    def _quietly(self, frame: OutFrame) -> None:
        """Send a frame that only matters while the session lives."""
        try:
            self._connection.outgoing.send_one_way(frame)
        except RpcError:
            pass  # the session is gone, and what it held with it

    def close(self, grace: Optional[float] = None) -> None:
        """Close the connection in order: refuse new calls (UNAVAILABLE), let
        calls in flight finish for up to `grace` seconds, then send Close.
        Calls still pending after that fail with UNAVAILABLE."""
        self._closing = True
        if self._reconnector is not None and self._reconnector is not gevent.getcurrent():
            self._reconnector.kill()
        old = self._connection
        if old.suspended and not old.closed:
            # Between connections: come back once, briefly, to end the
            # session in order. Otherwise the server would keep it (and the
            # tasks of its consumers) until its grace period runs out.
            with gevent.Timeout(CLOSE_RECONNECT_TIMEOUT, False):
                self._attempt(old, self._addresses.home, resume_only=True)
        for consumer in self._receivers.consumers():
            consumer.stop(grace or 0)  # running tasks finish, the rest go back in order
        if grace:
            self._connection.drain(grace)
        self._connection.close(StatusCode.UNAVAILABLE, "peer closed the connection")
        self._receivers.close_all(PeerLost("the peer was closed"))

    def __enter__(self) -> "Peer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Peer {self.url} {state}>"

    # ------------------------------------------------------------ reconnect

    def _connect(self, dialed: Dialed) -> Connection:
        """A Connection working for this peer over a fresh session."""
        connection = Connection(dialed.stream, dialed.session, self, limits=self._limits,
                                session_grace=self._grace())
        self._connection = connection
        connection.start(dialed.events)
        return connection

    def on_closed(self, connection: Connection) -> None:
        """The driver ended `connection`: tell users, come back if we may."""
        if connection is not self._connection:
            return
        report = connection.end_to_report()
        if report is not None:
            # "disconnected": e.g. the server stopped gracefully; come back when it does.
            self._hooks.fire(report, connection.close_reason)
        if self._reconnect.enabled and not self._closing and self._reconnector is None:
            self._reconnector = gevent.spawn(self._come_back, connection)
        elif not self._reconnect.enabled and connection.close_reason is not None:
            self._receivers.close_all(connection.close_reason)

    def on_suspended(self, connection: Connection, reason: RpcError) -> None:
        """The driver lost the stream but kept the session: resume it."""
        self._hooks.fire("lost", reason)
        if not self._closing and self._reconnector is None:
            self._reconnector = gevent.spawn(self._come_back, connection)

    def _come_back(self, old: Connection) -> None:
        """Reconnect with capped exponential backoff between rounds over
        the addresses: resume `old` if it is still suspended, else start a
        new session."""
        try:
            for delay in self._reconnect.delays(self._rng):
                if self._closing:
                    return
                gevent.sleep(delay)
                if self._round(old):
                    return
        finally:
            self._reconnector = None

    def _round(self, old: Connection) -> bool:
        """Try the addresses once, in the policy's order (failover.py);
        True once connected. While `old` may still resume, only its own
        server is tried: its resume token goes nowhere else."""
        home = self._addresses.home
        for index in self._addresses.round(resumable=old.suspended):
            if self._closing:
                return False
            if old.suspended and index != home:
                return False  # not refused, so it may come back: wait for it
            if self._attempt(old, index):
                return True
        return False

    def _attempt(self, old: Connection, index: int, resume_only: bool = False) -> bool:
        """Connect once to address `index`: resume `old` if it is suspended
        and this is its server and it still has it, else (unless
        `resume_only`) start a new session."""
        dialer = self._dialers[index]
        url = dialer.url
        resuming = old.suspended and index == self._addresses.home
        try:
            dialed = dialer.dial(resume=old.session if resuming else None)
        except OSError as exc:
            if resuming and exc.errno in _NOBODY_THERE:
                # The server process is gone, and its sessions with it.
                old.abort(PeerLost(f"{url} is gone ({exc.strerror or exc}): "
                                   f"the session ended with it"))
            elif len(self._dialers) > 1:
                log.info("reconnecting to %s failed: %s", url, exc.strerror or exc)
            return False
        except RpcError as exc:
            log.info("reconnecting to %s failed: %s", url, exc.message)
            return False
        stream, session, handshaken, events = dialed
        if handshaken.resumed:
            if old.suspended:
                old.resume(stream, session, events)
                self._hooks.fire("resumed", handshaken.session_id)
                return True
            # We gave the session up while the server was resuming it: end
            # it there too, then start afresh (call ids must not restart
            # inside a live session).
            refuse(stream, session, StatusCode.UNAVAILABLE, "the client gave this session up")
            stream.close()
            return False
        if resume_only:
            refuse(stream, session, StatusCode.UNAVAILABLE, "the client is closing")
            stream.close()
            return False
        left = self._addresses.url
        if not old.closed:
            old.abort(PeerLost(f"the server no longer has session {old.session.session_id} "
                               f"(it restarted, or the session outlived its grace period)"
                               if index == self._addresses.home else
                               f"moved to {url}: session {old.session.session_id} "
                               f"stays behind on {left}"))
        self._addresses.home = index
        connection = self._connect(dialed)
        if url != left:
            log.warning("failed over from %s to %s with a new session %s", left, url,
                        handshaken.session_id)
        else:
            log.info("reconnected to %s with a new session %s", url, handshaken.session_id)
        if self._receivers.subscriptions() or self._receivers.consumers():
            gevent.spawn(self._restore, connection)
        self._hooks.fire("reconnected", handshaken.session_id)
        return True

    def _grace(self) -> float:
        return self._reconnect.grace if self._reconnect.enabled else 0.0


# Connecting failed in a way that says no server is there at all.
_NOBODY_THERE = (errno.ECONNREFUSED, errno.ENOENT)


def connect(url: Union[str, Sequence[str]], *, name: Optional[str] = None,
            timeout: Optional[float] = DEFAULT_CONNECT_TIMEOUT,
            limits: Optional[Limits] = None,
            heartbeat: Optional[Heartbeat] = None,
            reconnect: Optional[Reconnect] = None,
            metadata: Optional[Mapping[str, str]] = None,
            server_uid: Optional[int] = None,
            auth: Optional[SharedSecret] = None,
            tls: Optional[TlsSetting] = None,
            interceptors: Sequence[InterceptorLike] = (),
            validate: bool = True,
            balance: str = PICK_FIRST) -> Peer:
    """Connect to a server and finish the handshake, or raise RpcError.

    UNAVAILABLE (PeerLost) if nothing answers, DEADLINE_EXCEEDED if the
    handshake takes longer than `timeout`, FAILED_PRECONDITION on a
    protocol version mismatch. `reconnect` (default: on) says how the peer
    comes back when the connection breaks later. `server_uid`: on a unix
    socket, the uid the server's process must run as (checked by the
    kernel, every connect): UNAUTHENTICATED otherwise, so a socket path
    squatted by another user is refused. `auth`: prove to the server that
    we know its shared secret, and require it to prove it too
    (UNAUTHENTICATED otherwise). `tls` (rpc.TLS or an ssl.SSLContext) for
    a tls:// URL: by default the server's certificate is checked against
    the system's CAs and the URL's host. `interceptors` run, first to
    last, around everything the peer sends (see rpc.Action: on this side
    they may add metadata to calls, streams and notifications).
    `validate`: a Client made on this peer checks its requests against
    their contract's rules before sending them (INVALID_ARGUMENT at once;
    see onedrive_rpc.validation); False leaves it to the server.

    `url` may be a list of servers to fail over between (README
    "Failover", onedrive_rpc/failover.py): `balance` is "pick_first" (the
    first that works; on a failure the next, wrapping around) or
    "round_robin" (each new connection starts at the next address). Each
    address gets `timeout`; if none answers, the error names every one and
    why. `auth`, `metadata` and `interceptors` apply to every server,
    `tls` to the tls:// ones, `server_uid` to the unix:// ones. A list of
    one URL is that URL.
    """
    addresses = Addresses(url, balance)
    limits = limits or Limits()
    heartbeat = heartbeat or Heartbeat()
    reconnect = reconnect or Reconnect()
    peer_id, my_name, pid = local_identity(name)

    def open_session(**resume: Any) -> Session:
        return Session(Role.CLIENT, peer_id=peer_id, name=my_name, pid=pid,
                       max_frame_size=limits.max_frame_size, metadata=metadata,
                       heartbeat_interval=heartbeat.interval,
                       heartbeat_misses=heartbeat.misses,
                       max_metadata_size=limits.max_metadata_size,
                       max_metadata_entries=limits.max_metadata_entries,
                       max_concurrent_calls=limits.max_concurrent_calls,
                       max_call_bytes=limits.max_call_bytes,
                       secret=auth.secret if auth is not None else None, **resume)

    if len(addresses) == 1:
        only = addresses.url
        dialer = Dialer(only, timeout, open_session, server_uid, tls=tls)
        try:
            dialed = dialer.dial()
        except OSError as exc:
            raise PeerLost(f"cannot connect to {only}: {exc.strerror or exc}") from exc
        return Peer(dialer, dialed, limits=limits, reconnect=reconnect,
                    interceptors=interceptors, validate=validate, addresses=addresses)
    dialers = [Dialer(u, timeout, open_session, *_settings_for(u, server_uid, tls))
               for u in addresses.urls]
    if tls is not None and all(d.tls is None for d in dialers):
        raise ValueError(f"tls= is for tls:// URLs, and none of {list(addresses.urls)} is one")
    if server_uid is not None and all(d.server_uid is None for d in dialers):
        raise ValueError(f"server_uid= is for unix:// URLs, and none of "
                         f"{list(addresses.urls)} is one")
    failures: List[Tuple[str, Exception]] = []
    for index in addresses.initial():
        try:
            dialed = dialers[index].dial()
        except (OSError, RpcError) as exc:
            failures.append((addresses.urls[index], exc))
            continue
        addresses.home = index
        if failures:
            log.warning("connected to %s; %s", addresses.url, _reasons(failures))
        return Peer(dialers, dialed, limits=limits, reconnect=reconnect,
                    interceptors=interceptors, validate=validate, addresses=addresses)
    message = f"cannot connect to any of {len(failures)} servers: {_reasons(failures)}"
    codes = {exc.code for _, exc in failures if isinstance(exc, RpcError)}
    if len(codes) == 1 and all(isinstance(exc, RpcError) for _, exc in failures):
        # All refused us alike (e.g. UNAUTHENTICATED): say that, not "unavailable".
        raise RpcError(codes.pop(), message) from failures[-1][1]
    raise PeerLost(message) from failures[-1][1]


def _settings_for(url: str, server_uid: Optional[int],
                  tls: Optional[TlsSetting]) -> Tuple[Optional[int], Optional[TlsSetting]]:
    """The `server_uid` and `tls` that apply to `url` of a list: the uid to
    unix:// sockets, TLS to the schemes that speak it."""
    transport, parsed = transport_for(url)
    return (server_uid if parsed.scheme.lower() == "unix" else None,
            tls if isinstance(transport, SecureTransport) else None)


def _reasons(failures: Sequence[Tuple[str, Exception]]) -> str:
    """ "url: why; url: why" for an error message."""
    parts = []
    for url, exc in failures:
        if isinstance(exc, RpcError):
            why = f"{exc.code.name} {exc.message}"
        else:
            why = str(getattr(exc, "strerror", None) or exc)
        parts.append(f"{url}: {why}")
    return "; ".join(parts)
