"""Who may take a connection slot of a server, decided before its handshake.

Each stream is counted once: from its accept, through its handshake, for
as long as its connection is RUNNING. A suspended session (its stream
lost, waiting for a resume) holds no slot: suspended sessions live in a
pool of their own, bounded by `Limits.max_suspended_sessions`, the oldest
evicted first, so a peer that handshakes and resets a thousand times
locks nobody out. Connections from one address (one uid on a unix
socket) are bounded too, by `Limits.max_connections_per_peer`.

Counts are derived from the connections themselves when asked, never kept
in step by hand: nothing can drift.
"""
from __future__ import annotations

import collections
from typing import Counter, Iterable, List, Optional, Protocol, TypeVar

from .config import Limits
from .transport.base import Stream, peer_key

__all__ = ["Admission"]


class Slot(Protocol):
    """A server's connection, as admission counts it."""

    stream: Stream
    suspended: bool
    closed: bool
    suspended_at: float


SlotT = TypeVar("SlotT", bound=Slot)


class Admission:
    """The admission policy of one server over its connections."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        #: Handshakes in progress, by peer key.
        self._handshaking: Counter[str] = collections.Counter()

    def refusal(self, key: str, connections: Iterable[Slot]) -> Optional[str]:
        """Why a new stream from `key` is refused now, or None: then it
        holds a slot until `handshake_done(key)`."""
        limits = self.limits
        running = [conn for conn in connections if not conn.suspended and not conn.closed]
        if len(running) + sum(self._handshaking.values()) >= limits.max_connections:
            return f"server has too many connections ({limits.max_connections})"
        mine = sum(1 for conn in running if peer_key(conn.stream) == key) + self._handshaking[key]
        if mine >= limits.max_connections_per_peer:
            return (f"too many connections from {key} "
                    f"({limits.max_connections_per_peer} per peer)")
        self._handshaking[key] += 1
        return None

    def handshake_done(self, key: str) -> None:
        """The handshake of a stream from `key` ended (its connection, if
        any, now counts as running instead)."""
        self._handshaking[key] -= 1
        if self._handshaking[key] <= 0:
            del self._handshaking[key]

    @property
    def handshakes(self) -> int:
        return sum(self._handshaking.values())

    def to_evict(self, connections: Iterable[SlotT]) -> List[SlotT]:
        """Suspended sessions past the pool's bound, oldest first."""
        suspended = sorted((conn for conn in connections if conn.suspended and not conn.closed),
                           key=lambda conn: conn.suspended_at)
        excess = len(suspended) - self.limits.max_suspended_sessions
        return suspended[:excess] if excess > 0 else []
