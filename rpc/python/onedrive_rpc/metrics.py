"""Prometheus metrics: the `onedrive-rpc[metrics]` extra (prometheus_client).

    metrics = ServerMetrics()                      # or ServerMetrics(registry=mine)
    server = rpc.Server(url, interceptors=[metrics])
    server.serve_metrics(9464)                     # http://127.0.0.1:9464/metrics
    peer = rpc.connect(url, interceptors=[ClientMetrics()])

Per action, named after go-grpc-prometheus, with labels `type` (the
interceptor's action kind: call, stream, notify, publish, subscribe,
produce, consume, broadcast, listen; a client's call_future counts as a
call), `service` ("pkg.Service") and `method` ("Method"):
onedrive_rpc_{server,client}_started_total, _handled_total (and `code`,
a StatusCode name), _handling_seconds (a histogram; a stream's runs until
its end), _in_flight, _msg_received_total and _msg_sent_total (requests,
replies, stream items), and the payload bytes of requests (the server's
_msg_received_bytes_total, the client's _msg_sent_bytes_total). Methods
are named by peers: a server counts those it does not serve as service and
method "(unknown)", a client counts at most MAX_CLIENT_METHODS apart.

Read from the server at scrape time (`watch(server)`; serve_metrics does
it): peers connected and suspended, peers lost and sessions resumed, bytes
received and sent, messages delivered and dropped by subscription pattern
(at most core.pubsub.MAX_PATTERN_TOTALS patterns per method apart, the
rest under "(other patterns)"), and each work queue's depth, consumers,
dead letters, redeliveries and totals.

A registry holds one ServerMetrics (and one ClientMetrics): servers of one
process share it, and its numbers are their sums; or give each a registry
of its own. serve_metrics() serves over gevent's WSGI server on loopback,
never from a thread (prometheus_client's start_http_server would read the
servers' state from another OS thread while gevent changes it).
"""
from __future__ import annotations

import logging
import time
import weakref
from bisect import bisect_left as _bisect_left
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional,
                    Protocol, Sequence, Tuple)

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Histogram, make_wsgi_app
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector
    from prometheus_client.utils import floatToGoString
except ImportError as exc:  # pragma: no cover (tests/integration/test_metrics.py fakes it)
    raise ImportError(f"onedrive_rpc.metrics needs prometheus_client ({exc}): "
                      f"pip install onedrive-rpc[metrics]") from exc

from gevent.pywsgi import WSGIServer

from .calls import CallAborted, CallFuture, Context
from .core.workqueue import QueueStats
from .errors import RpcError, StatusCode
from .inspection import CONNECTED
from .interceptors import Action, Interceptor, Proceed
from .streams import ServerStream

if TYPE_CHECKING:
    from .broker import Broker
    from .inspection import Inspection


class Server(Protocol):
    """What metrics read of a server (an rpc.Server)."""

    @property
    def broker(self) -> "Broker": ...

    @property
    def interceptors(self) -> Sequence[Any]: ...

    def inspect(self, subscription_limit: Optional[int] = None) -> "Inspection": ...

    def bytes_transferred(self) -> Tuple[int, int]: ...

    def on_peer_lost(self, callback: Callable[..., None]) -> Any: ...

    def on_peer_resumed(self, callback: Callable[..., None]) -> Any: ...

    @property
    def url(self) -> str: ...


__all__ = ["ServerMetrics", "ClientMetrics", "ServerState", "server_state", "serve_http",
           "MetricsHTTP", "UNKNOWN", "OTHER_METHODS", "MAX_CLIENT_METHODS"]

log = logging.getLogger(__name__)

#: The service and method label of what a server does not serve: peers may
#: send any method name, and each label value is a series kept forever.
UNKNOWN = "(unknown)"
#: A client's methods past MAX_CLIENT_METHODS (the code, not a peer,
#: chooses them; the bound is a safety net).
OTHER_METHODS = "(other)"
MAX_CLIENT_METHODS = 1000

_LABELS = ("type", "service", "method")
_OK = StatusCode.OK
_perf_counter = time.perf_counter


def _split(path: str) -> Tuple[str, str]:
    """"/pkg.Service/Method" as its service and method labels."""
    service, _, method = path.lstrip("/").partition("/")
    return service, method


def _code_of(exc: BaseException) -> StatusCode:
    if isinstance(exc, (RpcError, CallAborted)):
        return exc.code
    if isinstance(exc, Exception):
        return StatusCode.INTERNAL  # what the server answers for it
    return StatusCode.CANCELLED  # GreenletExit: killed


class _Series:
    """The counts of one (type, service, method): plain numbers, changed
    by the one thread of the gevent loop and read at scrape time (a
    prometheus_client metric takes a lock per change: the interceptor
    cost twice as much with them)."""

    __slots__ = ("labels", "started", "in_flight", "received", "sent", "payload", "handled",
                 "seconds", "buckets", "_bounds")

    def __init__(self, labels: Tuple[str, str, str], bounds: Sequence[float]) -> None:
        self.labels = labels
        self.started = self.in_flight = self.received = self.sent = self.payload = 0
        #: Finished actions by status.
        self.handled: Dict[StatusCode, int] = {}
        self.seconds = 0.0
        #: Finished actions by the first bucket bound they are within (+Inf last).
        self.buckets = [0] * (len(bounds) + 1)
        self._bounds = bounds

    def begin(self) -> float:
        self.started += 1
        self.in_flight += 1
        return _perf_counter()

    def end(self, code: StatusCode, start: float, sent: int = 0) -> None:
        elapsed = _perf_counter() - start
        self.seconds += elapsed
        self.buckets[_bisect_left(self._bounds, elapsed)] += 1
        self.in_flight -= 1
        handled = self.handled
        handled[code] = handled.get(code, 0) + 1
        self.sent += sent


class _ActionMetrics(Collector):
    """The go-grpc-prometheus set of one side ("server" or "client"),
    collected from its _Series at scrape time."""

    def __init__(self, side: str, buckets: Sequence[float], payload: str) -> None:
        self._prefix = f"onedrive_rpc_{side}"
        self._side = side
        self._payload = payload
        bounds = sorted(float(b) for b in buckets if float(b) != float("inf"))
        self._bounds = tuple(bounds)
        self._les = [floatToGoString(b) for b in bounds] + ["+Inf"]
        self._series: Dict[Tuple[str, str], _Series] = {}

    def series(self, kind: str, path: str) -> _Series:
        """`path` is a label value already bounded by the caller."""
        series = self._series.get((kind, path))
        if series is None:
            service, method = (path, path) if path in (UNKNOWN, OTHER_METHODS) else _split(path)
            series = self._series[(kind, path)] = _Series((kind, service, method), self._bounds)
        return series

    def describe(self) -> Iterable[Metric]:
        return self._families([])

    def collect(self) -> Iterable[Metric]:
        return self._families(list(self._series.values()))

    def _families(self, all_series: List[_Series]) -> List[Metric]:
        prefix, side, labels = self._prefix, self._side, list(_LABELS)
        started = CounterMetricFamily(f"{prefix}_started", f"Actions started on the {side}.",
                                      labels=labels)
        handled = CounterMetricFamily(f"{prefix}_handled",
                                      f"Actions finished on the {side}, by status.",
                                      labels=labels + ["code"])
        seconds = HistogramMetricFamily(f"{prefix}_handling_seconds",
                                        "Seconds from start to end of each action (a stream's "
                                        "end).", labels=labels)
        in_flight = GaugeMetricFamily(f"{prefix}_in_flight", "Actions started, not finished.",
                                      labels=labels)
        received = CounterMetricFamily(f"{prefix}_msg_received",
                                       f"Messages the {side} received.", labels=labels)
        sent = CounterMetricFamily(f"{prefix}_msg_sent", f"Messages the {side} sent.",
                                   labels=labels)
        payload = CounterMetricFamily(f"{prefix}_msg_{self._payload}_bytes",
                                      f"Payload bytes of the requests the {side} "
                                      f"{self._payload}.", labels=labels)
        for series in all_series:
            values = series.labels
            started.add_metric(values, series.started)
            for code, count in sorted(series.handled.items()):
                handled.add_metric([*values, code.name], count)
            cumulative, buckets = 0, []
            for le, count in zip(self._les, series.buckets):
                cumulative += count
                buckets.append((le, cumulative))
            seconds.add_metric(values, buckets, series.seconds)
            in_flight.add_metric(values, series.in_flight)
            received.add_metric(values, series.received)
            sent.add_metric(values, series.sent)
            payload.add_metric(values, series.payload)
        return [started, handled, seconds, in_flight, received, sent, payload]


def _register(registry: CollectorRegistry, collector: Collector) -> None:
    try:
        registry.register(collector)
    except ValueError as exc:  # "Duplicated timeseries in CollectorRegistry: ..."
        raise ValueError(f"{exc}: a registry holds one ServerMetrics and one ClientMetrics; "
                         f"share it between the servers (or peers) of a process, or pass each "
                         f"a registry of its own") from None


class ServerMetrics(Interceptor):
    """The server interceptor and the collectors of the servers it
    `watch`es, in `registry` (prometheus_client's default REGISTRY unless
    given). Put it first among the interceptors, so that it also counts
    what the others refuse."""

    def __init__(self, registry: Optional[CollectorRegistry] = None, *,
                 buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS) -> None:
        self.registry = REGISTRY if registry is None else registry
        self._actions = _ActionMetrics("server", buckets, "received")
        _register(self.registry, self._actions)
        self._state = _ServerCollector()
        _register(self.registry, self._state)

    def watch(self, server: "Server") -> None:
        """Count `server`'s peers lost and resumed, and read its state at
        each scrape (it is read after it stopped, too: totals stay)."""
        if server in self._state.servers:
            return
        self._state.servers.append(server)
        _WATCHED[server] = self
        server.on_peer_lost(lambda peer, reason: self._state.count("lost"))
        server.on_peer_resumed(lambda peer: self._state.count("resumed"))

    def intercept(self, action: Action, proceed: Proceed) -> Any:
        kind = action.kind
        series = self._actions.series(kind, action.method if action.served else UNKNOWN)
        payload = action.payload
        if payload is not None and kind != "listen":  # a listen's is the broadcast's
            series.received += 1
            series.payload += len(payload)
        result, start = _started(series, proceed)
        context = action.context
        if context is not None and context.streaming:  # streams, also of kind "admin"
            return _TimedItems(result, series, start, context)
        series.end(_OK, start, 1 if context is not None and not context.one_way else 0)
        return result


class _TimedItems:
    """A server stream's items, as the registry iterates and closes them:
    it ends when they run out, fail, or are closed early (cancelled)."""

    __slots__ = ("_items", "_series", "_start", "_context", "_sent", "_done")

    def __init__(self, items: Iterable[Any], series: _Series, start: float,
                 context: Context) -> None:
        self._items = iter(items)
        self._series = series
        self._start = start
        self._context = context
        self._sent = 0
        self._done = False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            item = next(self._items)
        except StopIteration:
            self._end(_OK)
            raise
        except BaseException as exc:
            self._end(_code_of(exc))
            raise
        self._sent += 1
        return item

    def close(self) -> None:
        try:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()
        finally:
            if not self._done:
                # Left early: the caller cancelled (or went), the server
                # stopped, or an item was not of the output type.
                abort = self._context.abort
                self._end(abort.code if abort is not None else StatusCode.INTERNAL)

    def _end(self, code: StatusCode) -> None:
        if not self._done:
            self._done = True
            self._series.end(code, self._start, self._sent)

    def __del__(self) -> None:
        if not getattr(self, "_done", True):
            self._end(StatusCode.CANCELLED)  # never run: an outer interceptor dropped it


class ClientMetrics(Interceptor):
    """The client interceptor (rpc.connect(url, interceptors=[...])), in
    `registry` (the default REGISTRY unless given); peers of a process
    share one."""

    def __init__(self, registry: Optional[CollectorRegistry] = None, *,
                 buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS) -> None:
        self.registry = REGISTRY if registry is None else registry
        self._actions = _ActionMetrics("client", buckets, "sent")
        _register(self.registry, self._actions)
        self._methods: Dict[str, None] = {}

    def intercept(self, action: Action, proceed: Proceed) -> Any:
        kind = action.kind
        future = kind == "call_future"
        if future:
            kind = "call"
        path = action.method
        if path not in self._methods:
            if len(self._methods) >= MAX_CLIENT_METHODS:
                path = OTHER_METHODS
            else:
                self._methods[path] = None
        series = self._actions.series(kind, path)
        payload = action.payload
        if payload is not None:
            series.sent += 1
            series.payload += len(payload)
        result, start = _started(series, proceed)
        if future and isinstance(result, CallFuture):
            result.rawlink(lambda done: _future_done(series, start, done))
        elif kind == "stream" and isinstance(result, ServerStream):
            result.when_done(lambda error, items: _stream_done(series, start, error, items))
        else:
            if kind == "call":
                series.received += 1
            series.end(_OK, start)
        return result


def _started(series: _Series, proceed: Proceed) -> Tuple[Any, float]:
    """Run the action, counted as started in `series`; (its result, when it
    started). An action that fails here is counted as handled, with its code."""
    start = series.begin()
    try:
        return proceed(), start
    except BaseException as exc:
        series.end(_code_of(exc), start)
        raise


def _stream_done(series: _Series, start: float, error: Optional[BaseException],
                 items: int) -> None:
    """A client's stream ended (ServerStream.when_done): its items and code."""
    series.received += items
    series.end(_OK if error is None else _code_of(error), start)


def _future_done(series: _Series, start: float, done: Any) -> None:
    exc = done.exception
    if exc is None:
        series.received += 1
    series.end(_OK if exc is None else _code_of(exc), start)


# ------------------------------------------------------------- server state

class ServerState(NamedTuple):
    """What the collector reads of a server at each scrape."""

    peers_connected: int
    peers_suspended: int
    bytes_received: int
    bytes_sent: int
    #: method -> pattern -> (delivered, dropped), since the start.
    patterns: Dict[str, Dict[str, Tuple[int, int]]]
    #: method -> its work queue's counts.
    queues: Dict[str, QueueStats]


def server_state(server: "Server") -> ServerState:
    """`server`'s state: its sessions from server.inspect(); totals that
    must not go back when sessions and subscriptions end from the server
    and its broker."""
    connected = suspended = 0
    for peer in server.inspect(subscription_limit=0).peers:  # only the sessions
        if peer.state == CONNECTED:
            connected += 1
        else:
            suspended += 1
    received, sent = server.bytes_transferred()
    broker = server.broker
    return ServerState(connected, suspended, received, sent, broker.pattern_totals(),
                       broker.every_queue_stats())


_QUEUE_GAUGES = (("ready", "Tasks waiting for a consumer."),
                 ("in_flight", "Tasks at a consumer, not yet done."),
                 ("consumers", "Consumers taking tasks."),
                 ("dead", "Dead letters kept (replays and purges take them away)."))
_QUEUE_COUNTERS = (("produced", "Tasks put on the queue."),
                   ("completed", "Tasks a consumer finished."),
                   ("failed_attempts", "Attempts that failed (the consumer failed or was lost)."),
                   ("redelivered", "Deliveries of a task delivered before."),
                   ("dead_lettered", "Tasks that became dead letters."))
_QUEUE_NAMES = {"dead": "dead_letters"}


class _ServerCollector(Collector):
    """Reads the watched servers' state at scrape time: their sums."""

    def __init__(self) -> None:
        self.servers: List["Server"] = []
        #: What the servers' hooks told: peers "lost", sessions "resumed".
        self.events = {"lost": 0, "resumed": 0}

    def count(self, event: str) -> None:
        self.events[event] += 1

    def describe(self) -> Iterable[Metric]:
        return self._families([])

    def collect(self) -> Iterable[Metric]:
        return self._families([server_state(server) for server in self.servers])

    def _families(self, states: List[ServerState]) -> List[Metric]:
        prefix = "onedrive_rpc_server"
        families: List[Metric] = [
            GaugeMetricFamily(f"{prefix}_peers_connected", "Peers whose connection is up.",
                              value=sum(s.peers_connected for s in states)),
            GaugeMetricFamily(f"{prefix}_peers_suspended",
                              "Sessions of lost peers waiting for them to resume.",
                              value=sum(s.peers_suspended for s in states)),
            CounterMetricFamily(f"{prefix}_peers_lost",
                                "Peers lost: dead, hung past the heartbeat bound, cut off.",
                                value=self.events["lost"]),
            CounterMetricFamily(f"{prefix}_peers_resumed",
                                "Lost peers that came back and resumed their session.",
                                value=self.events["resumed"]),
            CounterMetricFamily(f"{prefix}_received_bytes",
                                "Bytes read from peers after their handshakes, framing included.",
                                value=sum(s.bytes_received for s in states)),
            CounterMetricFamily(f"{prefix}_sent_bytes",
                                "Bytes written to peers after their handshakes, framing included.",
                                value=sum(s.bytes_sent for s in states)),
        ]
        labels = ["service", "method", "pattern"]
        delivered = CounterMetricFamily(f"{prefix}_subscription_delivered",
                                        "Messages delivered to the subscriptions of a pattern.",
                                        labels=labels)
        dropped = CounterMetricFamily(f"{prefix}_subscription_dropped",
                                      "Messages dropped for slow subscriptions of a pattern "
                                      "(their policy).", labels=labels)
        patterns: Dict[Tuple[str, str], List[int]] = {}
        for state in states:
            for method, totals in state.patterns.items():
                for pattern, counts in totals.items():
                    summed = patterns.setdefault((method, pattern), [0, 0])
                    summed[0] += counts[0]
                    summed[1] += counts[1]
        for (method, pattern), (delivered_count, dropped_count) in sorted(patterns.items()):
            delivered.add_metric([*_split(method), pattern], delivered_count)
            dropped.add_metric([*_split(method), pattern], dropped_count)
        families += (delivered, dropped)
        queues: Dict[str, List[int]] = {}
        for state in states:
            for method, stats in state.queues.items():
                summed = queues.setdefault(method, [0] * len(stats))
                for i, value in enumerate(stats):
                    summed[i] += value
        fields = QueueStats._fields
        for kind, described in ((GaugeMetricFamily, _QUEUE_GAUGES),
                                (CounterMetricFamily, _QUEUE_COUNTERS)):
            for field, doc in described:
                family = kind(f"{prefix}_queue_{_QUEUE_NAMES.get(field, field)}", doc,
                              labels=["service", "method"])
                for method, values in sorted(queues.items()):
                    family.add_metric(_split(method), values[fields.index(field)])
                families.append(family)
        return families


# ------------------------------------------------------------------ serving

#: server -> the ServerMetrics that watches it.
_WATCHED: "weakref.WeakKeyDictionary[Server, ServerMetrics]" = weakref.WeakKeyDictionary()


def _metrics_of(server: "Server") -> Optional[ServerMetrics]:
    """The ServerMetrics watching `server`, or among its interceptors."""
    metrics = _WATCHED.get(server)
    if metrics is not None:
        return metrics
    return next((step for step in server.interceptors if isinstance(step, ServerMetrics)), None)


class MetricsHTTP:
    """A registry served over HTTP by gevent (any path; GET /metrics)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._server = WSGIServer((host, port), make_wsgi_app(registry), log=None,
                                  error_log=log)

    def start(self) -> "MetricsHTTP":
        self._server.start()
        return self

    @property
    def address(self) -> Tuple[str, int]:
        return self._server.server_host, self._server.server_port

    def stop(self) -> None:
        self._server.stop(timeout=1)


def serve_http(server: "Server", port: int, host: str = "127.0.0.1") -> MetricsHTTP:
    """What Server.serve_metrics() runs: the registry of the ServerMetrics
    watching `server` or among its interceptors (watching it now), or a
    registry of its own with the state metrics only."""
    metrics = _metrics_of(server)
    if metrics is None:
        metrics = ServerMetrics(CollectorRegistry())
    metrics.watch(server)
    http = MetricsHTTP(metrics.registry, host, port).start()
    log.info("serving the metrics of %s on http://%s:%d/metrics", server.url, *http.address)
    return http
