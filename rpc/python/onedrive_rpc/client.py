"""rpc.Client(peer, service_descriptor): one callable attribute per method.

    client = rpc.Client(peer, echo_pb2.DESCRIPTOR.services_by_name["Echo"])
    reply = client.echo(echo_pb2.Msg(text="hi"), timeout=2.0)
    future = client.echo.future(msg)      # .get(timeout) like AsyncResult
"""
from __future__ import annotations

from typing import Dict, Generic, Mapping, Optional, TypeVar

from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from . import options_pb2
from .calls import DEFAULT_STREAM_WINDOW, CallFuture
from .errors import RpcError, StatusCode
from .peer import Peer
from .service import MethodInfo, method_infos
from .streams import ServerStream

__all__ = ["Client", "UnaryMethod", "StreamMethod", "NotifyMethod"]


RequestT = TypeVar("RequestT", bound=Message)
ReplyT = TypeVar("ReplyT", bound=Message)


class _Method:
    """One method of a service on a peer: checks and serializes requests."""

    __slots__ = ("_peer", "info", "_path", "_input", "_decode")

    def __init__(self, peer: Peer, info: MethodInfo) -> None:
        self._peer = peer
        self.info = info
        self._path = info.path
        self._input = info.input_type
        self._decode = info.output_type.FromString

    def _payload(self, request: Message) -> bytes:
        if not isinstance(request, self._input):
            raise TypeError(f"{self.info.attribute}() takes a {self._input.DESCRIPTOR.full_name}, "
                            f"not {type(request).__name__}")
        return request.SerializeToString()

    def __repr__(self) -> str:
        return f"<{options_pb2.Pattern.Name(self.info.pattern).lower()} method {self._path}>"


class UnaryMethod(_Method, Generic[RequestT, ReplyT]):
    """A request/response method: call it, or `.future()` it. Generated
    `.pyi` stubs give each one its request and reply types."""

    __slots__ = ()

    def __call__(self, request: RequestT, *, timeout: Optional[float] = None,
                 metadata: Optional[Mapping[str, str]] = None) -> ReplyT:
        """Send `request`, wait for the reply; RpcError on any failure."""
        return self._peer.call(self._path, self._payload(request), self._decode,
                               timeout, metadata)

    def future(self, request: RequestT, *, timeout: Optional[float] = None,
               metadata: Optional[Mapping[str, str]] = None) -> CallFuture:
        """Send `request` now; the returned future's get() gives the reply."""
        return self._peer.call_future(self._path, self._payload(request), self._decode,
                                      timeout, metadata)


class StreamMethod(_Method, Generic[RequestT, ReplyT]):
    """A server-stream method: `for item in client.watch(request): ...`."""

    __slots__ = ()

    def __call__(self, request: RequestT, *, timeout: Optional[float] = None,
                 metadata: Optional[Mapping[str, str]] = None,
                 window: int = DEFAULT_STREAM_WINDOW) -> ServerStream[ReplyT]:
        """Open the stream. `timeout` bounds the whole stream; `window` is
        how many items may wait here unread (the server waits beyond it)."""
        return self._peer.open_stream(self._path, self._payload(request), self._decode,
                                      timeout, metadata, window)


class NotifyMethod(_Method, Generic[RequestT]):
    """A notification method: one-way, no reply."""

    __slots__ = ()

    def __call__(self, request: RequestT, *, confirm: bool = False,
                 timeout: Optional[float] = None,
                 metadata: Optional[Mapping[str, str]] = None) -> None:
        """Send `request`. Returns at once; with `confirm=True`, once the
        peer has received it, or raises RpcError (UNAVAILABLE: the peer was
        lost and the notification will not arrive; DEADLINE_EXCEEDED after
        `timeout`: it may still arrive)."""
        self._peer.notify(self._path, self._payload(request), metadata, confirm, timeout)


class _NotYetSupported:
    """A method whose pattern this version cannot call yet: says so when used."""

    def __init__(self, info: MethodInfo) -> None:
        self.info = info

    def __call__(self, *args, **kwargs):
        raise RpcError(StatusCode.UNIMPLEMENTED,
                       f"{self.info.path} is a {options_pb2.Pattern.Name(self.info.pattern)} "
                       f"method, which this version cannot call yet")

    future = __call__


class Client:
    """Calls the methods of one service on a peer, by their snake_case names."""

    def __init__(self, peer: Peer, descriptor: ServiceDescriptor) -> None:
        self.peer = peer
        self.descriptor = descriptor
        self._methods: Dict[str, object] = {}
        for info in method_infos(descriptor):
            kind = _METHOD_KINDS.get(info.pattern)
            method: object = kind(peer, info) if kind is not None else _NotYetSupported(info)
            self._methods[info.attribute] = method
            setattr(self, info.attribute, method)

    @property
    def methods(self) -> Dict[str, object]:
        return dict(self._methods)


_METHOD_KINDS = {
    options_pb2.REQUEST_RESPONSE: UnaryMethod,
    options_pb2.SERVER_STREAM: StreamMethod,
    options_pb2.NOTIFICATION: NotifyMethod,
}
