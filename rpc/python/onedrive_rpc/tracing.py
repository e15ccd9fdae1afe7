"""OpenTelemetry tracing as interceptors (the `otel` extra:
`pip install onedrive-rpc[otel]`, which brings the OpenTelemetry API only;
pick an SDK and exporter yourself).

    from onedrive_rpc.tracing import ClientTracing, ServerTracing

    server = rpc.Server(url, interceptors=[ServerTracing()])
    peer = rpc.connect(url, interceptors=[ClientTracing()])

Every call, server stream, notification, publish, subscribe, produce,
consume and broadcast that goes through the interceptors gets a span
named after the method ("pkg.Service/Method"), with the attributes of the
OpenTelemetry RPC conventions: rpc.system "onedrive_rpc", rpc.service,
rpc.method, rpc.onedrive_rpc.status_code (the StatusCode number) and
rpc.onedrive_rpc.action (see rpc.ACTIONS), plus rpc.onedrive_rpc.target
(the topic or subscribed pattern) where there is one. Kinds: CLIENT and
SERVER for what is answered (calls, streams, subscribing, consuming),
PRODUCER and CONSUMER for one-way messages (notifications, publishes,
produces, broadcasts). A non-OK outcome sets the span's status to ERROR
with the code's name and message (a stream its caller stops early too:
CANCELLED). Put ServerTracing first among a server's interceptors, so its
spans cover the others and their refusals.

Calls, streams and notifications carry the trace context in their
metadata (W3C `traceparent`/`tracestate`, or whatever propagators the
application configured): the server's span is a child of the client's,
across processes. The frames of the other patterns carry no metadata, so
their spans are local to each side: a server's publish span is not
linked to its publisher's. Deliveries to subscribers and listeners pass
no interceptor and get no span; a work queue's task handler can be
wrapped with `traced_task`.

The server's span is current while its handler runs (a handler runs in
the greenlet that ran the interceptors; a server stream's handler runs
while its items are taken), so a call the handler makes through a peer
with ClientTracing is a child of it.
"""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Dict, Iterable, Optional, TypeVar

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind
except ImportError as exc:  # pragma: no cover (the otel extra is missing)
    raise ImportError(f"onedrive_rpc.tracing needs the OpenTelemetry API ({exc}): "
                      f"pip install onedrive-rpc[otel]") from exc

from . import __version__
from .calls import CallAborted, CallFuture
from .errors import RpcError, StatusCode
from .interceptors import Action, Interceptor, Proceed
from .patterns import TaskContext

__all__ = ["ClientTracing", "ServerTracing", "traced_task"]

#: The span kind of each action, by side ("listen" gets no span: on a
#: client it only registers a callback, on a server it is a permission
#: asked once per connection).
_CLIENT_KINDS: Dict[str, SpanKind] = {
    "call": SpanKind.CLIENT, "call_future": SpanKind.CLIENT, "stream": SpanKind.CLIENT,
    "subscribe": SpanKind.CLIENT, "consume": SpanKind.CLIENT,
    "notify": SpanKind.PRODUCER, "publish": SpanKind.PRODUCER, "produce": SpanKind.PRODUCER,
    "broadcast": SpanKind.PRODUCER,
}
_SERVER_KINDS: Dict[str, SpanKind] = {
    "call": SpanKind.SERVER, "stream": SpanKind.SERVER, "subscribe": SpanKind.SERVER,
    "consume": SpanKind.SERVER, "notify": SpanKind.CONSUMER, "publish": SpanKind.CONSUMER,
    "produce": SpanKind.CONSUMER, "broadcast": SpanKind.CONSUMER,
}

#: The actions whose frames carry metadata, hence the trace context.
_PROPAGATED = ("call", "call_future", "stream", "notify")

_TRACER_NAME = "onedrive_rpc"


def _tracer(tracer_provider: Optional[trace.TracerProvider]) -> trace.Tracer:
    return trace.get_tracer(_TRACER_NAME, __version__, tracer_provider)


def _names(method: str) -> "tuple[str, str, str]":
    """"/pkg.Service/Method" -> ("pkg.Service/Method", "pkg.Service", "Method")."""
    name = method.lstrip("/")
    service, _, short = name.rpartition("/")
    return name, service, short


#: The span name of an action on a method the server does not serve: a
#: peer may name any method, and span names are meant to be few.
UNKNOWN = "(unknown)"


def _start(tracer: trace.Tracer, action: Action, kind: SpanKind,
           parent: Optional[otel_context.Context] = None, known: bool = True) -> trace.Span:
    name, service, method = _names(action.method) if known else (UNKNOWN, UNKNOWN, UNKNOWN)
    attributes = {"rpc.system": "onedrive_rpc", "rpc.service": service, "rpc.method": method,
                  "rpc.onedrive_rpc.action": action.kind}
    if action.target and action.target != action.method:
        attributes["rpc.onedrive_rpc.target"] = action.target
    return tracer.start_span(name, context=parent, kind=kind, attributes=attributes)


def _end(span: trace.Span, error: Optional[BaseException]) -> None:
    """Record the outcome (`error`: None for OK) and end `span`."""
    if error is None:
        span.set_attribute("rpc.onedrive_rpc.status_code", int(StatusCode.OK))
    elif isinstance(error, (RpcError, CallAborted)):
        span.set_attribute("rpc.onedrive_rpc.status_code", int(error.code))
        span.set_status(trace.StatusCode.ERROR, f"{error.code.name}: {error.message}")
    else:
        # A task handler's exception, or a bug in an interceptor: the
        # caller gets INTERNAL, the span the exception itself.
        span.record_exception(error)
        span.set_attribute("rpc.onedrive_rpc.status_code", int(StatusCode.INTERNAL))
        span.set_status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}")
    span.end()


class ClientTracing(Interceptor):
    """A client interceptor (`rpc.connect(url, interceptors=[...])`): a
    span for everything the peer sends, and the trace context in the
    metadata of calls, streams and notifications. `tracer_provider`:
    default the global one."""

    def __init__(self, tracer_provider: Optional[trace.TracerProvider] = None) -> None:
        self._tracer = _tracer(tracer_provider)

    def intercept(self, action: Action, proceed: Proceed) -> Any:
        kind = _CLIENT_KINDS.get(action.kind)
        if kind is None:
            return proceed()
        span = _start(self._tracer, action, kind)
        if action.kind in _PROPAGATED:
            # A client's interceptors get a copy of the metadata to change.
            propagate.inject(action.metadata, trace.set_span_in_context(span))
        try:
            result = proceed()
        except BaseException as exc:
            _end(span, exc)
            raise
        if action.kind == "call_future":
            # The call goes on after proceed(): the span ends with it.
            future: CallFuture = result
            future.rawlink(lambda outcome: _end(span, outcome.exception))
            return future
        if action.kind == "stream":
            # Its span ends when the caller is done with it (ServerStream.when_done).
            result.when_done(lambda error, items: _end(span, error))
            return result
        _end(span, None)
        return result


class ServerTracing(Interceptor):
    """A server interceptor (`rpc.Server(url, interceptors=[...])`): a
    span for every action a peer asks, the child of the caller's span
    where the frame carried its trace context, current while the handler
    runs. `tracer_provider`: default the global one."""

    def __init__(self, tracer_provider: Optional[trace.TracerProvider] = None) -> None:
        self._tracer = _tracer(tracer_provider)

    def intercept(self, action: Action, proceed: Proceed) -> Any:
        kind = _SERVER_KINDS.get(action.kind)
        call = action.context
        if kind is None and call is not None:
            # A call to a service that names its calls' action itself ("admin").
            kind = SpanKind.CONSUMER if call.one_way else SpanKind.SERVER
        if kind is None:
            return proceed()
        span = _start(self._tracer, action, kind, propagate.extract(action.metadata),
                      known=action.served)
        current = trace.set_span_in_context(span)
        token = otel_context.attach(current)
        try:
            result = proceed()
        except BaseException as exc:
            _end(span, exc)
            raise
        finally:
            otel_context.detach(token)
        if action.kind == "stream" or (call is not None and call.streaming):
            # The handler's iterator, not yet run: the span lasts until its end.
            return _TracedItems(result, span, current)
        _end(span, None)
        return result


class _TracedItems:
    """A server stream's items, taken with its span current; the span ends
    with the stream: at its end, its error, or when it is stopped."""

    __slots__ = ("_items", "_span", "_current")

    def __init__(self, items: Iterable[Any], span: trace.Span,
                 current: otel_context.Context) -> None:
        self._items = iter(items)  # an interceptor further in may have answered with a list
        self._span: Optional[trace.Span] = span
        self._current = current

    def __iter__(self) -> "_TracedItems":
        return self

    def __next__(self) -> Any:
        token = otel_context.attach(self._current)
        try:
            return next(self._items)
        except StopIteration:
            self._end(None)
            raise
        except BaseException as exc:
            self._end(exc)
            raise
        finally:
            otel_context.detach(token)

    def close(self) -> None:
        """The stream stopped before its end (the server closes the
        iterator while the reason propagates: cancelled, or failed)."""
        why = sys.exc_info()[1] or RpcError(StatusCode.CANCELLED, "the stream stopped early")
        close = getattr(self._items, "close", None)
        if close is not None:
            token = otel_context.attach(self._current)
            try:
                close()  # a generator's finally blocks run in its span
            finally:
                otel_context.detach(token)
        self._end(why)

    def _end(self, error: Optional[BaseException]) -> None:
        span, self._span = self._span, None
        if span is not None:
            _end(span, error)


TaskHandler = TypeVar("TaskHandler", bound=Callable[..., Any])


def traced_task(handler: TaskHandler,
                tracer_provider: Optional[trace.TracerProvider] = None) -> TaskHandler:
    """`handler(task, context)` of a work queue consumer (or a service's
    consumer method), run in a CONSUMER span of its queue: tasks reach
    consumers past the interceptors and carry no trace context, so each
    task's span starts a trace of its own.

        client.work.consume(traced_task(work), prefetch=4)
    """
    tracer = _tracer(tracer_provider)

    @functools.wraps(handler)
    def traced(*args: Any) -> Any:
        context: TaskContext = args[-1]  # (task, context), or (self, task, context)
        name, service, method = _names(context.method)
        span = tracer.start_span(name, kind=SpanKind.CONSUMER, attributes={
            "rpc.system": "onedrive_rpc", "rpc.service": service, "rpc.method": method,
            "rpc.onedrive_rpc.action": "task", "rpc.onedrive_rpc.attempt": context.attempt})
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            result = handler(*args)
        except BaseException as exc:
            _end(span, exc)
            raise
        finally:
            otel_context.detach(token)
        _end(span, None)
        return result
    return traced  # type: ignore[return-value]
