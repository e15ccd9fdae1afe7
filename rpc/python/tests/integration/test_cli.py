"""The command line a newcomer runs first: the demo and the call/ping tools."""
from __future__ import annotations

import json
import subprocess
import sys


def run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "onedrive_rpc.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_the_readme_demo_shows_real_calls():
    result = run_cli("demo")
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "client.echo(text='hello from the demo') -> 'hello from the demo'" in out
    assert "500 concurrent calls that each sleep 0.3 s on one connection: all answered in order" in out
    assert "INTERNAL: RuntimeError: disk full" in out
    assert "UNIMPLEMENTED" in out and "DEADLINE_EXCEEDED" in out
    assert "all 20 calls answered" in out
    assert "server killed mid-call       -> UNAVAILABLE" in out
    assert out.rstrip().endswith("demo done")


def test_call_and_ping_against_a_served_echo(tmp_path):
    from onedrive_rpc.testing.process import ServerProcess
    with ServerProcess(f"unix://{tmp_path}/cli.sock") as server:
        result = run_cli("call", server.url, "onedrive_rpc.testing.Echo/Echo", '{"text": "hi"}')
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"text": "hi"}
        result = run_cli("call", server.url, "onedrive_rpc.testing.Echo/Fail", '{"text": "no"}')
        assert result.returncode == 1 and "INTERNAL: RuntimeError: no" in result.stderr
        result = run_cli("call", server.url, "onedrive_rpc.testing.Echo/Echo", '{"nope": 1}')
        assert result.returncode == 2 and "nope" in result.stderr
        result = run_cli("ping", server.url)
        assert result.returncode == 0 and "handshake in" in result.stdout and "echo-server" in result.stdout
