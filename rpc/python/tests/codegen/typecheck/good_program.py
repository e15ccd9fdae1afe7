"""Uses the generated stubs correctly: mypy must accept it (tox -e typecheck)."""
import onedrive_rpc as rpc
from shop import orders_pb2
from shop.orders_rpc import OrdersBase, OrdersClient


class Orders(OrdersBase):
    def place_order(self, request: orders_pb2.OrderRequest, context: rpc.Context) -> orders_pb2.Order:
        return orders_pb2.Order(id=request.item_id)


def use(peer: rpc.Peer) -> str:
    order: orders_pb2.Order = OrdersClient(peer).place_order(orders_pb2.OrderRequest(item_id="x"))
    return order.id
