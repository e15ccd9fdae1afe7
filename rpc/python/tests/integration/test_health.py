"""onedrive_rpc.Health (issue 14, part 1): what a probe asks, what a watcher
hears while the server drains, and `onedrive-rpc health`'s exit status."""
from __future__ import annotations

import sys

import gevent
import pytest
from gevent import subprocess

import onedrive_rpc as rpc
from onedrive_rpc import cli, health
from onedrive_rpc.testing.echo_pb2 import Msg
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.helpers import child_env
from onedrive_rpc.testing.process import ServerProcess

ECHO_NAME = ECHO.full_name


@pytest.fixture
def echo(servers):
    return servers("tcp://127.0.0.1:0", EchoService())


def _watch(peer, service=""):
    """Statuses as a Watch stream delivers them, and the greenlet reading it
    (which ends quietly when the stream does: cancelled, server gone)."""
    heard = []
    stream = rpc.Client(peer, health.HEALTH).watch(health.HealthCheckRequest(service=service))

    def read():
        try:
            for reply in stream:
                heard.append(reply.status)
        except rpc.RpcError:
            pass
    return heard, stream, gevent.spawn(read)


def _until(condition, timeout=5.0):
    with gevent.Timeout(timeout):
        while not condition():
            gevent.sleep(0.01)


def test_check_says_serving_for_the_server_and_each_service_and_not_found_for_others(echo, peers):
    peer = peers(echo.url)
    assert health.check(peer) == health.SERVING
    assert health.check(peer, ECHO_NAME) == health.SERVING
    with pytest.raises(rpc.RpcError) as info:
        health.check(peer, "no.Such")
    assert info.value.code == rpc.StatusCode.NOT_FOUND
    assert info.value.message == "unknown service 'no.Such'"


def test_set_serving_changes_what_check_and_watchers_see(echo, peers):
    peer = peers(echo.url)
    heard, stream, reader = _watch(peer, ECHO_NAME)
    try:
        _until(lambda: heard == [health.SERVING])
        echo.set_serving(ECHO_NAME, False)
        _until(lambda: heard[-1] == health.NOT_SERVING)
        assert health.check(peer, ECHO_NAME) == health.NOT_SERVING
        assert health.check(peer) == health.SERVING  # the server as a whole still is
        echo.set_serving(ECHO_NAME, True)
        _until(lambda: heard[-1] == health.SERVING)
        assert heard == [health.SERVING, health.NOT_SERVING, health.SERVING]
    finally:
        stream.cancel()
        reader.join(5)


def test_a_stopping_server_says_not_serving_before_it_drains(servers, peers):
    """Watchers hear NOT_SERVING while calls still drain, then their stream
    ends (it must not hold the drain up to its grace); a probe's Check is
    still answered, NOT_SERVING, while other new calls are refused."""
    server = servers("tcp://127.0.0.1:0", EchoService())
    peer = peers(server.url)
    heard, stream, reader = _watch(peer)
    slow = rpc.Client(peer, ECHO).sleep.future(Msg(text="in flight", delay=1.0), timeout=10)
    try:
        _until(lambda: heard == [health.SERVING])
        stopper = gevent.spawn(server.stop, 30.0)
        _until(lambda: heard[-1] == health.NOT_SERVING)
        assert not slow.ready(), "the watcher heard it while calls were still draining"
        reader.join(5)
        assert reader.dead and heard == [health.SERVING, health.NOT_SERVING]
        assert health.check(peer) == health.NOT_SERVING
        with pytest.raises(rpc.RpcError) as info:
            rpc.Client(peer, ECHO).echo(Msg(text="new"), timeout=5)
        assert (info.value.code, info.value.message) == (rpc.StatusCode.UNAVAILABLE,
                                                         "server is stopping")
        assert slow.get(timeout=5).text == "in flight"
        stopper.get(timeout=10)  # not the 30 s grace: nothing else was in flight
    finally:
        stream.cancel()
        reader.join(5)


def test_a_server_built_without_health_does_not_serve_it(servers, peers):
    server = servers("tcp://127.0.0.1:0", EchoService(), health=False)
    with pytest.raises(rpc.RpcError) as info:
        health.check(peers(server.url))
    assert info.value.code == rpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(RuntimeError, match="health=False"):
        server.set_serving("", False)


def test_the_command_exits_0_only_while_serving(echo, capsys):
    assert cli.main(["health", echo.url]) == 0
    assert capsys.readouterr().out == "SERVING\n"
    echo.set_serving("", False)
    assert cli.main(["health", echo.url]) == 1
    assert capsys.readouterr().out == "NOT_SERVING\n"
    assert cli.main(["health", echo.url, "no.Such"]) == 1
    assert capsys.readouterr().out == "SERVICE_UNKNOWN: unknown service 'no.Such'\n"


def test_the_command_exits_2_when_it_cannot_ask(tmp_path, capsys):
    assert cli.main(["health", f"unix://{tmp_path}/nobody.sock", "--timeout", "2"]) == 2
    assert "cannot connect" in capsys.readouterr().err


def test_a_probe_in_another_process_against_serve_echo(tmp_path):
    with ServerProcess(f"unix://{tmp_path}/echo.sock") as proc:
        probe = subprocess.run([sys.executable, "-m", "onedrive_rpc.cli", "health", proc.url, ECHO_NAME],
                               capture_output=True, text=True, timeout=60, env=child_env())
        assert (probe.returncode, probe.stdout) == (0, "SERVING\n"), probe.stderr
