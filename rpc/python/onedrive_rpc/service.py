"""Services from protobuf descriptors: methods map to snake_case callbacks.

    class Echo(rpc.Service):
        descriptor = echo_pb2.DESCRIPTOR.services_by_name["Echo"]

        def echo(self, request, context):
            return request

A method the subclass does not define answers UNIMPLEMENTED. The generated
`FooBase` classes (codegen) are thin subclasses of `Service`.
"""
from __future__ import annotations

import logging
import secrets
import traceback
from typing import Any, Callable, ClassVar, Dict, List, NamedTuple, Optional, Type, TypeVar

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from . import options_pb2
from .calls import CallAborted, Context
from .core.pubsub import MAX_QUEUE_LIMIT, Policy
from .errors import RpcError, StatusCode
from .interceptors import Action, Interception, parse
from .naming import malformed_method, snake_case
from .serialize import serialize

__all__ = ["Service", "MethodInfo", "Registry", "snake_case", "method_infos", "unimplemented",
           "prefetch", "policy"]

log = logging.getLogger(__name__)


class MethodInfo(NamedTuple):
    """What a method is, read from its descriptor."""

    name: str              # "GetItem"
    attribute: str         # "get_item"
    path: str              # "/pkg.Service/GetItem", as on the wire
    input_type: Type[Message]
    output_type: Type[Message]
    pattern: int           # an options_pb2.Pattern value, never PATTERN_DEFAULT


def _pattern(method: MethodDescriptor) -> int:
    if method.client_streaming:
        raise ValueError(f"{method.full_name}: client streaming is not a supported pattern")
    declared: int = method.GetOptions().Extensions[options_pb2.pattern]  # type: ignore[index]
    if declared == options_pb2.PATTERN_DEFAULT:
        return options_pb2.SERVER_STREAM if method.server_streaming else options_pb2.REQUEST_RESPONSE
    if method.server_streaming != (declared == options_pb2.SERVER_STREAM):
        raise ValueError(
            f"{method.full_name}: declared {options_pb2.Pattern.Name(declared)} but "
            f"{'returns' if method.server_streaming else 'does not return'} a stream")
    return declared


def method_infos(descriptor: ServiceDescriptor) -> List[MethodInfo]:
    """The methods of a service; ValueError naming the method if one makes no sense."""
    if not isinstance(descriptor, ServiceDescriptor):
        raise TypeError(f"expected a ServiceDescriptor, got {descriptor!r}")
    return [
        MethodInfo(m.name, snake_case(m.name), f"/{descriptor.full_name}/{m.name}",
                   GetMessageClass(m.input_type), GetMessageClass(m.output_type),
                   _pattern(m))
        for m in descriptor.methods
    ]


class Service:
    """Base class of hand-written and generated services.

    Set `descriptor` to the service's descriptor and define one method per
    RPC, named in snake_case, taking (request, context):

    - request/response: return the output message (or raise RpcError);
    - server stream: yield the output messages (a generator);
    - notification: handle it, return nothing;
    - publish/subscribe, producer/consumer and broadcast: optional. Defined,
      the server itself becomes a receiver: called for every message
      published on the method (any topic; context is the `Received`;
      `@rpc.policy("block")` for one that must lose nothing), as a
      consumer of its work queue (context is the `TaskContext`; returning
      acknowledges, raising retries; `@rpc.prefetch(n)` sets how many at
      once, default 1), or for every broadcast a peer sends (a `Received`).
    """

    descriptor: ClassVar[ServiceDescriptor]
    #: What interceptors and `authorize` see its calls as; None: "call",
    #: "stream" or "notify" by how each is used ("admin" for onedrive_rpc.Admin).
    action: ClassVar[Optional[str]] = None


_UNIMPLEMENTED = "__onedrive_rpc_unimplemented__"
_PREFETCH = "__onedrive_rpc_prefetch__"
_POLICY = "__onedrive_rpc_policy__"
FuncT = TypeVar("FuncT", bound=Callable[..., Any])


def unimplemented(func: FuncT) -> FuncT:
    """Mark a method as a placeholder (generated FooBase stubs): the server
    treats it as not defined (UNIMPLEMENTED; no server-side receiver)."""
    setattr(func, _UNIMPLEMENTED, True)
    return func


def prefetch(count: int) -> Callable[[FuncT], FuncT]:
    """How many tasks a service's own consumer method runs at once."""
    if not 1 <= count <= 10_000:
        raise ValueError(f"prefetch must be 1..10000, not {count}")

    def mark(func: FuncT) -> FuncT:
        setattr(func, _PREFETCH, count)
        return func
    return mark


def prefetch_of(func: Callable[..., Any]) -> int:
    return getattr(func, _PREFETCH, 1)


def policy(name: str, queue_limit: int = 0) -> Callable[[FuncT], FuncT]:
    """The slow-consumer policy (and queue limit, 0: the default) of a
    service's own subscriber method: "block" for a feed that must lose
    nothing (its publishers wait while it is behind)."""
    chosen = Policy.from_name(name)  # ValueError names the choices
    if not 0 <= queue_limit <= MAX_QUEUE_LIMIT:
        raise ValueError(f"queue_limit must be 0..{MAX_QUEUE_LIMIT}, not {queue_limit}")

    def mark(func: FuncT) -> FuncT:
        setattr(func, _POLICY, (int(chosen), queue_limit))
        return func
    return mark


def policy_of(func: Callable[..., Any]) -> "tuple[int, int]":
    """(policy, queue_limit) of a subscriber method; drop_oldest by default."""
    return getattr(func, _POLICY, (int(Policy.DROP_OLDEST), 0))


class _Handler(NamedTuple):
    info: MethodInfo
    # (request, context) -> reply, items, or None, by the method's pattern.
    func: Optional[Callable[..., Any]]
    # The action interceptors see (Service.action), None: by the pattern.
    action: Optional[str] = None


class Registry:
    """Full method path -> handler, for every service a server added."""

    def __init__(self, include_error_details: bool = False) -> None:
        self.include_error_details = include_error_details
        #: The server's interceptors (None: none, the handlers run directly).
        self.interception: Optional[Interception] = None
        self._handlers: Dict[str, _Handler] = {}
        self._services: Dict[str, Service] = {}

    @property
    def services(self) -> Dict[str, Service]:
        return dict(self._services)

    @property
    def services_view(self) -> Dict[str, Service]:
        """The live mapping of services added (not a copy)."""
        return self._services

    def add(self, service: Service) -> List["_Handler"]:
        """Add `service`; returns its methods with their functions (None
        where it defines none)."""
        descriptor = getattr(service, "descriptor", None)
        if descriptor is None:
            raise TypeError(f"{type(service).__name__} has no descriptor: set "
                            f"descriptor = <file>_pb2.DESCRIPTOR.services_by_name[...]")
        if descriptor.full_name in self._services:
            raise ValueError(f"service {descriptor.full_name} was already added")
        handlers = {}
        for info in method_infos(descriptor):
            func = getattr(service, info.attribute, None)
            if func is not None and not callable(func):
                raise TypeError(f"{type(service).__name__}.{info.attribute} is not callable")
            if getattr(func, _UNIMPLEMENTED, False):
                func = None
            handlers[info.path] = _Handler(info, func, service.action)
        self._handlers.update(handlers)
        self._services[descriptor.full_name] = service
        return list(handlers.values())

    def info(self, path: str) -> Optional[MethodInfo]:
        """What method `path` ("/pkg.Service/Method") is; None if not served."""
        handler = self._handlers.get(path)
        return handler.info if handler is not None else None

    def not_served(self, path: str) -> RpcError:
        """The error for a frame naming `path` when no method of that name
        is served: INVALID_ARGUMENT if it is no method name at all."""
        malformed = malformed_method(path)
        if malformed is not None:
            return RpcError(StatusCode.INVALID_ARGUMENT, malformed)
        return RpcError(StatusCode.UNIMPLEMENTED, self._unknown(path))

    def dispatch(self, call: Context, event: Any) -> None:
        """Run the handler of `event.method` (a call, a server stream or a
        notification), through the interceptors if there are any, and
        answer through its Context."""
        # How the caller sent it: a stream call asks for credit up front.
        if call.one_way:
            sent = _NOTIFICATION
        else:
            sent = _SERVER_STREAM if event.initial_credit else options_pb2.REQUEST_RESPONSE
        handler = self._handlers.get(event.method)
        chain = self.interception
        if chain is None:
            result = self._invoke(handler, sent, call, event, None)
        else:
            kind = handler.action if handler is not None and handler.action else _ACTION_OF[sent]
            action = Action.of(kind, event.method, "", call.origin,
                               metadata=event.metadata, context=call, payload=event.payload,
                               message_type=handler.info.input_type if handler else None)
            try:
                result = chain.run(action, lambda: self._invoke(handler, sent, call, event,
                                                                action))
            except (RpcError, CallAborted):
                raise
            except Exception as exc:
                raise self._internal(event.method, exc, "an interceptor") from None
            if handler is None:  # answered by an interceptor: nothing can check it
                raise self.not_served(event.method)
        info = handler.info  # type: ignore[union-attr]  # _invoke raised if None
        if sent == _SERVER_STREAM:
            self._stream(result, info, call)
        elif not call.one_way:
            if not isinstance(result, info.output_type):
                raise RpcError(StatusCode.INTERNAL,
                               f"handler of {info.path} returned {type(result).__name__}, "
                               f"expected {info.output_type.DESCRIPTOR.full_name}")
            call.reply(serialize(result))

    def _invoke(self, handler: Optional[_Handler], sent: int, call: Context, event: Any,
                action: Optional[Action]) -> Any:
        """The action itself: check the method is served as sent, decode
        the request, run the handler (a stream: its iterator, not yet run)."""
        if handler is None:
            raise self.not_served(event.method)
        info = handler.info
        if sent != info.pattern:
            raise RpcError(StatusCode.UNIMPLEMENTED, _wrong_use(info, sent))
        if handler.func is None:
            raise RpcError(StatusCode.UNIMPLEMENTED, f"method {info.path} is not implemented")
        # Decoded once, whoever asked first (an interceptor may have).
        request = action.request if action is not None else parse(info.input_type, event.payload)
        if sent == _SERVER_STREAM:
            call.streaming = True  # from here on, its end is a StreamEnd
        try:
            result = handler.func(request, call)
            return iter(result) if sent == _SERVER_STREAM else result
        except (RpcError, CallAborted):
            raise
        except Exception as exc:
            raise self._internal(info.path, exc) from None

    def _stream(self, iterator: Any, info: MethodInfo, call: Context) -> None:
        """Send what a server-stream handler yields, as the caller's credit
        allows; its end (or error) ends the stream."""
        output_type = info.output_type
        try:
            for item in iterator:
                if not isinstance(item, output_type):
                    raise RpcError(StatusCode.INTERNAL,
                                   f"handler of {info.path} yielded {type(item).__name__}, "
                                   f"expected {output_type.DESCRIPTOR.full_name}")
                call.send_item(serialize(item))
        except (RpcError, CallAborted):
            raise
        except Exception as exc:
            raise self._internal(info.path, exc) from None
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # a generator left early runs its finally blocks now
        call.reply(b"")

    def _internal(self, path: str, exc: Exception, who: str = "handler") -> RpcError:
        """A handler (or interceptor) raised: log it with an error id, and tell the caller
        INTERNAL with the exception's type and that id. Its text and
        traceback may hold secrets ("db password is ..."): the caller gets
        them only when the server opted in (include_error_details)."""
        error_id = secrets.token_hex(6)
        log.exception("%s of %s failed (error id %s)", who, path, error_id)
        if self.include_error_details:
            details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            return RpcError(StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}", details)
        return RpcError(StatusCode.INTERNAL, f"{type(exc).__name__} (error id {error_id}: the "
                                             f"server's log has the details)")

    def _unknown(self, path: str) -> str:
        service, _, method = path.lstrip("/").partition("/")
        if service in self._services:
            return f"service {service} has no method {method!r}"
        return f"unknown service {service!r} (this server has: {', '.join(sorted(self._services)) or 'none'})"


_NOTIFICATION = options_pb2.NOTIFICATION
_SERVER_STREAM = options_pb2.SERVER_STREAM

#: The action a peer asks for, by how it sent it.
_ACTION_OF: Dict[int, str] = {
    options_pb2.REQUEST_RESPONSE: "call",
    _SERVER_STREAM: "stream",
    _NOTIFICATION: "notify",
}

_HOW_TO_USE: Dict[int, str] = {
    options_pb2.REQUEST_RESPONSE: "call it",
    options_pb2.SERVER_STREAM: "call it and iterate the stream",
    options_pb2.NOTIFICATION: "send it as a notification",
    options_pb2.PUBLISH_SUBSCRIBE: "publish or subscribe to it",
    options_pb2.PRODUCER_CONSUMER: "produce to it or consume from it",
    options_pb2.BROADCAST: "broadcast it or listen to it",
}


_SENT_AS: Dict[int, str] = {
    options_pb2.REQUEST_RESPONSE: "a call",
    options_pb2.SERVER_STREAM: "a stream call",
    options_pb2.NOTIFICATION: "a notification",
}


def _wrong_use(info: MethodInfo, sent: int) -> str:
    return (f"{info.path} is a {options_pb2.Pattern.Name(info.pattern)} method, sent "
            f"{_SENT_AS[sent]}: {_HOW_TO_USE[info.pattern]}")
