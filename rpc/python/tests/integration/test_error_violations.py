"""Field violations travel with an error over real connections (issue 16):
a handler or interceptor raising RpcError(INVALID_ARGUMENT, ...,
violations=...) on a call, a stream or a pattern frame sent as a call
(publish with confirm, produce, subscribe, broadcast with confirm) gets
them to the caller, whose RpcError has them; bytes in Status.bad_request
that are not a BadRequest cost the violations, not the connection; the
CLI prints them."""
from __future__ import annotations

import sys

import pytest
from gevent import subprocess

import onedrive_rpc as rpc
from onedrive_rpc.calls import Context
from onedrive_rpc.core import output
from onedrive_rpc.testing.echo_pb2 import Msg
from onedrive_rpc.testing.echo_service import ECHO, EchoService

INVALID = rpc.StatusCode.INVALID_ARGUMENT
PATH = rpc.Violation("text", "string.prefix", "must have prefix `/`")
COUNT = rpc.Violation("count", "int32.lte", "must be less than or equal to 10")
WHOLE = rpc.Violation("", "message.required", "text or data must be set")


@pytest.fixture(params=["tcp", "unix"])
def transport(request) -> str:
    """Over both socket transports (the conftest's url uses this)."""
    return request.param


def _check(request: Msg) -> None:
    """The rules a validating interceptor would enforce, by hand."""
    violations = []
    if not request.text.startswith("/"):
        violations.append(PATH)
    if request.count > 10:
        violations.append(COUNT)
    if violations:
        raise rpc.RpcError(INVALID, "the request breaks its rules", violations=violations)


class Strict(EchoService):
    """Echo and Count refuse a text that is not an absolute path."""

    def echo(self, request: Msg, context: Context) -> Msg:
        _check(request)
        return request

    def count(self, request: Msg, context: Context):
        for i in range(min(request.count, 3)):
            yield Msg(text=str(i))
        _check(request)  # after some items: the stream's end carries them


def strict_patterns(action, proceed):
    """A server interceptor refusing every pattern action's message, as
    the validation interceptor will for a message breaking its rules."""
    if action.kind in ("publish", "produce", "broadcast", "subscribe"):
        raise rpc.RpcError(INVALID, f"{action.kind} refused", violations=[WHOLE, PATH])
    return proceed()


@pytest.fixture
def client(url, servers, peers):
    server = servers(url, Strict(), interceptors=[strict_patterns])
    return rpc.Client(peers(server.url), ECHO)


def test_a_call_fails_with_the_violations_its_handler_raised(client):
    error = pytest.raises(rpc.RpcError, client.echo, Msg(text="rel", count=11), timeout=5).value
    assert error.code is INVALID and error.message == "the request breaks its rules"
    assert error.violations == (PATH, COUNT)
    assert str(error) == ("INVALID_ARGUMENT: the request breaks its rules\n"
                          "  text: must have prefix `/` [string.prefix]\n"
                          "  count: must be less than or equal to 10 [int32.lte]")
    assert client.echo(Msg(text="/ok"), timeout=5).text == "/ok"  # the connection goes on


def test_the_future_form_has_them_too(client):
    future = client.echo.future(Msg(text="rel"), timeout=5)
    assert pytest.raises(rpc.RpcError, future.get, timeout=5).value.violations == (PATH,)


def test_a_stream_ends_with_the_violations_after_its_items(client):
    stream = client.count(Msg(text="rel", count=3), timeout=5)
    items = []
    with pytest.raises(rpc.RpcError) as raised:
        for item in stream:
            items.append(item.text)
    assert items == ["0", "1", "2"]
    assert raised.value.code is INVALID and raised.value.violations == (PATH,)


@pytest.mark.parametrize("act", ["publish", "produce", "broadcast", "subscribe"])
def test_a_pattern_frame_answered_as_a_call_carries_them(client, act):
    acts = {
        "publish": lambda: client.changed.publish("a.b", Msg(text="x"), confirm=True, timeout=5),
        "produce": lambda: client.work.produce(Msg(text="x"), timeout=5),
        "broadcast": lambda: client.announce.broadcast(Msg(text="x"), confirm=True, timeout=5),
        "subscribe": lambda: client.changed.subscribe("a.>", timeout=5),
    }
    error = pytest.raises(rpc.RpcError, acts[act]).value
    assert (error.code, error.message, error.violations) == (INVALID, f"{act} refused",
                                                             (WHOLE, PATH))
    assert "\n  text or data must be set [message.required]\n" in str(error)


def test_malformed_violations_arrive_as_none_and_the_connection_goes_on(client, monkeypatch):
    """A peer whose Status.bad_request is not a BadRequest (here: this
    server, made to write a truncated one): the caller gets the error
    without violations, and the connection serves the next call."""
    monkeypatch.setattr(output, "encode_violations", lambda violations: b"\x0a\x05\x0a")
    error = pytest.raises(rpc.RpcError, client.echo, Msg(text="rel"), timeout=5).value
    assert (error.code, error.message, error.violations) == (
        INVALID, "the request breaks its rules", ())
    assert client.echo(Msg(text="/ok"), timeout=5).text == "/ok"


def gevent_run_cli(*args, timeout=60):
    """The command line in a child, while this process's hub serves it."""
    return subprocess.run([sys.executable, "-m", "onedrive_rpc.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_the_cli_prints_the_violations(servers, tmp_path):
    server = servers(f"unix://{tmp_path}/cli.sock", Strict())
    result = gevent_run_cli("call", server.url, "onedrive_rpc.testing.Echo/Echo",
                            '{"text": "rel", "count": 11}')
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == ("error: INVALID_ARGUMENT: the request breaks its rules\n"
                             "  text: must have prefix `/` [string.prefix]\n"
                             "  count: must be less than or equal to 10 [int32.lte]\n")
    assert result.stdout == ""
