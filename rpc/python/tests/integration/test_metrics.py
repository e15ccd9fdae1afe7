"""Prometheus metrics (the metrics extra) over real connections: each metric
moves when its event happens, peers cannot make the series grow without
bound, and serve_metrics() answers a scrape over HTTP on loopback."""
from __future__ import annotations

import importlib
import subprocess
import sys

import gevent
import pytest
from gevent import socket
from gevent.event import AsyncResult, Event

import onedrive_rpc as rpc
from onedrive_rpc.core.pubsub import MAX_PATTERN_TOTALS, OTHER_PATTERNS
from onedrive_rpc.testing import echo_pb2
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.faults import FaultProxy
from onedrive_rpc.testing.helpers import wait_until

prometheus_client = pytest.importorskip("prometheus_client")
metrics = pytest.importorskip("onedrive_rpc.metrics")
CollectorRegistry = prometheus_client.CollectorRegistry

Msg = echo_pb2.Msg
SERVICE = "onedrive_rpc.testing.Echo"
HB = rpc.Heartbeat(interval=0.2, misses=3)


@pytest.fixture
def registry():
    return CollectorRegistry()


@pytest.fixture
def instrumented(registry, servers, peers):
    """(server, service, client over a peer): both sides' metrics in `registry`."""
    service = EchoService()
    server_metrics = metrics.ServerMetrics(registry)
    server = servers("tcp://127.0.0.1:0", service, interceptors=[server_metrics],
                     heartbeat=HB, session_grace=5.0)
    server_metrics.watch(server)
    peer = peers(server.url, interceptors=[metrics.ClientMetrics(registry)], heartbeat=HB)
    server.metrics = server_metrics
    return server, service, rpc.Client(peer, ECHO)


def value(registry, name, **labels):
    return registry.get_sample_value(name, labels) or 0.0


def action(side, kind, method, **more):
    return dict(type=kind, service=SERVICE, method=method, **more)


def samples(registry, name):
    return [s for family in registry.collect() for s in family.samples if s.name == name]


# ------------------------------------------------------------------ actions

def test_a_call_is_started_handled_timed_and_its_messages_and_bytes_counted(
        instrumented, registry):
    server, service, client = instrumented
    labels = action("server", "call", "Echo")
    assert value(registry, "onedrive_rpc_server_started_total", **labels) == 0
    request = Msg(text="x" * 100)
    assert client.echo(request, timeout=5).text == request.text
    for side in ("server", "client"):
        assert value(registry, f"onedrive_rpc_{side}_started_total", **labels) == 1
        assert value(registry, f"onedrive_rpc_{side}_handled_total", code="OK", **labels) == 1
        assert value(registry, f"onedrive_rpc_{side}_handling_seconds_count", **labels) == 1
        assert value(registry, f"onedrive_rpc_{side}_handling_seconds_sum", **labels) > 0
        assert value(registry, f"onedrive_rpc_{side}_msg_received_total", **labels) == 1
        assert value(registry, f"onedrive_rpc_{side}_msg_sent_total", **labels) == 1
        assert value(registry, f"onedrive_rpc_{side}_in_flight", **labels) == 0
    size = request.ByteSize()
    assert value(registry, "onedrive_rpc_server_msg_received_bytes_total", **labels) == size
    assert value(registry, "onedrive_rpc_client_msg_sent_bytes_total", **labels) == size


def test_failures_are_handled_with_their_code(instrumented, registry):
    server, service, client = instrumented
    with pytest.raises(rpc.RpcError):
        client.fail(Msg(), timeout=5)
    with pytest.raises(rpc.RpcError):
        client.missing(Msg(), timeout=5)
    for side in ("server", "client"):
        assert value(registry, f"onedrive_rpc_{side}_handled_total",
                     **action(side, "call", "Fail", code="INTERNAL")) == 1
        assert value(registry, f"onedrive_rpc_{side}_handled_total",
                     **action(side, "call", "Missing", code="UNIMPLEMENTED")) == 1
    assert value(registry, "onedrive_rpc_server_msg_sent_total", **action("server", "call", "Fail")) == 0


def test_in_flight_counts_calls_being_handled(instrumented, registry):
    server, service, client = instrumented
    labels = action("server", "call", "Sleep")
    future = client.sleep.future(Msg(delay=0.3), timeout=5)
    wait_until(lambda: service.calls["sleep"] == 1)
    assert value(registry, "onedrive_rpc_server_in_flight", **labels) == 1
    assert value(registry, "onedrive_rpc_client_in_flight", **labels) == 1
    future.get(timeout=5)
    wait_until(lambda: value(registry, "onedrive_rpc_client_in_flight", **labels) == 0)
    assert value(registry, "onedrive_rpc_server_in_flight", **labels) == 0
    # It slept 0.3 s: in the histogram's bucket of 0.5 s, not 0.25 s.
    assert value(registry, "onedrive_rpc_server_handling_seconds_bucket", le="0.25", **labels) == 0
    assert value(registry, "onedrive_rpc_server_handling_seconds_bucket", le="0.5", **labels) == 1
    assert value(registry, "onedrive_rpc_server_handling_seconds_bucket", le="+Inf", **labels) == 1
    # A call future is a call, handled when its answer came.
    assert value(registry, "onedrive_rpc_client_handled_total", code="OK", **labels) == 1
    assert value(registry, "onedrive_rpc_client_msg_received_total", **labels) == 1


def test_a_stream_is_handled_when_it_ends_not_when_it_starts(instrumented, registry):
    server, service, client = instrumented
    labels = action("server", "stream", "Count")
    stream = client.count(Msg(count=3, delay=0.05), timeout=5)
    wait_until(lambda: service.calls["count"] == 1)
    assert value(registry, "onedrive_rpc_server_started_total", **labels) == 1
    assert value(registry, "onedrive_rpc_server_in_flight", **labels) == 1
    assert value(registry, "onedrive_rpc_server_handled_total", code="OK", **labels) == 0
    assert [item.text for item in stream] == ["0", "1", "2"]
    wait_until(lambda: value(registry, "onedrive_rpc_server_handled_total", code="OK", **labels) == 1)
    assert value(registry, "onedrive_rpc_server_in_flight", **labels) == 0
    assert value(registry, "onedrive_rpc_server_msg_sent_total", **labels) == 3
    assert value(registry, "onedrive_rpc_server_handling_seconds_sum", **labels) >= 0.1
    assert value(registry, "onedrive_rpc_client_handled_total", code="OK", **labels) == 1
    assert value(registry, "onedrive_rpc_client_msg_received_total", **labels) == 3
    assert value(registry, "onedrive_rpc_client_handling_seconds_sum", **labels) >= 0.1


def test_a_stream_cancelled_by_its_caller_is_handled_cancelled(instrumented, registry):
    server, service, client = instrumented
    labels = action("server", "stream", "Count", code="CANCELLED")
    stream = client.count(Msg(count=1000, delay=0.01), timeout=5)
    assert next(stream).text == "0"
    stream.cancel()
    assert value(registry, "onedrive_rpc_client_handled_total", **labels) == 1
    wait_until(lambda: value(registry, "onedrive_rpc_server_handled_total", **labels) == 1)
    assert value(registry, "onedrive_rpc_server_in_flight", **action("server", "stream", "Count")) == 0


def test_notifications_and_every_pattern_action_are_counted_by_type(instrumented, registry, peers):
    server, service, client = instrumented
    heard = AsyncResult()
    client.note(Msg(text="n"), confirm=True, timeout=5)
    client.changed.subscribe("t.>", timeout=5)
    client.changed.publish("t.1", Msg(text="p"), confirm=True, timeout=5)
    client.work.produce(Msg(text="task"), timeout=5)
    client.work.consume(lambda task, context: None, timeout=5)
    client.announce.listen(lambda received: heard.set(received))
    rpc.Client(peers(server.url), ECHO).announce.broadcast(Msg(text="b"), confirm=True, timeout=5)
    heard.get(timeout=5)
    for kind, method in [("notify", "Note"), ("subscribe", "Changed"), ("publish", "Changed"),
                         ("produce", "Work"), ("consume", "Work"), ("broadcast", "Announce"),
                         ("listen", "Announce")]:
        wait_until(lambda: value(registry, "onedrive_rpc_server_handled_total",
                                 **action("server", kind, method, code="OK")) == 1)
    for kind, method in [("notify", "Note"), ("subscribe", "Changed"), ("publish", "Changed"),
                         ("produce", "Work"), ("consume", "Work"), ("listen", "Announce")]:
        assert value(registry, "onedrive_rpc_client_handled_total",
                     **action("client", kind, method, code="OK")) == 1, kind


# ----------------------------------------------------- bounded cardinality

def test_peers_cannot_grow_the_series_with_method_names(instrumented, registry, peers):
    server, service, client = instrumented
    raw = peers(server.url)
    for i in range(200):
        with pytest.raises(rpc.RpcError):
            raw.call(f"/no.Such{i}/Method{i}", b"", lambda payload: payload, timeout=5)
        with pytest.raises(rpc.RpcError):
            raw.call(f"garbage {i}", b"", lambda payload: payload, timeout=5)
        with pytest.raises(rpc.RpcError):
            raw.produce(f"/no.Such{i}/Queue", b"", timeout=5)
    unknown = dict(service=metrics.UNKNOWN, method=metrics.UNKNOWN)
    assert value(registry, "onedrive_rpc_server_started_total", type="call", **unknown) == 400
    assert value(registry, "onedrive_rpc_server_started_total", type="produce", **unknown) == 200
    assert len(samples(registry, "onedrive_rpc_server_started_total")) == 2
    codes = {s.labels["code"] for s in samples(registry, "onedrive_rpc_server_handled_total")}
    assert codes == {"UNIMPLEMENTED", "INVALID_ARGUMENT"}


def test_peers_cannot_grow_the_series_with_patterns(instrumented, registry, peers):
    server, service, client = instrumented
    subscriber = rpc.Client(peers(server.url), ECHO)
    subscriptions = [subscriber.changed.subscribe(f"p{i}.>", timeout=5)
                     for i in range(MAX_PATTERN_TOTALS + 50)]
    for i in range(0, MAX_PATTERN_TOTALS + 50, 10):
        client.changed.publish(f"p{i}.x", Msg(), confirm=True, timeout=5)
    delivered = samples(registry, "onedrive_rpc_server_subscription_delivered_total")
    assert len(delivered) == MAX_PATTERN_TOTALS + 1
    by_pattern = {s.labels["pattern"]: s.value for s in delivered}
    assert by_pattern["p0.>"] == 1 and by_pattern["p1.>"] == 0
    assert by_pattern[OTHER_PATTERNS] == 5  # p100.> ... p140.>
    for sub in subscriptions:
        sub.cancel()


def test_a_client_counts_at_most_max_client_methods_apart(registry, served, peers, monkeypatch):
    monkeypatch.setattr(metrics, "MAX_CLIENT_METHODS", 3)
    peer = peers(served.url, interceptors=[metrics.ClientMetrics(registry)])
    for i in range(20):
        with pytest.raises(rpc.RpcError):
            peer.call(f"/no.Such/M{i}", b"", lambda payload: payload, timeout=5)
    started = samples(registry, "onedrive_rpc_client_started_total")
    assert len(started) == 4
    assert value(registry, "onedrive_rpc_client_started_total", type="call",
                 service=metrics.OTHER_METHODS, method=metrics.OTHER_METHODS) == 17


# ------------------------------------------------------ sessions, patterns

def test_deliveries_and_drops_per_pattern_outlive_the_subscription(instrumented, registry, peers):
    server, service, client = instrumented
    labels = dict(service=SERVICE, method="Changed", pattern="slow")
    subscriber_peer = peers(server.url)
    subscription = rpc.Client(subscriber_peer, ECHO).changed.subscribe(
        "slow", queue_limit=4, policy="drop_newest", timeout=5)
    for i in range(50):
        client.changed.publish("slow", Msg(text=str(i)), confirm=True, timeout=5)
    # 4 within the subscriber's credit, 4 queued, the rest dropped.
    assert value(registry, "onedrive_rpc_server_subscription_delivered_total", **labels) == 4
    assert value(registry, "onedrive_rpc_server_subscription_dropped_total", **labels) == 42
    with gevent.Timeout(5):
        assert [subscription.get().message.text for _ in range(8)] == [str(i) for i in range(8)]
    wait_until(lambda: value(registry, "onedrive_rpc_server_subscription_delivered_total",
                             **labels) == 8)
    subscriber_peer.close()
    wait_until(lambda: not server._broker._topics[f"/{SERVICE}/Changed"].subscriptions())
    assert value(registry, "onedrive_rpc_server_subscription_delivered_total", **labels) == 8
    assert value(registry, "onedrive_rpc_server_subscription_dropped_total", **labels) == 42


def test_work_queue_depth_consumers_redeliveries_and_dead_letters(instrumented, registry):
    server, service, client = instrumented
    labels = dict(service=SERVICE, method="Work")
    server.configure_queue(f"/{SERVICE}/Work", max_attempts=2)
    for i in range(3):
        client.work.produce(Msg(text=str(i)), timeout=5)
    assert value(registry, "onedrive_rpc_server_queue_ready", **labels) == 3
    assert value(registry, "onedrive_rpc_server_queue_produced_total", **labels) == 3
    release, holding = Event(), Event()

    def fail(task, context):
        holding.set()
        release.wait(5)
        raise RuntimeError("no")

    consumer = client.work.consume(fail, prefetch=1, timeout=5)
    holding.wait(5)
    assert value(registry, "onedrive_rpc_server_queue_consumers", **labels) == 1
    assert value(registry, "onedrive_rpc_server_queue_in_flight", **labels) == 1
    assert value(registry, "onedrive_rpc_server_queue_ready", **labels) == 2
    release.set()
    wait_until(lambda: value(registry, "onedrive_rpc_server_queue_dead_lettered_total", **labels) == 3)
    assert value(registry, "onedrive_rpc_server_queue_dead_letters", **labels) == 3
    assert value(registry, "onedrive_rpc_server_queue_failed_attempts_total", **labels) == 6
    assert value(registry, "onedrive_rpc_server_queue_redelivered_total", **labels) == 3
    consumer.stop(grace=0)
    wait_until(lambda: value(registry, "onedrive_rpc_server_queue_consumers", **labels) == 0)
    server.purge_dead_letters(f"/{SERVICE}/Work")
    assert value(registry, "onedrive_rpc_server_queue_dead_letters", **labels) == 0
    assert value(registry, "onedrive_rpc_server_queue_dead_lettered_total", **labels) == 3
    client.work.consume(lambda task, context: None, timeout=5)
    client.work.produce(Msg(text="ok"), timeout=5)
    wait_until(lambda: value(registry, "onedrive_rpc_server_queue_completed_total", **labels) == 1)


def test_peers_connected_lost_suspended_and_resumed(registry, servers, peers):
    server_metrics = metrics.ServerMetrics(registry)
    server = servers("tcp://127.0.0.1:0", EchoService(), interceptors=[server_metrics],
                     heartbeat=HB, session_grace=5.0)
    server_metrics.watch(server)
    assert value(registry, "onedrive_rpc_server_peers_connected") == 0
    proxy = FaultProxy(server.url).start()
    try:
        peer = peers(proxy.url, heartbeat=HB)
        resumed = AsyncResult()
        server.on_peer_resumed(resumed.set)
        assert value(registry, "onedrive_rpc_server_peers_connected") == 1
        proxy.cut()
        resumed.get(timeout=10)
        wait_until(lambda: value(registry, "onedrive_rpc_server_peers_resumed_total") == 1)
        assert value(registry, "onedrive_rpc_server_peers_lost_total") == 1
        assert value(registry, "onedrive_rpc_server_peers_connected") == 1
        proxy.blackhole()  # now it stays away: suspended until its grace ends
        wait_until(lambda: value(registry, "onedrive_rpc_server_peers_suspended") == 1, timeout=10)
        assert value(registry, "onedrive_rpc_server_peers_connected") == 0
        wait_until(lambda: value(registry, "onedrive_rpc_server_peers_lost_total") == 2)
        peer.close(grace=0)
    finally:
        proxy.stop()


def test_bytes_received_and_sent_count_the_wire(instrumented, registry):
    server, service, client = instrumented
    before = (value(registry, "onedrive_rpc_server_received_bytes_total"),
              value(registry, "onedrive_rpc_server_sent_bytes_total"))
    client.echo(Msg(data=b"x" * 10_000), timeout=5)
    wait_until(lambda: value(registry, "onedrive_rpc_server_sent_bytes_total") >= before[1] + 10_000)
    assert value(registry, "onedrive_rpc_server_received_bytes_total") >= before[0] + 10_000


# ------------------------------------------------------------ registries

def test_one_registry_holds_one_server_metrics_shared_by_servers(registry, servers, peers):
    shared = metrics.ServerMetrics(registry)
    with pytest.raises(ValueError, match="share it between the servers"):
        metrics.ServerMetrics(registry)
    first = servers("tcp://127.0.0.1:0", EchoService(), interceptors=[shared])
    second = servers("tcp://127.0.0.1:0", EchoService(), interceptors=[shared])
    shared.watch(first)
    shared.watch(second)
    for server in (first, second):
        rpc.Client(peers(server.url), ECHO).echo(Msg(), timeout=5)
    assert value(registry, "onedrive_rpc_server_handled_total",
                 **action("server", "call", "Echo", code="OK")) == 2
    assert value(registry, "onedrive_rpc_server_peers_connected") == 2
    # Their own registries: no collision either.
    metrics.ServerMetrics(CollectorRegistry())
    metrics.ServerMetrics(CollectorRegistry())


def _scrape(address):
    """GET /metrics over a gevent socket (a blocking client would stop the
    loop that serves it)."""
    with socket.create_connection(address, timeout=5) as conn:
        conn.sendall(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        chunks = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200"), head
    return body.decode()


def test_serve_metrics_answers_a_scrape_on_loopback_until_stop(servers, peers):
    server_metrics = metrics.ServerMetrics(CollectorRegistry())
    server = servers("tcp://127.0.0.1:0", EchoService(), interceptors=[server_metrics])
    host, port = server.serve_metrics(0)
    assert host == "127.0.0.1" and port > 0
    with pytest.raises(RuntimeError):
        server.serve_metrics(0)
    rpc.Client(peers(server.url), ECHO).echo(Msg(), timeout=5)
    text = _scrape((host, port))
    assert ('onedrive_rpc_server_handled_total{code="OK",method="Echo",'
            'service="onedrive_rpc.testing.Echo",type="call"} 1.0') in text
    assert "onedrive_rpc_server_peers_connected 1.0" in text  # watched by serve_metrics
    server.stop()
    with pytest.raises(OSError):
        _scrape((host, port))


def test_serve_metrics_without_the_interceptor_serves_the_state_of_that_server(servers, peers):
    # Two such servers: each has a registry of its own, nothing collides.
    first = servers("tcp://127.0.0.1:0", EchoService())
    second = servers("tcp://127.0.0.1:0", EchoService())
    addresses = [first.serve_metrics(0), second.serve_metrics(0)]
    peers(first.url)
    text = _scrape(addresses[0])
    assert "onedrive_rpc_server_peers_connected 1.0" in text
    assert not [line for line in text.splitlines() if line.startswith("onedrive_rpc_server_started")]
    assert "onedrive_rpc_server_peers_connected 0.0" in _scrape(addresses[1])


# --------------------------------------------------------- without the extra

def test_without_prometheus_client_the_package_imports_and_metrics_says_what_to_install(
        monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "onedrive_rpc.metrics")
    with pytest.raises(ImportError, match=r"pip install onedrive-rpc\[metrics\]"):
        importlib.import_module("onedrive_rpc.metrics")
    monkeypatch.delitem(sys.modules, "onedrive_rpc.metrics", raising=False)
    server = rpc.Server("inproc://metrics-missing")
    with pytest.raises(ImportError, match=r"pip install onedrive-rpc\[metrics\]"):
        server.serve_metrics(0)
    code = ("import sys; sys.modules['prometheus_client'] = None; import onedrive_rpc; "
            "import onedrive_rpc.server, onedrive_rpc.cli; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
