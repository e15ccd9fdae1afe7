"""Frozen, validated settings shared by servers and peers."""
from __future__ import annotations

from dataclasses import dataclass

from .core.framing import ABSOLUTE_MAX_FRAME_SIZE, DEFAULT_MAX_FRAME_SIZE, MIN_FRAME_LIMIT

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    """What one side lets a peer cost it. Each default names its reason.

    max_frame_size: largest frame accepted; bigger is a protocol error that
        closes that one connection (a hostile length prefix cannot make us
        allocate more).
    max_concurrent_calls: calls served at once per connection; at the limit
        the connection stops reading until one finishes (backpressure, not
        errors, and bounded memory).
    max_queued_bytes: bytes queued for a peer that does not read before the
        senders wait.
    max_connections: connections a server holds; more are closed at once
        with RESOURCE_EXHAUSTED.
    handshake_timeout: seconds a new connection has to finish its handshake.
    """

    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_concurrent_calls: int = 1024
    max_queued_bytes: int = 32 * 1024 * 1024
    max_connections: int = 1024
    handshake_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not MIN_FRAME_LIMIT <= self.max_frame_size <= ABSOLUTE_MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be in {MIN_FRAME_LIMIT}..{ABSOLUTE_MAX_FRAME_SIZE}, "
                             f"not {self.max_frame_size}")
        for name in ("max_concurrent_calls", "max_queued_bytes", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not self.handshake_timeout > 0:
            raise ValueError(f"handshake_timeout must be positive, not {self.handshake_timeout}")
