"""Heartbeat bookkeeping: when to send a sign of life, when the peer is lost.

Pure arithmetic on the times the driver reports; no clock of its own.
Any frame counts as a sign of life both ways: a busy connection sends no
heartbeats at all.
"""
from __future__ import annotations

__all__ = ["Liveness"]


class Liveness:
    """Send something every `interval` of our silence; the peer is lost after
    `interval * misses` of its silence."""

    __slots__ = ("interval", "misses", "timeout", "last_sent", "last_received")

    def __init__(self, interval: float, misses: int, now: float) -> None:
        if not interval > 0:
            raise ValueError(f"heartbeat interval must be positive, not {interval}")
        if misses < 1:
            raise ValueError(f"heartbeat misses must be at least 1, not {misses}")
        self.interval = interval
        self.misses = misses
        self.timeout = interval * misses
        self.last_sent = now
        self.last_received = now

    def sent(self, now: float) -> None:
        self.last_sent = now

    def received(self, now: float) -> None:
        self.last_received = now

    def excuse(self, stalled: float, now: float) -> None:
        """Our own loop was stuck for `stalled` seconds: that much of the
        peer's silence was ours (what it sent is unread), not its own."""
        self.last_received = min(now, self.last_received + stalled)

    def heartbeat_due(self, now: float) -> bool:
        return now - self.last_sent >= self.interval

    def silent_for(self, now: float) -> float:
        return now - self.last_received

    def expired(self, now: float) -> bool:
        return now - self.last_received >= self.timeout

    def next_deadline(self) -> float:
        """The next time something is due: a heartbeat or the expiry check."""
        return min(self.last_sent + self.interval, self.last_received + self.timeout)
