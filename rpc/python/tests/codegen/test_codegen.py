"""The protoc plugin: golden output for a proto with every pattern, comments,
nested packages and imports across files; and generated code that serves.

Regenerate the golden files after an intended change with
    ONEDRIVE_RPC_REGEN_GOLDEN=1 pytest rpc/python/tests/codegen
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

from google.protobuf import empty_pb2

import onedrive_rpc as rpc
from onedrive_rpc.testing.helpers import wait_until
from onedrive_rpc.codegen.__main__ import main as codegen

pytest.importorskip("grpc_tools")

HERE = Path(__file__).resolve().parent
INPUTS = HERE / "inputs"
GOLDEN = HERE / "golden"
PROTOS = ["shop/orders.proto", "shop/common/types.proto"]
GENERATED = ["shop/orders_rpc.py", "shop/orders_rpc.pyi"]


def generate(out: Path) -> None:
    assert codegen(["-I", str(INPUTS), "--out", str(out), *[str(INPUTS / p) for p in PROTOS]]) == 0


def test_generated_stubs_match_the_golden_files(tmp_path):
    generate(tmp_path)
    for name in GENERATED:
        produced = (tmp_path / name).read_text()
        golden = GOLDEN / name
        if os.environ.get("ONEDRIVE_RPC_REGEN_GOLDEN"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(produced)
        assert produced == golden.read_text(), f"{name} differs from {golden}"


def test_generation_is_deterministic(tmp_path):
    generate(tmp_path / "a")
    generate(tmp_path / "b")
    for name in GENERATED:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_files_without_services_get_no_stubs(tmp_path):
    generate(tmp_path)
    assert not (tmp_path / "shop/common/types_rpc.py").exists()


@pytest.fixture
def shop(tmp_path):
    generate(tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("shop.orders_rpc"), importlib.import_module("shop.orders_pb2"), \
            importlib.import_module("shop.common.types_pb2")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == "shop" or n.startswith("shop.")]:
            del sys.modules[name]


def test_generated_code_serves_and_calls_every_method(shop, peers):
    orders_rpc, orders_pb2, types_pb2 = shop
    audited, shipped, heard_prices, heard_closing = [], [], [], []

    class Orders(orders_rpc.OrdersBase):
        def place_order(self, request, context):
            item = types_pb2.Item(id=request.item_id, name="book")
            return orders_pb2.Order(id=f"order-{request.quantity}", item=item)

        def list_orders(self, request, context):
            for i in range(3):
                yield orders_pb2.Order(id=str(i))

        def audit(self, request, context):
            audited.append(request.id)

        def ship(self, request, context):  # the server consumes its own queue
            shipped.append((request.id, context.attempt))

        def price_changed(self, request, context):  # ...hears every price published
            heard_prices.append((context.topic, request.id))

        def closing(self, request, context):  # ...and what peers broadcast
            heard_closing.append(context.publisher)

    assert "Places an order and returns it." in orders_rpc.OrdersBase.place_order.__doc__
    assert "Takes and tracks orders." in orders_rpc.OrdersBase.__doc__
    server = rpc.Server("inproc://codegen-shop")
    server.add_service(Orders())
    server.start()
    try:
        peer = peers(server.url)
        client = orders_rpc.OrdersClient(peer)
        order = client.place_order(orders_pb2.OrderRequest(item_id="b1", quantity=3), timeout=5)
        assert order == orders_pb2.Order(id="order-3", item=types_pb2.Item(id="b1", name="book"))
        assert [o.id for o in client.list_orders(empty_pb2.Empty(), timeout=5)] == ["0", "1", "2"]
        client.audit(orders_pb2.Order(id="a1"), confirm=True, timeout=5)
        assert audited == ["a1"]
        with client.price_changed.subscribe("prices.*", timeout=5) as sub:
            client.price_changed.publish("prices.b1", types_pb2.Item(id="b1"), confirm=True, timeout=5)
            received = sub.get(timeout=5)
        assert received.topic == "prices.b1" and received.message == types_pb2.Item(id="b1")
        client.ship.produce(orders_pb2.Order(id="s1"), timeout=5)
        listener = client.closing.listen()
        assert orders_rpc.OrdersClient(server).closing.broadcast(empty_pb2.Empty()) == 1
        assert listener.get(timeout=5).message == empty_pb2.Empty()
        client.closing.broadcast(empty_pb2.Empty(), confirm=True, timeout=5)
        wait_until(lambda: shipped == [("s1", 1)] and heard_prices == [("prices.b1", "b1")]
                   and heard_closing == [peer.session_id])
        with pytest.raises(rpc.RpcError) as info:
            client.get_item(types_pb2.Item.Price(cents=5), timeout=5)
        assert info.value.code == rpc.StatusCode.UNIMPLEMENTED
        assert "method /shop.orders.Orders/GetItem is not implemented" in info.value.message
        with pytest.raises(TypeError):
            client.place_order(types_pb2.Item(), timeout=5)
    finally:
        server.stop()


def test_placeholder_methods_make_the_server_no_receiver(shop, peers):
    orders_rpc, orders_pb2, _ = shop
    server = rpc.Server("inproc://codegen-shop-empty")
    server.add_service(orders_rpc.OrdersBase())
    server.start()
    try:
        client = orders_rpc.OrdersClient(peers(server.url))
        client.ship.produce(orders_pb2.Order(id="waits"), timeout=5)
        assert server.queue_stats("/shop.orders.Orders/Ship").consumers == 0
        assert server.queue_stats("/shop.orders.Orders/Ship").ready == 1
    finally:
        server.stop()


def test_the_plugin_reports_errors_to_protoc():
    from google.protobuf.compiler import plugin_pb2

    from onedrive_rpc.codegen.plugin import generate as run_plugin
    request = plugin_pb2.CodeGeneratorRequest(file_to_generate=["missing.proto"])
    assert "missing.proto" in run_plugin(request).error
