"""OpenTelemetry tracing (onedrive_rpc.tracing, the otel extra) over real
connections: a call's server span is the child of its client span, in
this process and across processes (the trace context rides in the
call's metadata); errors, streams, notifications and the patterns get
spans of their own; a server span is current while its handler runs."""
from __future__ import annotations

import json

import pytest
from gevent.event import Event

import onedrive_rpc as rpc
from onedrive_rpc.testing.echo_pb2 import Msg
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.helpers import wait_until
from onedrive_rpc.testing.process import ServerProcess

# The otel extra, and the SDK for its in-memory exporter (tox installs both).
pytest.importorskip("opentelemetry.sdk.trace")

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from onedrive_rpc.tracing import ClientTracing, ServerTracing, traced_task  # noqa: E402

ECHO_NAME = "onedrive_rpc.testing.Echo"
TIMEOUT = 10


class Spans:
    """A tracer provider of our own (the global one stays untouched) and
    what it finished."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def finished(self, method=None, kind=None, action=None):
        return [span for span in self.exporter.get_finished_spans()
                if (method is None or span.name == f"{ECHO_NAME}/{method}")
                and (kind is None or span.kind == kind)
                and (action is None or span.attributes["rpc.onedrive_rpc.action"] == action)]

    def one(self, method, kind, action=None, timeout=5.0):
        """The one finished span of `method`, `kind` (and `action`), once there is one."""
        wait_until(lambda: self.finished(method, kind, action), timeout)
        spans = self.finished(method, kind, action)
        assert len(spans) == 1, spans
        return spans[0]


@pytest.fixture
def spans():
    spans = Spans()
    yield spans
    spans.provider.shutdown()


@pytest.fixture
def traced(servers, peers, spans, tmp_path):
    """traced(service) -> an Echo client through a traced peer of a traced
    server of `service`."""
    def serve(service=None):
        server = servers(f"unix://{tmp_path}/traced.sock", service or EchoService(),
                         interceptors=[ServerTracing(spans.provider)])
        return rpc.Client(peers(server.url, interceptors=[ClientTracing(spans.provider)]), ECHO)
    return serve


def is_child(child, parent) -> bool:
    return (child.parent is not None and child.parent.span_id == parent.context.span_id
            and child.context.trace_id == parent.context.trace_id)


class Observing(EchoService):
    """Echo notes the span current while it runs, and what metadata came."""

    def __init__(self):
        super().__init__()
        self.current = []
        self.metadata = []

    def echo(self, request, context):
        self.current.append(trace.get_current_span().get_span_context())
        self.metadata.append(dict(context.metadata))
        return request

    def count(self, request, context):
        for i in range(request.count):
            yield Msg(text=str(i))
            self.current.append((trace.get_current_span().get_span_context(),
                                 trace.get_current_span().is_recording()))


def test_a_call_s_server_span_is_the_child_of_its_client_span(traced, spans):
    service = Observing()
    client = traced(service)
    assert client.echo(Msg(text="hi"), timeout=TIMEOUT).text == "hi"
    server = spans.one("Echo", SpanKind.SERVER)
    caller = spans.one("Echo", SpanKind.CLIENT)
    assert is_child(server, caller) and server.parent.is_remote
    assert caller.parent is None  # nothing was current here
    for span in (server, caller):
        assert span.attributes["rpc.system"] == "onedrive_rpc"
        assert span.attributes["rpc.service"] == ECHO_NAME
        assert span.attributes["rpc.method"] == "Echo"
        assert span.attributes["rpc.onedrive_rpc.status_code"] == 0
        assert span.status.status_code == StatusCode.UNSET
    # The W3C trace context rode in the metadata; the handler ran in the server span.
    assert service.metadata[0]["traceparent"].split("-")[2] == format(caller.context.span_id, "016x")
    assert service.current == [server.context]


def test_a_failed_call_s_spans_say_error_and_the_code(traced, spans):
    client = traced()
    with pytest.raises(rpc.RpcError) as failed:
        client.fail(Msg(text="disk full"), timeout=TIMEOUT)
    assert failed.value.code == rpc.StatusCode.INTERNAL
    with pytest.raises(rpc.RpcError):
        client.missing(Msg(), timeout=TIMEOUT)
    for method, code in (("Fail", rpc.StatusCode.INTERNAL),
                         ("Missing", rpc.StatusCode.UNIMPLEMENTED)):
        server = spans.one(method, SpanKind.SERVER)
        caller = spans.one(method, SpanKind.CLIENT)
        assert is_child(server, caller)
        for span in (server, caller):
            assert span.status.status_code == StatusCode.ERROR
            assert span.status.description.startswith(f"{code.name}: ")
            assert span.attributes["rpc.onedrive_rpc.status_code"] == int(code)


def test_a_method_the_server_does_not_serve_gets_one_span_name_whatever_the_peer_sends(
        traced, spans):
    peer = traced().peer
    for i in range(3):  # a peer may make up any number of names
        with pytest.raises(rpc.RpcError):
            peer.call(f"/made.Up{i}/Name", b"", Msg.FromString, timeout=TIMEOUT)
    wait_until(lambda: len([s for s in spans.exporter.get_finished_spans()
                            if s.kind == SpanKind.SERVER]) == 3)
    server_spans = [s for s in spans.exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert {s.name for s in server_spans} == {"(unknown)"}
    assert {s.attributes["rpc.method"] for s in server_spans} == {"(unknown)"}
    assert {s.attributes["rpc.onedrive_rpc.status_code"] for s in server_spans} == {
        int(rpc.StatusCode.UNIMPLEMENTED)}


def test_a_future_s_client_span_ends_with_the_call(traced, spans):
    client = traced()
    future = client.sleep.future(Msg(delay=0.05), timeout=TIMEOUT)
    assert not spans.finished("Sleep", SpanKind.CLIENT)
    future.get(timeout=TIMEOUT)
    caller = spans.one("Sleep", SpanKind.CLIENT)
    assert is_child(spans.one("Sleep", SpanKind.SERVER), caller)
    assert caller.end_time >= spans.one("Sleep", SpanKind.SERVER).end_time


def test_a_stream_s_server_span_lasts_until_its_last_item(traced, spans):
    service = Observing()
    client = traced(service)
    stream = client.count(Msg(count=3), timeout=TIMEOUT)
    assert [item.text for item in stream] == ["0", "1", "2"]
    server = spans.one("Count", SpanKind.SERVER)
    caller = spans.one("Count", SpanKind.CLIENT)
    assert is_child(server, caller)
    # After each item, the last one too, the handler still ran in the
    # server span, and that span had not ended.
    assert service.current == [(server.context, True)] * 3
    assert server.attributes["rpc.onedrive_rpc.status_code"] == 0
    assert caller.attributes["rpc.onedrive_rpc.status_code"] == 0


def test_a_stream_the_caller_stops_ends_both_spans_cancelled(traced, spans):
    client = traced()
    stream = client.count(Msg(count=1000, delay=0.01), timeout=TIMEOUT)
    assert next(stream).text == "0"
    assert stream.cancel()
    caller = spans.one("Count", SpanKind.CLIENT)
    server = spans.one("Count", SpanKind.SERVER)
    for span in (caller, server):
        assert span.attributes["rpc.onedrive_rpc.status_code"] == int(rpc.StatusCode.CANCELLED)
        assert span.status.status_code == StatusCode.ERROR


def test_a_stream_that_fails_ends_its_spans_with_the_error(traced, spans):
    client = traced()
    stream = client.count(Msg(count=2, text="fail"), timeout=TIMEOUT)
    with pytest.raises(rpc.RpcError):
        list(stream)
    for kind in (SpanKind.SERVER, SpanKind.CLIENT):
        span = spans.one("Count", kind)
        assert span.attributes["rpc.onedrive_rpc.status_code"] == int(rpc.StatusCode.INTERNAL)
        assert span.status.status_code == StatusCode.ERROR


def test_calls_a_service_names_its_own_action_get_spans_too(servers, peers, spans, tmp_path):
    """Service.action ("admin"): interceptors see another kind than call
    or stream; the spans follow how the call was made."""
    def rename(action, proceed):
        action.kind = "admin"
        return proceed()

    service = Observing()
    server = servers(f"unix://{tmp_path}/renamed.sock", service,
                     interceptors=[rename, ServerTracing(spans.provider)])
    client = rpc.Client(peers(server.url), ECHO)
    client.echo(Msg(), timeout=TIMEOUT)
    assert [item.text for item in client.count(Msg(count=2), timeout=TIMEOUT)] == ["0", "1"]
    client.note(Msg())
    assert spans.one("Echo", SpanKind.SERVER).attributes["rpc.onedrive_rpc.action"] == "admin"
    assert spans.one("Note", SpanKind.CONSUMER).attributes["rpc.onedrive_rpc.action"] == "admin"
    stream = spans.one("Count", SpanKind.SERVER)  # lasted until the last item
    assert service.current[1:] == [(stream.context, True)] * 2


def test_a_notification_s_consumer_span_is_the_child_of_its_producer_span(traced, spans):
    client = traced()
    client.note(Msg(text="n"))
    producer = spans.one("Note", SpanKind.PRODUCER)
    consumer = spans.one("Note", SpanKind.CONSUMER)
    assert is_child(consumer, producer)


def test_publish_subscribe_produce_and_tasks_get_local_spans(traced, spans):
    client = traced()
    received, done = Event(), Event()
    client.changed.subscribe("files.*", lambda r: received.set(), timeout=TIMEOUT)
    client.changed.publish("files.added", Msg(text="a"), confirm=True, timeout=TIMEOUT)
    assert received.wait(TIMEOUT)
    for kind in (SpanKind.CLIENT, SpanKind.SERVER):
        assert spans.one("Changed", kind, "subscribe").attributes["rpc.onedrive_rpc.target"] == "files.*"
    publisher = spans.one("Changed", SpanKind.PRODUCER, "publish")
    broker = spans.one("Changed", SpanKind.CONSUMER, "publish")
    for span in (publisher, broker):
        assert span.attributes["rpc.onedrive_rpc.target"] == "files.added"
    # No metadata on pattern frames: each side's span starts its own trace.
    assert broker.parent is None and publisher.context.trace_id != broker.context.trace_id

    def work(task, context):
        client.echo(Msg(text=task.text), timeout=TIMEOUT)  # in the task's span
        done.set()

    client.work.consume(traced_task(work, spans.provider), timeout=TIMEOUT)
    client.work.produce(Msg(text="upload"), timeout=TIMEOUT)
    assert done.wait(TIMEOUT)
    spans.one("Work", SpanKind.PRODUCER, "produce")
    spans.one("Work", SpanKind.CONSUMER, "produce")  # the server's
    task = spans.one("Work", SpanKind.CONSUMER, "task")
    assert task.attributes["rpc.onedrive_rpc.attempt"] == 1
    assert is_child(spans.one("Echo", SpanKind.CLIENT), task)


def test_a_call_a_handler_makes_is_a_child_of_the_handler_s_span(servers, peers, spans, tmp_path):
    backend = servers(f"unix://{tmp_path}/backend.sock", EchoService(),
                      interceptors=[ServerTracing(spans.provider)])
    onward = rpc.Client(peers(backend.url, interceptors=[ClientTracing(spans.provider)]), ECHO)

    class Relay(EchoService):
        def echo(self, request, context):
            return onward.echo(request, timeout=TIMEOUT)

    front = servers(f"unix://{tmp_path}/front.sock", Relay(),
                    interceptors=[ServerTracing(spans.provider)])
    client = rpc.Client(peers(front.url, interceptors=[ClientTracing(spans.provider)]), ECHO)
    assert client.echo(Msg(text="x"), timeout=TIMEOUT).text == "x"
    wait_until(lambda: len(spans.finished("Echo")) == 4)
    first, relayed = sorted(spans.finished("Echo", SpanKind.CLIENT), key=lambda s: s.start_time)
    front_span, back_span = sorted(spans.finished("Echo", SpanKind.SERVER),
                                   key=lambda s: s.start_time)
    assert is_child(front_span, first)
    assert is_child(relayed, front_span)
    assert is_child(back_span, relayed)


# The uploader of the cross-process test: it serves Echo; its echo calls
# back the daemon (argv[2]) first, through a traced peer; its spans go to
# a file (argv[3]), one JSON line each, as each ends.
UPLOADER = '''
import sys

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

import onedrive_rpc as rpc
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.tracing import ClientTracing, ServerTracing

url, daemon_url, spans_file = sys.argv[1:4]
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(
    out=open(spans_file, "a"), formatter=lambda span: span.to_json(indent=None) + "\\n")))
daemon = rpc.Client(rpc.connect(daemon_url, interceptors=[ClientTracing(provider)]), ECHO)


class Uploader(EchoService):
    def echo(self, request, context):
        request.text = daemon.echo(request, timeout=10).text + " uploaded"
        return request


server = rpc.Server(url, interceptors=[ServerTracing(provider)])
server.add_service(Uploader())
server.start()
print("READY " + server.url, flush=True)
server.serve_forever()
'''


def test_a_trace_crosses_two_processes_and_back(servers, peers, spans, tmp_path, monkeypatch):
    """daemon (this process) -> uploader (a child) -> daemon."""
    daemon = servers(f"unix://{tmp_path}/daemon.sock", EchoService(),
                     interceptors=[ServerTracing(spans.provider)])
    (tmp_path / "uploader.py").write_text(UPLOADER)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    spans_file = tmp_path / "uploader-spans.jsonl"
    with ServerProcess(f"unix://{tmp_path}/uploader.sock", module="uploader",
                       args=[daemon.url, str(spans_file)]) as uploader:
        client = rpc.Client(peers(uploader.url, interceptors=[ClientTracing(spans.provider)]),
                            ECHO)
        assert client.echo(Msg(text="file"), timeout=TIMEOUT).text == "file uploaded"
    # The uploader's spans ended before it answered.
    theirs = {json.loads(line)["kind"]: json.loads(line)
              for line in spans_file.read_text().splitlines()}
    ask = spans.one("Echo", SpanKind.CLIENT)
    called_back = spans.one("Echo", SpanKind.SERVER)
    served, asked_back = theirs["SpanKind.SERVER"], theirs["SpanKind.CLIENT"]

    def hex_id(span_id):
        return "0x" + format(span_id, "016x")

    trace_id = "0x" + format(ask.context.trace_id, "032x")
    assert served["context"]["trace_id"] == asked_back["context"]["trace_id"] == trace_id
    assert served["parent_id"] == hex_id(ask.context.span_id)
    assert asked_back["parent_id"] == served["context"]["span_id"]
    assert called_back.context.trace_id == ask.context.trace_id
    assert hex_id(called_back.parent.span_id) == asked_back["context"]["span_id"]
