"""rpc.Client(peer, service_descriptor): one callable attribute per method.

    client = rpc.Client(peer, echo_pb2.DESCRIPTOR.services_by_name["Echo"])
    reply = client.echo(echo_pb2.Msg(text="hi"), timeout=2.0)
    future = client.echo.future(msg)      # .get(timeout) like AsyncResult
"""
from __future__ import annotations

from typing import (Any, Callable, Dict, Generic, Mapping, Optional, Protocol, TypeVar, Union,
                    runtime_checkable)

from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from . import options_pb2
from .calls import DEFAULT_STREAM_WINDOW, CallFuture
from .core.framing import Payload
from .core.pubsub import Policy
from .patterns import (DEFAULT_LISTENER_QUEUE, DEFAULT_RECEIVER_QUEUE_BYTES, BroadcastListener,
                       Consumer, Received, Subscription, TaskContext)
from .serialize import serialize
from .service import MethodInfo, method_infos
from .streams import ServerStream

__all__ = ["Client", "Endpoint", "Caller", "PatternHost", "UnaryMethod", "StreamMethod",
           "NotifyMethod", "TopicMethod", "QueueMethod", "BroadcastMethod"]


class Caller(Protocol):
    """What calls, streams and notifications go through (a Peer)."""

    def call(self, method: str, payload: Payload, decode: Callable[[Any], Any],
             timeout: Optional[float] = None,
             metadata: Optional[Mapping[str, str]] = None) -> Any: ...

    def call_future(self, method: str, payload: Payload, decode: Callable[[Any], Any],
                    timeout: Optional[float] = None,
                    metadata: Optional[Mapping[str, str]] = None) -> CallFuture: ...

    def open_stream(self, method: str, payload: Payload, decode: Callable[[Any], Any],
                    timeout: Optional[float] = None,
                    metadata: Optional[Mapping[str, str]] = None,
                    window: int = DEFAULT_STREAM_WINDOW) -> ServerStream[Any]: ...

    def notify(self, method: str, payload: Payload, metadata: Optional[Mapping[str, str]] = None,
               confirm: bool = False, timeout: Optional[float] = None) -> None: ...


class PatternHost(Protocol):
    """What publishes, subscribes, produces, consumes, broadcasts and
    listens (a Peer, through its server; or a server's own broker)."""

    def publish(self, method: str, topic: str, payload: bytes, confirm: bool = False,
                timeout: Optional[float] = None) -> Any: ...

    def subscribe(self, method: str, pattern: str, decode: Callable[[Any], Any],
                  callback: Optional[Callable[[Received], None]] = None, *,
                  queue_limit: int = 0, policy: int = 0,
                  timeout: Optional[float] = None,
                  queue_bytes: int = DEFAULT_RECEIVER_QUEUE_BYTES) -> Subscription[Any]: ...

    def produce(self, method: str, payload: bytes, timeout: Optional[float] = None) -> Any: ...

    def consume(self, method: str, decode: Callable[[Any], Any],
                handler: Callable[[Any, TaskContext], Any], prefetch: int = 1,
                timeout: Optional[float] = None) -> Consumer: ...

    def broadcast(self, method: str, payload: bytes, confirm: bool = False,
                  timeout: Optional[float] = None) -> Optional[int]: ...

    def listen(self, method: str, decode: Callable[[Any], Any],
               callback: Optional[Callable[[Received], None]] = None,
               queue_limit: int = DEFAULT_LISTENER_QUEUE,
               queue_bytes: int = DEFAULT_RECEIVER_QUEUE_BYTES) -> BroadcastListener[Any]: ...


class PeerEndpoint(Caller, PatternHost, Protocol):
    """A connected peer: calls and patterns."""

    def check_requests_of(self, service: ServiceDescriptor) -> None:
        """A client of `service` works through it: check what it sends
        against the contract's rules (rpc.connect(validate=...))."""


@runtime_checkable
class HostsPatterns(Protocol):
    """A server: its `broker` hosts the patterns; it calls nobody."""

    @property
    def broker(self) -> PatternHost: ...


#: What a client works through: a connected peer, or a server itself (for
#: its own publish, produce, consume, broadcast and listen).
Endpoint = Union[PeerEndpoint, HostsPatterns]

RequestT = TypeVar("RequestT", bound=Message)
ReplyT = TypeVar("ReplyT", bound=Message)


class _Method:
    """One method of a service on a peer: checks and serializes requests."""

    __slots__ = ("_caller", "_host", "info", "_path", "_input", "_decode")

    def __init__(self, caller: Optional[Caller], host: PatternHost, info: MethodInfo) -> None:
        self._caller = caller
        self._host = host
        self.info = info
        self._path = info.path
        self._input = info.input_type
        self._decode = info.output_type.FromString

    def _calls(self) -> Caller:
        if self._caller is None:
            raise TypeError("a Server does not call its own methods: connect to it with rpc.connect()")
        return self._caller

    def _check(self, request: Message) -> None:
        if not isinstance(request, self._input):
            raise TypeError(f"{self.info.attribute}() takes a {self._input.DESCRIPTOR.full_name}, "
                            f"not {type(request).__name__}")

    def _payload(self, request: Message) -> Payload:
        self._check(request)
        return serialize(request)

    def __repr__(self) -> str:
        return f"<{options_pb2.Pattern.Name(self.info.pattern).lower()} method {self._path}>"


class UnaryMethod(_Method, Generic[RequestT, ReplyT]):
    """A request/response method: call it, or `.future()` it. Generated
    `.pyi` stubs give each one its request and reply types."""

    __slots__ = ()

    def __call__(self, request: RequestT, *, timeout: Optional[float] = None,
                 metadata: Optional[Mapping[str, str]] = None) -> ReplyT:
        """Send `request`, wait for the reply; RpcError on any failure."""
        caller = self._caller or self._calls()
        return caller.call(self._path, self._payload(request), self._decode, timeout, metadata)

    def future(self, request: RequestT, *, timeout: Optional[float] = None,
               metadata: Optional[Mapping[str, str]] = None) -> CallFuture:
        """Send `request` now; the returned future's get() gives the reply."""
        return self._calls().call_future(self._path, self._payload(request), self._decode,
                                         timeout, metadata)


class StreamMethod(_Method, Generic[RequestT, ReplyT]):
    """A server-stream method: `for item in client.watch(request): ...`."""

    __slots__ = ()

    def __call__(self, request: RequestT, *, timeout: Optional[float] = None,
                 metadata: Optional[Mapping[str, str]] = None,
                 window: int = DEFAULT_STREAM_WINDOW) -> ServerStream[ReplyT]:
        """Open the stream. `timeout` bounds the whole stream; `window` is
        how many items may wait here unread (the server waits beyond it)."""
        return self._calls().open_stream(self._path, self._payload(request), self._decode,
                                         timeout, metadata, window)


class NotifyMethod(_Method, Generic[RequestT]):
    """A notification method: one-way, no reply."""

    __slots__ = ()

    def __call__(self, request: RequestT, *, confirm: bool = False,
                 timeout: Optional[float] = None,
                 metadata: Optional[Mapping[str, str]] = None) -> None:
        """Send `request`. Returns at once; with `confirm=True`, once the
        peer has received it, or raises RpcError: UNAVAILABLE if the peer
        was lost (the notification is then withdrawn, unless the peer had it
        already), DEADLINE_EXCEEDED after `timeout` (it may still arrive)."""
        self._calls().notify(self._path, self._payload(request), metadata, confirm, timeout)


class _MessageMethod(_Method, Generic[RequestT]):
    """A method whose input messages travel on their own (published, queued
    or broadcast): its output type plays no part."""

    __slots__ = ()

    def _payload(self, request: Message) -> bytes:
        # In one piece: it may be handed to this process's own receivers.
        self._check(request)
        return request.SerializeToString()

    def _decode_input(self, payload: Any) -> RequestT:
        return self._input.FromString(payload)  # type: ignore[return-value]


class TopicMethod(_MessageMethod[RequestT]):
    """A publish/subscribe method: `publish(topic, message)`, and
    `subscribe(pattern, callback)` for topics like "drive.*.changed" or
    "drive.>" (`*` one level, `>` the rest)."""

    __slots__ = ()

    def publish(self, topic: str, message: RequestT, *, confirm: bool = False,
                timeout: Optional[float] = None) -> None:
        """Publish `message` on `topic`: every subscription whose pattern
        matches gets it once, in publish order. With `confirm`, return once
        the server has handed it out (RpcError if it refused). While a
        matching `block` subscriber is behind, the server holds publishers
        back: this waits, at most `timeout` seconds (DEADLINE_EXCEEDED, and
        the message was not sent)."""
        self._host.publish(self._path, topic, self._payload(message), confirm, timeout)

    def subscribe(self, pattern: str, callback: Optional[Callable[[Received], None]] = None, *,
                  queue_limit: int = 0, policy: str = "drop_oldest",
                  timeout: Optional[float] = None,
                  queue_bytes: int = DEFAULT_RECEIVER_QUEUE_BYTES) -> Subscription:
        """Receive what is published on topics matching `pattern`:
        `callback(received)` in a greenlet of its own, or iterate the
        returned Subscription. At most `queue_limit` messages wait for it
        (1024 by default); past that the server applies `policy`:
        "drop_oldest" (default), "drop_newest" (both counted in
        `subscription.dropped`), "disconnect" (the connection is closed
        with RESOURCE_EXHAUSTED) or "block" (nothing is dropped: the
        publishers wait until this subscriber catches up; should its
        connection be lost meanwhile, past the heartbeat bound or broken,
        it is treated as "disconnect"). Here, at most `queue_bytes` of
        payload wait unhandled (32 MiB; past it the same policy applies,
        counted in `subscription.overflowed`; "block" keeps it and grants
        the server no credit until below it again). It comes back by itself
        after a reconnect."""
        return self._host.subscribe(self._path, pattern, self._decode_input, callback,
                                    queue_limit=queue_limit, policy=int(Policy.from_name(policy)),
                                    timeout=timeout, queue_bytes=queue_bytes)


class QueueMethod(_MessageMethod[RequestT]):
    """A producer/consumer method: a work queue the server hosts."""

    __slots__ = ()

    def produce(self, task: RequestT, *, timeout: Optional[float] = None) -> None:
        """Put `task` on the queue; returns once the queue has it."""
        self._host.produce(self._path, self._payload(task), timeout)

    def consume(self, handler: Callable[[RequestT, TaskContext], Any], *, prefetch: int = 1,
                timeout: Optional[float] = None) -> Consumer:
        """Run `handler(task, context)` for tasks of the queue, up to
        `prefetch` at once; each task goes to one consumer, and returning
        acknowledges it. Raising (or this peer being lost) gives it to
        another consumer, `context.attempt` counting; after too many
        attempts it becomes a dead letter on the server."""
        return self._host.consume(self._path, self._decode_input, handler, prefetch, timeout)


class BroadcastMethod(_MessageMethod[RequestT]):
    """A broadcast method: to every peer connected to the server."""

    __slots__ = ()

    def broadcast(self, message: RequestT, *, confirm: bool = False,
                  timeout: Optional[float] = None) -> Optional[int]:
        """Send `message` to every other peer of the server. From the
        server itself: to every peer, returning how many."""
        return self._host.broadcast(self._path, self._payload(message), confirm, timeout)

    def listen(self, callback: Optional[Callable[[Received], None]] = None, *,
               queue_limit: int = DEFAULT_LISTENER_QUEUE,
               queue_bytes: int = DEFAULT_RECEIVER_QUEUE_BYTES) -> BroadcastListener:
        """Hear this method's broadcasts: `callback(received)`, or iterate. At
        most `queue_limit` (and `queue_bytes` of payload, 32 MiB) wait
        unhandled; then the oldest is dropped (counted in `listener.dropped`)."""
        return self._host.listen(self._path, self._decode_input, callback, queue_limit,
                                 queue_bytes)


class Client:
    """The methods of one service on a peer, by their snake_case names,
    each shaped by its pattern (see the *Method classes).

    `peer` may also be the Server itself: code in the serving process then
    publishes, produces, consumes, broadcasts and listens like a peer.
    """

    def __init__(self, peer: Endpoint, descriptor: ServiceDescriptor) -> None:
        self.peer = peer
        self.descriptor = descriptor
        self._methods: Dict[str, object] = {}
        caller: Optional[Caller] = None
        host: PatternHost
        if isinstance(peer, HostsPatterns):
            host = peer.broker  # a server: patterns only
        else:
            caller = host = peer
        for info in method_infos(descriptor):  # ValueError: declarations that make no sense
            method: object = _METHOD_KINDS[info.pattern](caller, host, info)
            self._methods[info.attribute] = method
            setattr(self, info.attribute, method)
        if not isinstance(peer, HostsPatterns):  # a peer checks what it sends
            peer.check_requests_of(descriptor)

    @property
    def methods(self) -> Dict[str, object]:
        return dict(self._methods)

    def __getattr__(self, name: str) -> Any:
        # Only for names that are not methods (those are set in __init__).
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(f"service {self.descriptor.full_name} has no method {name!r}; it has: "
                             f"{', '.join(sorted(self._methods)) or 'none'}")


_METHOD_KINDS: Dict[int, Any] = {
    options_pb2.REQUEST_RESPONSE: UnaryMethod,
    options_pb2.SERVER_STREAM: StreamMethod,
    options_pb2.NOTIFICATION: NotifyMethod,
    options_pb2.PUBLISH_SUBSCRIBE: TopicMethod,
    options_pb2.PRODUCER_CONSUMER: QueueMethod,
    options_pb2.BROADCAST: BroadcastMethod,
}
