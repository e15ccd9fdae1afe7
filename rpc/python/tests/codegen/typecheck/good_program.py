"""Uses the generated stubs correctly: mypy must accept it (tox -e typecheck)."""
from typing import Iterator, List

from google.protobuf import empty_pb2

import onedrive_rpc as rpc
from shop import orders_pb2
from shop.common import types_pb2
from shop.orders_rpc import OrdersBase, OrdersClient


class Orders(OrdersBase):
    def place_order(self, request: orders_pb2.OrderRequest, context: rpc.Context) -> orders_pb2.Order:
        return orders_pb2.Order(id=request.item_id)

    def list_orders(self, request: empty_pb2.Empty, context: rpc.Context) -> Iterator[orders_pb2.Order]:
        yield orders_pb2.Order(id="1")

    def ship(self, request: orders_pb2.Order, context: rpc.TaskContext) -> None:
        print(request.id, context.attempt)


def use(peer: rpc.Peer) -> str:
    client = OrdersClient(peer)
    order: orders_pb2.Order = client.place_order(orders_pb2.OrderRequest(item_id="x"))
    ids: List[str] = [o.id for o in client.list_orders(empty_pb2.Empty(), timeout=5)]
    client.audit(order, confirm=True)
    client.price_changed.publish("prices.x", types_pb2.Item(id="x"))
    with client.price_changed.subscribe("prices.>") as sub:
        print(sub.get(timeout=1).topic)
    client.ship.produce(order)
    client.closing.broadcast(empty_pb2.Empty())
    return order.id + "".join(ids)


def serve(server: rpc.Server) -> None:
    server.add_service(Orders())
    OrdersClient(server).price_changed.publish("prices.y", types_pb2.Item(id="y"))
