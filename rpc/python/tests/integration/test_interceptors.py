"""Server and client interceptors over real connections: they run in order
around every action, see its method, metadata, identity and request, can
let it go on, refuse it with a status, answer it themselves or wrap what
it returns; an interceptor's own bug refuses only that action."""
from __future__ import annotations

import logging

import pytest
from gevent.event import Event

import onedrive_rpc as rpc
from onedrive_rpc.calls import Context
from onedrive_rpc.testing.echo_pb2 import Msg
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.helpers import wait_until

SERVICE = "/onedrive_rpc.testing.Echo"


class Tracing(EchoService):
    """Echo answers with the "trace-id" its caller's metadata carried."""

    def echo(self, request: Msg, context: Context) -> Msg:
        self.calls["echo"] += 1
        return Msg(text=f"{request.text}|{context.metadata.get('trace-id', '-')}")


class Recorder(rpc.Interceptor):
    """Writes "<name>>" on the way in and "<name><" (or the status) out."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def intercept(self, action, proceed):
        self.log.append(f"{self.name}>{action.kind}")
        try:
            result = proceed()
        except rpc.RpcError as exc:
            self.log.append(f"{self.name}<{exc.code.name}")
            raise
        self.log.append(f"{self.name}<")
        return result


@pytest.fixture
def service():
    return Tracing()


@pytest.fixture
def serving(url, service, servers):
    return lambda **options: servers(url, service, **options)


def echo(endpoint):
    return rpc.Client(endpoint, ECHO)


def test_server_interceptors_run_in_order_and_see_who_asks_what(serving, peers):
    log, seen = [], []

    def look(action, proceed):
        seen.append((action.kind, action.method, action.identity, action.request.text,
                     dict(action.metadata), action.context.method))
        return proceed()

    server = serving(interceptors=[Recorder("a", log), look, Recorder("b", log)])
    client = echo(peers(server.url, metadata={"hello": "x"}))
    assert client.echo(Msg(text="hi"), metadata={"trace-id": "t1"}, timeout=5).text == "hi|t1"
    assert log == ["a>call", "b>call", "b<", "a<"]
    identity = seen[0][2]
    assert seen == [("call", SERVICE + "/Echo", identity, "hi", {"trace-id": "t1"},
                     SERVICE + "/Echo")]
    assert identity.method in ("none", "unix", "tls")


def test_an_interceptor_wraps_replies_and_streams(serving, peers):
    def shout(action, proceed):
        result = proceed()
        if action.kind == "call":
            return Msg(text=result.text.upper())
        if action.kind == "stream":
            return (Msg(text=item.text + "!") for item in result)
        return result

    client = echo(peers(serving(interceptors=[shout]).url))
    assert client.echo(Msg(text="hi"), timeout=5).text == "HI|-"
    assert [m.text for m in client.count(Msg(count=3), timeout=5)] == ["0!", "1!", "2!"]


def test_an_interceptor_answers_or_refuses_without_the_handler(serving, peers, service):
    def cache(action, proceed):
        if action.request.text == "cached":
            return Msg(text="from the cache")
        if action.metadata.get("quota") == "spent":
            raise rpc.RpcError(rpc.StatusCode.RESOURCE_EXHAUSTED, "quota spent")
        return proceed()

    client = echo(peers(serving(interceptors=[cache]).url))
    assert client.echo(Msg(text="cached"), timeout=5).text == "from the cache"
    with pytest.raises(rpc.RpcError) as refused:
        client.echo(Msg(text="x"), metadata={"quota": "spent"}, timeout=5)
    assert (refused.value.code, refused.value.message) == (
        rpc.StatusCode.RESOURCE_EXHAUSTED, "quota spent")
    assert service.calls["echo"] == 0
    assert client.echo(Msg(text="real"), timeout=5).text == "real|-"


def test_interceptors_see_the_refusals_of_authorize_and_unknown_methods(serving, peers):
    log = []
    server = serving(interceptors=[Recorder("log", log)],
                     authorize=lambda identity, action, method, target: method.endswith("/Echo"))
    peer = peers(server.url)
    with pytest.raises(rpc.RpcError) as denied:
        echo(peer).fail(Msg(), timeout=5)
    assert denied.value.code == rpc.StatusCode.PERMISSION_DENIED
    assert echo(peer).echo(Msg(text="ok"), timeout=5).text == "ok|-"
    assert log == ["log>call", "log<PERMISSION_DENIED", "log>call", "log<"]


def test_an_interceptor_that_fails_refuses_that_action_only(serving, peers, caplog):
    def buggy(action, proceed):
        if action.request.text == "boom":
            raise ZeroDivisionError("the interceptor's own bug")
        return proceed()

    client = echo(peers(serving(interceptors=[buggy]).url))
    caplog.set_level(logging.ERROR, logger="onedrive_rpc")
    with pytest.raises(rpc.RpcError) as failed:
        client.echo(Msg(text="boom"), timeout=5)
    assert failed.value.code == rpc.StatusCode.INTERNAL
    assert failed.value.message.startswith("ZeroDivisionError (error id ")
    assert "the interceptor's own bug" not in failed.value.message
    assert "an interceptor of /onedrive_rpc.testing.Echo/Echo failed" in caplog.text
    assert client.echo(Msg(text="fine"), timeout=5).text == "fine|-"


def test_an_interceptor_sees_a_request_that_does_not_parse_as_invalid_argument(serving, peers):
    def peek(action, proceed):
        action.request  # noqa: B018 - decoding is the point
        return proceed()

    peer = peers(serving(interceptors=[peek]).url)
    with pytest.raises(rpc.RpcError) as bad:
        peer.call(SERVICE + "/Echo", b"\xff\xff\xff", Msg.FromString, 5)
    assert bad.value.code == rpc.StatusCode.INVALID_ARGUMENT
    assert bad.value.message.startswith("request does not parse as onedrive_rpc.testing.Msg")


def test_server_interceptors_run_around_pattern_actions(serving, peers):
    log = []
    server = serving(interceptors=[Recorder("s", log)])
    client = echo(peers(server.url))
    sub = client.changed.subscribe("a.>", timeout=5)
    client.changed.publish("a.b", Msg(text="p"), confirm=True, timeout=5)
    assert sub.get(timeout=5).message.text == "p"
    done = Event()
    consumer = client.work.consume(lambda task, context: done.set(), timeout=5)
    client.work.produce(Msg(text="t"), timeout=5)
    assert done.wait(5)
    consumer.stop()
    listener = echo(peers(server.url)).announce.listen()
    client.announce.broadcast(Msg(text="b"), confirm=True, timeout=5)
    assert listener.get(timeout=5).message.text == "b"
    wait_until(lambda: len(log) == 12, timeout=5)
    assert log == ["s>subscribe", "s<", "s>publish", "s<", "s>consume", "s<", "s>produce", "s<",
                   "s>broadcast", "s>listen", "s<", "s<"]


def test_an_interceptor_sees_what_a_subscribe_or_consume_asks_for(serving, peers):
    """`block` holds publishers back: a server can keep it to peers it trusts."""
    seen = []

    class NoBlock(rpc.Interceptor):
        def intercept(self, action, proceed):
            seen.append((action.kind, dict(action.options)))
            if action.options.get("policy") == "block":
                raise rpc.RpcError(rpc.StatusCode.PERMISSION_DENIED, "block is for trusted peers")
            return proceed()

    client = echo(peers(serving(interceptors=[NoBlock()]).url))
    with pytest.raises(rpc.RpcError) as refused:
        client.changed.subscribe("a.>", policy="block", queue_limit=7, timeout=5)
    assert refused.value.code == rpc.StatusCode.PERMISSION_DENIED
    assert "trusted" in refused.value.message
    sub = client.changed.subscribe("a.>", policy="drop_newest", queue_limit=9, timeout=5)
    consumer = client.work.consume(lambda task, context: None, prefetch=3, timeout=5)
    client.changed.publish("a.b", Msg(text="p"), confirm=True, timeout=5)
    assert sub.get(timeout=5).message.text == "p"
    consumer.stop()
    assert seen[:3] == [("subscribe", {"policy": "block", "queue_limit": 7}),
                        ("subscribe", {"policy": "drop_newest", "queue_limit": 9}),
                        ("consume", {"prefetch": 3})]
    assert seen[3] == ("publish", {})


# --------------------------------------------------------------- clients


def test_client_interceptors_add_metadata_wrap_replies_and_refuse_before_sending(
        serving, peers, service):
    kinds = []

    def trace(action, proceed):
        kinds.append((action.kind, action.method, action.target))
        if action.kind in ("call", "call_future", "stream", "notify"):
            action.metadata["trace-id"] = "abc"
        return proceed()

    def offline_guard(action, proceed):
        if action.payload is not None and b"forbidden" in action.payload:
            raise rpc.RpcError(rpc.StatusCode.FAILED_PRECONDITION, "not sent: forbidden")
        result = proceed()
        return Msg(text=result.text + "+") if action.kind == "call" else result

    server = serving()
    client = echo(peers(server.url, interceptors=[trace, offline_guard]))
    assert client.echo(Msg(text="hi"), timeout=5).text == "hi|abc+"
    assert client.echo.future(Msg(text="later"), timeout=5).get(timeout=5).text == "later|abc"
    with pytest.raises(rpc.RpcError) as refused:
        client.echo(Msg(text="forbidden"), timeout=5)
    assert refused.value.code == rpc.StatusCode.FAILED_PRECONDITION
    sub = client.changed.subscribe("t.>", timeout=5)
    client.changed.publish("t.x", Msg(text="p"), confirm=True, timeout=5)
    assert sub.get(timeout=5).message.text == "p"
    client.work.produce(Msg(text="w"), timeout=5)
    client.announce.broadcast(Msg(text="b"))
    client.announce.listen().cancel()
    client.note(Msg(text="n"), confirm=True, timeout=5)
    assert service.calls["echo"] == 2
    path = SERVICE + "/"
    assert kinds == [("call", path + "Echo", ""), ("call_future", path + "Echo", ""),
                     ("call", path + "Echo", ""), ("subscribe", path + "Changed", "t.>"),
                     ("publish", path + "Changed", "t.x"), ("produce", path + "Work", path + "Work"),
                     ("broadcast", path + "Announce", ""), ("listen", path + "Announce", ""),
                     ("notify", path + "Note", "")]
