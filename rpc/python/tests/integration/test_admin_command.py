"""`onedrive-rpc admin` and `onedrive-rpc top` against a server in another
process (serve-echo serves the admin service): tables, --json, actions,
exit statuses; and the table and rate arithmetic they print."""
from __future__ import annotations

import json
import os
import sys

import gevent
import pytest

import onedrive_rpc as rpc
from onedrive_rpc import admin_cli
from onedrive_rpc.admin_pb2 import PeerStatus, SubscriptionsReply
from onedrive_rpc.testing.echo_pb2 import Msg
from onedrive_rpc.testing.echo_service import ECHO
from onedrive_rpc.testing.helpers import wait_until
from onedrive_rpc.testing.process import ServerProcess

WORK = "onedrive_rpc.testing.Echo/Work"


def run_cli(*args, timeout=60):
    """The command in a child process, while this process's hub serves
    the peers the test holds."""
    from gevent import subprocess as gsubprocess
    return gsubprocess.run([sys.executable, "-m", "onedrive_rpc.cli", *args],
                           capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def echo_server(tmp_path):
    with ServerProcess(f"unix://{tmp_path}/admin-cli.sock") as server:
        yield server


def test_admin_peers_as_a_table_and_as_json(echo_server, peers):
    tray = peers(echo_server.url, name="tray")
    result = run_cli("admin", echo_server.url, "peers")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "PID", "IDENTITY", "SESSION", "TRANSPORT", "CONNECTED",
                              "CALLS", "QUEUED", "HEARD"]
    [row] = [row for row in rows if row.startswith("tray ")]
    assert f" {os.getpid()} " in row and tray.session_id[:12] in row and " unix " in row
    result = run_cli("admin", echo_server.url, "peers", "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)["peers"]
    [seen] = [peer for peer in listed if peer["name"] == "tray"]
    assert seen["session_id"] == tray.session_id and seen["pid"] == os.getpid()
    assert seen["uid"] == os.getuid() and isinstance(seen["bytes_in"], int)
    assert seen["grace_left"] is None


def test_admin_queues_dead_letters_and_replay_from_the_command_line(echo_server, peers):
    echo = rpc.Client(peers(echo_server.url), ECHO)
    failing = echo.work.consume(lambda task, context: 1 / 0, timeout=5)
    echo.work.produce(Msg(text="poison"), timeout=5)
    wait_until(lambda: json.loads(run_cli("admin", echo_server.url, "dead-letters", "--json")
                                  .stdout)["total"] == 1, timeout=30)
    result = run_cli("admin", echo_server.url, "queues")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split() == [f"/{WORK}", "0", "0", "1", "5", "4", "1"]
    result = run_cli("admin", echo_server.url, "dead-letters")
    assert result.returncode == 0, result.stderr
    row = result.stdout.splitlines()[1]
    assert row.startswith(f"/{WORK}") and "ZeroDivisionError" in row
    failing.stop()
    done = []
    echo.work.consume(lambda task, context: done.append(task.text), timeout=5)
    result = run_cli("admin", echo_server.url, "replay", WORK)
    assert (result.returncode, result.stdout) == (0, "replayed 1 dead letter\n"), result.stderr
    wait_until(lambda: done == ["poison"])
    result = run_cli("admin", echo_server.url, "replay", "no.Such/Queue")
    assert result.returncode == 1 and "NOT_FOUND: no work queue /no.Such/Queue" in result.stderr


def test_admin_disconnect_and_subscriptions(echo_server, peers):
    watcher = peers(echo_server.url, name="watcher")
    rpc.Client(watcher, ECHO).changed.subscribe("drive.>", lambda received: None, timeout=5)
    result = run_cli("admin", echo_server.url, "subscriptions")
    assert result.returncode == 0, result.stderr
    row = result.stdout.splitlines()[1].split()
    assert row[:5] == ["/onedrive_rpc.testing.Echo/Changed", "drive.>", "watcher",
                       watcher.session_id[:12], "drop_oldest"]
    old = watcher.session_id
    result = run_cli("admin", echo_server.url, "disconnect", old[:12], "--reason", "test")
    assert (result.returncode, result.stdout) == (0, f"disconnected session {old}\n"), result.stderr
    wait_until(lambda: watcher.session_id != old, timeout=10)
    result = run_cli("admin", echo_server.url, "disconnect")
    assert result.returncode != 0 and "needs a PEER" in result.stderr


def test_top_refreshes_with_rates(echo_server, peers):
    echo = rpc.Client(peers(echo_server.url, name="busy"), ECHO)
    stop = []

    def keep_calling():
        while not stop:
            echo.echo(Msg(text="x"), timeout=5)
    caller = gevent.spawn(keep_calling)
    try:
        result = run_cli("top", echo_server.url, "--count", "2", "--interval", "0.3")
    finally:
        stop.append(True)
        caller.join(5)
    assert result.returncode == 0, result.stderr
    screens = [s for s in result.stdout.split("onedrive-rpc top - ") if s]
    assert len(screens) == 2
    last = screens[-1].splitlines()
    assert "peers: 2 connected, 0 suspended" in last[1]
    [busy] = [line for line in last if line.startswith("busy ")]
    calls_per_second = float(busy.split()[4])
    assert calls_per_second > 10  # the first screen has no rates yet ("-")


def test_admin_of_a_server_without_it_says_so(tmp_path, servers):
    from onedrive_rpc.testing.echo_service import EchoService
    server = servers(f"unix://{tmp_path}/plain.sock", EchoService())
    result = run_cli("admin", server.url, "peers")
    assert result.returncode == 1 and "UNIMPLEMENTED" in result.stderr


def test_table_pads_columns_and_the_units_people_read():
    assert admin_cli.table(("A", "BB"), [("long", 1), ("x", 22)]) == "A     BB\nlong  1\nx     22"
    assert [admin_cli.size(n) for n in (0, 512, 1536, 10 * 1024, 5 * 2 ** 20)] == [
        "0B", "512B", "1.5KiB", "10KiB", "5.0MiB"]
    assert [admin_cli.duration(s) for s in (0.25, 12, 245, 3 * 3600 + 125, 2 * 86400 + 4 * 3600)] == [
        "0.2s", "12s", "4m05s", "3h02m", "2d04h"]


def test_rates_are_per_second_between_samples():
    rates = admin_cli.Rates()
    assert rates.rate("s", "calls", 100, now=10.0) is None
    assert rates.rate("s", "calls", 300, now=12.0) == 100.0
    assert rates.rate("s", "calls", 300, now=12.0) is None  # no time passed
    screen = admin_cli.top_screen("unix:///x", [PeerStatus(session_id="abc", name="n", state="suspended",
                                                           grace_left=3.0)], [],
                                  SubscriptionsReply(), rates, now=20.0)
    assert "peers: 0 connected, 1 suspended" in screen


def test_admin_of_a_tcp_server_with_a_shared_secret_reads_it_from_a_file(servers, tmp_path):
    from onedrive_rpc.testing.echo_service import EchoService
    secret = "an admin's shared secret"
    server = servers("tcp://127.0.0.1:0", EchoService(), admin=True, auth=rpc.SharedSecret(secret))
    (tmp_path / "secret").write_text(secret + "\n")
    result = run_cli("admin", server.url, "peers", "--json", "--secret-file", str(tmp_path / "secret"))
    assert result.returncode == 0, result.stderr
    [me] = json.loads(result.stdout)["peers"]
    assert me["identity"] == "shared-secret" and me["name"] == "onedrive-rpc admin"
    result = run_cli("admin", server.url, "peers", "--timeout", "5")
    assert result.returncode == 1 and "UNAUTHENTICATED" in result.stderr
    result = run_cli("admin", server.url, "peers", "--secret-file", str(tmp_path / "missing"))
    assert result.returncode != 0 and "cannot read the secret file" in result.stderr


def test_admin_over_mutual_tls_with_a_client_certificate(servers, certificates):
    from onedrive_rpc.testing.echo_service import EchoService
    tls = rpc.TLS(certfile=str(certificates / "server.pem"), cafile=str(certificates / "ca.pem"),
                  require_client_cert=True)
    server = servers("tls://127.0.0.1:0", EchoService(), admin=True, tls=tls)
    result = run_cli("admin", server.url, "peers", "--json", "--cafile",
                     str(certificates / "ca.pem"), "--cert", str(certificates / "client.pem"))
    assert result.returncode == 0, result.stderr
    [me] = json.loads(result.stdout)["peers"]
    assert me["identity"].startswith("tls ") and "client-1" in me["identity"]
