"""Passes the wrong request type: mypy must reject it (tox -e typecheck)."""
import onedrive_rpc as rpc
from shop import orders_pb2
from shop.orders_rpc import OrdersClient


def use(peer: rpc.Peer) -> str:
    order = OrdersClient(peer).place_order(orders_pb2.Order(id="wrong type"))
    return order.id


def publish_wrong(peer: rpc.Peer) -> None:
    # An Order where the topic carries Items: mypy must say so.
    OrdersClient(peer).price_changed.publish("prices.x", orders_pb2.Order())
