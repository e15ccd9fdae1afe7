"""The command line a newcomer runs first: the demo and the call/ping tools."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "onedrive_rpc.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def gevent_run_cli(*args, timeout=60):
    """run_cli that lets this process's hub serve meanwhile."""
    from gevent import subprocess as gsubprocess
    return gsubprocess.run([sys.executable, "-m", "onedrive_rpc.cli", *args],
                           capture_output=True, text=True, timeout=timeout)


def test_the_readme_demo_runs_the_example_daemon_and_shows_every_pattern():
    result = run_cli("demo")
    out = result.stdout
    assert result.returncode == 0, result.stderr + out
    assert "the CLI connected to onedrive-daemon" in out
    assert "-> /Documents/report.docx id=" in out
    assert "500 concurrent calls on one connection: all answered" in out
    assert "NOT_FOUND: no item at '/nope.txt'" in out
    assert "FAILED_PRECONDITION: '/Documents/report.docx' is a file" in out
    assert "UNIMPLEMENTED: service onedrive.sync.Sync has no method 'Rename'" in out
    assert "DEADLINE_EXCEEDED" in out
    assert "file   /Documents/budget 2026.xlsx (12004 bytes)" in out  # the server stream
    assert "uploader resumed its session; each upload done exactly once: 6 uploads, 6 changes" in out
    assert "tray saw: CREATED /Documents/scan-0.pdf" in out  # publish/subscribe
    assert "the daemon has it (acknowledged)" in out  # notification
    assert "tray heard Shutdown (the user quit) and stops" in out  # broadcast
    assert "the daemon heard it too and stopped in order" in out
    assert "daemon exited with status 0" in out
    assert out.rstrip().endswith("demo done")


def test_call_and_ping_against_a_served_echo(tmp_path):
    from onedrive_rpc.testing.process import ServerProcess
    with ServerProcess(f"unix://{tmp_path}/cli.sock") as server:
        result = run_cli("call", server.url, "onedrive_rpc.testing.Echo/Echo", '{"text": "hi"}')
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"text": "hi"}
        result = run_cli("call", server.url, "onedrive_rpc.testing.Echo/Fail", '{"text": "no"}')
        assert result.returncode == 1 and "INTERNAL: RuntimeError (error id" in result.stderr
        result = run_cli("call", server.url, "onedrive_rpc.testing.Echo/Echo", '{"nope": 1}')
        assert result.returncode == 2 and "nope" in result.stderr
        result = run_cli("ping", server.url)
        assert result.returncode == 0 and "handshake in" in result.stdout and "echo-server" in result.stdout


def test_streams_notifications_publish_and_subscribe_from_the_command_line(tmp_path):
    from onedrive_rpc.testing.process import ServerProcess
    with ServerProcess(f"unix://{tmp_path}/cli.sock") as server:
        result = run_cli("call", server.url, "onedrive_rpc.testing.Echo/Count", '{"count": 3}')
        assert result.returncode == 0, result.stderr
        assert [json.loads(line)["text"] for line in result.stdout.splitlines()] == ["0", "1", "2"]
        result = run_cli("call", server.url, "onedrive_rpc.testing.Echo/Note", '{"text": "n"}')
        assert result.returncode == 0 and result.stdout.strip() == "delivered", result.stderr
        subscriber = subprocess.Popen(
            [sys.executable, "-m", "onedrive_rpc.cli", "subscribe", server.url,
             "onedrive_rpc.testing.Echo/Changed", "drive.>", "--count", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert "subscribed to 'drive.>'" in subscriber.stderr.readline()
            for topic in ("drive.a", "other.b", "drive.c.d"):
                result = run_cli("publish", server.url, "onedrive_rpc.testing.Echo/Changed", topic,
                                 json.dumps({"text": topic}))
                assert result.returncode == 0 and "published" in result.stdout, result.stderr
            out, _ = subscriber.communicate(timeout=30)
        finally:
            subscriber.kill()
        lines = [json.loads(line) for line in out.splitlines()]
        assert [(m["topic"], m["message"]["text"]) for m in lines] == [
            ("drive.a", "drive.a"), ("drive.c.d", "drive.c.d")]
        result = run_cli("publish", server.url, "onedrive_rpc.testing.Echo/Changed", "bad topic", "{}")
        assert result.returncode == 2 and "whitespace" in result.stderr


SHOP_SERVER = '''
import sys
import onedrive_rpc as rpc
from shop import orders_pb2
from shop.common import types_pb2
from shop.orders_rpc import OrdersBase


class Orders(OrdersBase):
    def place_order(self, request, context):
        return orders_pb2.Order(id=f"order-{request.quantity}", item=types_pb2.Item(id=request.item_id))


server = rpc.Server(sys.argv[1], reflection=True)
server.add_service(Orders())
server.start()
print("READY " + server.url, flush=True)
server.serve_forever()
'''


def test_list_and_call_a_service_the_command_line_has_no_code_for(tmp_path, monkeypatch):
    pytest.importorskip("grpc_tools")
    from onedrive_rpc.codegen.__main__ import main as codegen
    from onedrive_rpc.testing.process import ServerProcess
    inputs = Path(__file__).resolve().parents[1] / "codegen" / "inputs"
    gen = tmp_path / "gen"
    assert codegen(["-I", str(inputs), "--out", str(gen), str(inputs / "shop/orders.proto"),
                    str(inputs / "shop/common/types.proto")]) == 0
    (gen / "serve_shop.py").write_text(SHOP_SERVER)
    monkeypatch.setenv("PYTHONPATH", str(gen))
    with ServerProcess(f"unix://{tmp_path}/shop.sock", module="serve_shop") as server:
        monkeypatch.delenv("PYTHONPATH")  # the command line knows nothing of shop
        result = run_cli("list", server.url)
        assert result.returncode == 0, result.stderr
        assert "shop.orders.Orders" in result.stdout and "onedrive_rpc.Reflection" in result.stdout
        assert "  PlaceOrder(shop.orders.OrderRequest) -> shop.orders.Order  [REQUEST_RESPONSE]" \
            in result.stdout
        assert "  PriceChanged(shop.common.Item) -> google.protobuf.Empty  [PUBLISH_SUBSCRIBE]" \
            in result.stdout
        result = run_cli("call", server.url, "shop.orders.Orders/PlaceOrder",
                         '{"itemId": "b1", "quantity": 2}')
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"id": "order-2", "item": {"id": "b1"}}
        result = run_cli("call", server.url, "shop.orders.Nope/X", "{}")
        assert result.returncode != 0 and "the server has no service 'shop.orders.Nope'" in result.stderr


def test_list_says_when_a_server_offers_no_reflection(tmp_path):
    import onedrive_rpc as rpc
    from onedrive_rpc.testing.echo_service import EchoService
    server = rpc.Server(f"unix://{tmp_path}/plain.sock")
    server.add_service(EchoService())
    server.start()
    try:
        result = gevent_run_cli("list", server.url)
    finally:
        server.stop()
    assert result.returncode == 1 and "offers no reflection" in result.stderr
