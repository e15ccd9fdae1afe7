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
import re
import traceback
from typing import Callable, ClassVar, Dict, List, NamedTuple, Optional, Type

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from . import options_pb2
from .core import events as ev
from .calls import CallAborted, Context
from .errors import RpcError, StatusCode

__all__ = ["Service", "MethodInfo", "Registry", "snake_case", "method_infos"]

log = logging.getLogger("onedrive_rpc")

_WORD_BOUNDARY = re.compile(r"((?<=[a-z0-9])[A-Z]|(?<!^)[A-Z](?=[a-z]))")


def snake_case(name: str) -> str:
    """GetItem -> get_item, ListHTTPItems -> list_http_items."""
    return _WORD_BOUNDARY.sub(r"_\1", name).lower()


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
    declared = method.GetOptions().Extensions[options_pb2.pattern]
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
    RPC, named in snake_case, taking (request, context) and returning the
    output message (or raising RpcError).
    """

    descriptor: ClassVar[ServiceDescriptor]


class _Handler(NamedTuple):
    info: MethodInfo
    func: Optional[Callable[[Message, Context], Message]]


class Registry:
    """Full method path -> handler, for every service a server added."""

    def __init__(self, include_tracebacks: bool = False) -> None:
        self.include_tracebacks = include_tracebacks
        self._handlers: Dict[str, _Handler] = {}
        self._services: Dict[str, Service] = {}

    @property
    def services(self) -> Dict[str, Service]:
        return dict(self._services)

    def add(self, service: Service) -> None:
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
            handlers[info.path] = _Handler(info, func)
        self._handlers.update(handlers)
        self._services[descriptor.full_name] = service

    def dispatch(self, call: Context, event: ev.RequestReceived) -> None:
        """Run the handler of `event.method` and answer through the connection."""
        handler = self._handlers.get(event.method)
        if handler is None:
            raise RpcError(StatusCode.UNIMPLEMENTED, self._unknown(event.method))
        info = handler.info
        if info.pattern != options_pb2.REQUEST_RESPONSE:
            raise RpcError(StatusCode.UNIMPLEMENTED,
                           f"{info.path} is a {options_pb2.Pattern.Name(info.pattern)} method, "
                           f"which this version does not serve yet")
        if handler.func is None:
            raise RpcError(StatusCode.UNIMPLEMENTED, f"method {info.path} is not implemented")
        try:
            request = info.input_type.FromString(event.payload)
        except DecodeError as exc:
            raise RpcError(StatusCode.INVALID_ARGUMENT,
                           f"request does not parse as {info.input_type.DESCRIPTOR.full_name}: "
                           f"{exc}") from None
        try:
            reply = handler.func(request, call)
        except (RpcError, CallAborted):
            raise
        except Exception as exc:
            log.exception("handler of %s failed", info.path)
            details = None
            if self.include_tracebacks:
                details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            raise RpcError(StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}", details) from None
        if not isinstance(reply, info.output_type):
            raise RpcError(StatusCode.INTERNAL,
                           f"handler of {info.path} returned {type(reply).__name__}, "
                           f"expected {info.output_type.DESCRIPTOR.full_name}")
        call.connection.respond(call, reply.SerializeToString())

    def _unknown(self, path: str) -> str:
        service, _, method = path.lstrip("/").partition("/")
        if service in self._services:
            return f"service {service} has no method {method!r}"
        return f"unknown service {service!r} (this server has: {', '.join(sorted(self._services)) or 'none'})"
