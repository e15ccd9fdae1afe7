"""Health checking (onedrive_rpc.Health, as gRPC's grpc.health.v1): is the
server, or one of its services, serving? For probes that know nothing of
the application: `onedrive-rpc health URL [SERVICE]`, systemd, supervisors,
container health checks.

A server serves it unless built with `health=False`. Each service it
serves is SERVING from when it is added, and "" (the server as a whole)
from the start; `server.set_serving(name, False)` says otherwise (a
dependency is down). A stopping server turns everything NOT_SERVING before
it drains, so that watchers (load balancers, supervisors) move away
first: their streams end once they have heard it, and checks are still
answered while new calls are refused.

    peer = rpc.connect(url)
    health.check(peer)                     # -> SERVING, NOT_SERVING, ...
    health.check(peer, "onedrive.sync.Sync")
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Iterator

from gevent.event import Event

from .calls import Context
from .errors import RpcError, StatusCode
from .health_pb2 import DESCRIPTOR as _FILE
from .health_pb2 import HealthCheckRequest, HealthCheckResponse
from .service import Service

if TYPE_CHECKING:
    from .peer import Peer

__all__ = ["HealthService", "HealthCheckRequest", "HealthCheckResponse", "check", "HEALTH", "SERVING",
           "NOT_SERVING", "SERVICE_UNKNOWN", "status_name"]

HEALTH = _FILE.services_by_name["Health"]
_CHECK = f"/{HEALTH.full_name}/Check"

SERVING = HealthCheckResponse.SERVING
NOT_SERVING = HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = HealthCheckResponse.SERVICE_UNKNOWN


def status_name(status: int) -> str:
    """"SERVING", "NOT_SERVING", ...: for people and logs."""
    return HealthCheckResponse.ServingStatus.Name(status)  # type: ignore[arg-type]


class HealthService(Service):
    """The statuses of a server's services, and the peers watching them."""

    descriptor = HEALTH

    def __init__(self) -> None:
        self._status: Dict[str, int] = {"": SERVING}
        # Set, and replaced by a fresh one, on every change: each watcher
        # waits on the one it saw.
        self._changed = Event()
        #: The server is stopping: everything is NOT_SERVING for good.
        self.stopped = False

    def set(self, service: str, serving: bool) -> None:
        """Say whether `service` ("" the whole server) is serving."""
        status = SERVING if serving else NOT_SERVING
        if self._status.get(service) != status:
            self._status[service] = status
            self._wake()

    def stop(self) -> None:
        """The server stops: everything NOT_SERVING, and each Watch ends
        once it has said so (its stream must not hold up the drain)."""
        self.stopped = True
        for service in list(self._status):
            self.set(service, False)
        self._wake()  # watchers already at NOT_SERVING end too

    def _wake(self) -> None:
        changed, self._changed = self._changed, Event()
        changed.set()

    def check(self, request: HealthCheckRequest, context: Context) -> HealthCheckResponse:
        status = self._status.get(request.service)
        if status is None:
            raise RpcError(StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return HealthCheckResponse(status=status)  # type: ignore[arg-type]

    def watch(self, request: HealthCheckRequest,
              context: Context) -> Iterator[HealthCheckResponse]:
        last = None
        while True:
            changed = self._changed
            status = self._status.get(request.service, SERVICE_UNKNOWN)
            if status != last:
                last = status
                yield HealthCheckResponse(status=status)  # type: ignore[arg-type]
            if self.stopped:
                return
            changed.wait()  # a cancelled call kills this greenlet


def check(peer: "Peer", service: str = "", timeout: float = 10.0) -> int:
    """The status the server at `peer` gives `service` ("" the whole
    server): SERVING, NOT_SERVING; RpcError NOT_FOUND for a service it
    does not serve, UNIMPLEMENTED for a server built with health=False."""
    reply = peer.call(_CHECK, HealthCheckRequest(service=service).SerializeToString(),
                      HealthCheckResponse.FromString, timeout)
    return reply.status
