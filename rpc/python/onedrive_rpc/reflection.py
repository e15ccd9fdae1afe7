"""Server reflection (opt-in, `rpc.Server(url, reflection=True)`): the
services a server serves and the .proto files behind them, so tools can
list them and call them without the caller's own generated code.

    peer = rpc.connect(url)
    services = reflection.list_services(peer)      # -> ServiceList
    descriptors = reflection.load(services)        # ServiceDescriptors, for rpc.Client
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor, ServiceDescriptor

from .calls import Context
from .reflection_pb2 import DESCRIPTOR as _FILE
from .reflection_pb2 import ListServicesRequest, ServiceList
from .service import Service

if TYPE_CHECKING:
    from .peer import Peer

__all__ = ["ReflectionService", "list_services", "load", "REFLECTION"]

REFLECTION = _FILE.services_by_name["Reflection"]
_PATH = f"/{REFLECTION.full_name}/ListServices"


class ReflectionService(Service):
    """Answers ListServices from the server's registered services."""

    descriptor = REFLECTION

    def __init__(self, services: "Dict[str, Service]") -> None:
        self._services = services

    def list_services(self, request: ListServicesRequest, context: Context) -> ServiceList:
        reply = ServiceList()
        seen: Dict[str, None] = {}
        for name in sorted(self._services):
            reply.services.append(name)
            _add_file(self._services[name].descriptor.file, seen, reply)
        return reply


def _add_file(file: FileDescriptor, seen: Dict[str, None], reply: ServiceList) -> None:
    """`file` and what it imports, dependencies first, each once."""
    if file.name in seen:
        return
    seen[file.name] = None
    for dependency in file.dependencies:
        _add_file(dependency, seen, reply)
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    reply.files.append(proto)


def list_services(peer: "Peer", timeout: float = 10.0) -> ServiceList:
    """Ask the server at `peer` what it serves (UNIMPLEMENTED if it was
    built without reflection)."""
    return peer.call(_PATH, ListServicesRequest().SerializeToString(), ServiceList.FromString,
                     timeout)


def load(services: ServiceList,
         pool: Optional[descriptor_pool.DescriptorPool] = None) -> List[ServiceDescriptor]:
    """Add the server's files to `pool` (default: protobuf's default pool,
    where method options such as the pattern resolve; files it has already
    are kept) and return the descriptors of its services."""
    pool = pool or descriptor_pool.Default()
    for file in services.files:
        try:
            pool.FindFileByName(file.name)
        except KeyError:
            pool.Add(file)
    return [pool.FindServiceByName(name) for name in services.services]
