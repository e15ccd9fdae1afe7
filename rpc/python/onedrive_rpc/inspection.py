"""What a server holds right now, read for operators: its peers' sessions,
the subscriptions and the work queues (`server.inspect()`). The admin
service sends it as it is (admin.proto's messages), metrics read it at
each scrape, `onedrive-rpc top` shows it.

Read-only and cheap: a pass over what the server already keeps, no call
to any peer.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterable, List, NamedTuple, Optional

from .admin_pb2 import PeerStatus, QueueStatus, SubscriptionStatus
from .driver import Connection

if TYPE_CHECKING:
    from .broker import Broker

__all__ = ["Inspection", "inspect", "peer_status", "CONNECTED", "SUSPENDED"]

CONNECTED = "connected"
SUSPENDED = "suspended"


class Inspection(NamedTuple):
    """A server at one moment. `peers` holds every session, connected or
    suspended (see PeerStatus.state); `subscriptions` the first of them
    (see inspect), of `subscription_count` in all."""

    peers: List[PeerStatus]
    subscriptions: List[SubscriptionStatus]
    queues: List[QueueStatus]
    subscription_count: int

    @property
    def connected(self) -> List[PeerStatus]:
        return [peer for peer in self.peers if peer.state == CONNECTED]


def inspect(connections: Iterable[Connection], broker: "Broker", transport: str,
            subscription_limit: Optional[int] = None) -> Inspection:
    """The sessions of `connections` (all over `transport`, a URL scheme),
    and what `broker` holds: its first `subscription_limit` subscriptions
    (None: all; peers can make millions, the sessions and queues are
    bounded by the server's limits and services)."""
    now, wall = time.monotonic(), time.time()
    peers = [peer_status(conn, transport, now, wall) for conn in connections if not conn.closed]
    names = {peer.session_id: peer.name for peer in peers}
    listed, count = broker.subscriptions(subscription_limit)
    subscriptions = [
        SubscriptionStatus(method=method, pattern=sub.pattern, session_id=session_id or "",
                           peer=names.get(session_id, "") if session_id else "this server",
                           policy=sub.policy.api_name, queue_limit=sub.queue_limit,
                           queued=sub.queued, queued_bytes=sub.queued_bytes, dropped=sub.dropped)
        for method, session_id, sub in listed]
    queues = [QueueStatus(method=method, ready=stats.ready, in_flight=stats.in_flight,
                          consumers=stats.consumers, dead_letters=stats.dead,
                          produced=stats.produced, completed=stats.completed,
                          failed_attempts=stats.failed_attempts, redelivered=stats.redelivered)
              for method, stats in sorted(broker.every_queue_stats().items())]
    return Inspection(peers, subscriptions, queues, count)


def peer_status(conn: Connection, transport: str, now: float, wall: float) -> PeerStatus:
    """One session, at monotonic time `now` (wall-clock `wall`)."""
    session, stream, peer = conn.session, conn.stream, conn.peer
    credentials = stream.credentials
    liveness = session.liveness
    heard = session.last_received
    return PeerStatus(
        session_id=session.session_id,
        name=peer.name if peer is not None else "",
        pid=peer.pid if peer is not None else 0,
        peer_id=peer.peer_id if peer is not None else "",
        identity=conn.origin.identity.label,
        uid=credentials.uid if credentials is not None else None,
        transport=transport,
        address=conn.address,
        state=SUSPENDED if conn.suspended else CONNECTED,
        started_at=conn.started_at,
        connected_at=conn.connected_at,
        calls_in_flight=len(conn.calls),
        calls_received=conn.incoming.received,
        calls_out=len(conn.outgoing.pending),
        bytes_in=conn.bytes_in,
        bytes_out=conn.outbox.bytes_out,
        bytes_queued=conn.outbox.out_bytes + session.queued_bytes,
        bytes_unacked=session.reliability.unacked_bytes,
        heartbeat_interval=liveness.interval if liveness is not None else 0.0,
        last_heard=max(0.0, now - heard) if heard is not None else 0.0,
        grace_left=max(0.0, conn.resume_by - now) if conn.suspended else None,
        resumes=conn.resumes)
