"""`onedrive-rpc conformance URL`: the suite from the command line, against
an Echo server in another process (as a server in another language would be)."""
from __future__ import annotations

import json
import sys

from gevent import subprocess

import onedrive_rpc as rpc
from onedrive_rpc import cli
from onedrive_rpc.testing.echo_service import EchoService
from onedrive_rpc.testing.helpers import child_env
from onedrive_rpc.testing.process import ServerProcess


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onedrive_rpc.cli", "conformance", *args],
                          capture_output=True, text=True, timeout=60, env=child_env())


def test_the_command_runs_scenarios_and_exits_0_only_if_all_pass(tmp_path):
    wrong = tmp_path / "scenarios"
    wrong.mkdir()
    (wrong / "wrong_echo.json").write_text(json.dumps({"name": "wrong_echo", "server": "echo", "steps": [
        {"connect": "a"},
        {"send": {"hello": {"version": "PROTOCOL_VERSION_1", "identity": {"peer_id": "cli"}}}},
        {"expect": {"welcome": {"resumed": True}}}]}))
    with ServerProcess(f"unix://{tmp_path}/echo.sock") as server:
        ok = run_cli(server.url, "--only", "call_unary_ok,handshake_welcome", "--only", "stream_cancel")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "PASS   call_unary_ok" in ok.stdout
        assert ok.stdout.rstrip().endswith("3 scenarios: 3 passed, 0 failed, 0 failed as expected, "
                                           "0 passed unexpectedly")
        failed = run_cli(server.url, "--scenarios", str(wrong))
        assert failed.returncode == 1
        assert "FAIL   wrong_echo" in failed.stdout
        assert "step 3 (expect on a): mismatch: " in failed.stdout
        assert "welcome.resumed is false, expected true" in failed.stdout


def test_the_shared_secret_target_runs_its_own_scenarios(tmp_path):
    with ServerProcess(f"unix://{tmp_path}/secret.sock",
                       args=["--secret", "conformance shared secret"]) as server:
        ok = run_cli(server.url, "--server", "echo-secret")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "PASS   auth_shared_secret_resume" in ok.stdout
        assert "call_unary_ok" not in ok.stdout  # an echo scenario: not this target's
        other = run_cli(server.url, "--server", "echo-secret", "--only", "call_unary_ok")
        assert other.returncode == 2
        assert "call_unary_ok is for a server of kind echo" in other.stderr


def test_a_tls_target_with_its_ca(servers, certificates, capsys):
    server = servers("tls://127.0.0.1:0", EchoService(),
                     tls=rpc.TLS(certfile=str(certificates / "server.pem")))
    assert cli.main(["conformance", server.url, "--cafile", str(certificates / "ca.pem"),
                     "--only", "call_unary_ok,handshake_welcome"]) == 0
    assert "2 scenarios: 2 passed" in capsys.readouterr().out
    # Without the CA, the system's CAs do not vouch for the test certificate.
    assert cli.main(["conformance", server.url, "--only", "call_unary_ok"]) == 1
    assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().out


def test_list_and_unknown_names():
    listed = run_cli("unix:///nowhere", "--list")
    assert listed.returncode == 0
    assert any(line.startswith("call_unary_ok  [§5.1") for line in listed.stdout.splitlines())
    unknown = run_cli("unix:///nowhere", "--only", "no_such_scenario")
    assert unknown.returncode == 2 and "no scenario named no_such_scenario" in unknown.stderr
