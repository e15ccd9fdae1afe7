"""The publish window (spec §8.3): how a server holds a publisher back
while a BLOCK_PUBLISHER subscription's queue is full, end to end, without
ever stopping to read its connection (heartbeats, acks and calls keep
flowing).

The server announces a window in its Welcome (bytes of publish cost). A
client has `outstanding` cost: what it published and has not had back in
Credit{publish}. It may send a Publish while `outstanding + cost <= window`
or `outstanding <= window // 2` (so a message larger than half the window
still goes, once what is ahead of it is back). The server counts the same,
gives the cost of each Publish back once it has handled it, unless the
message went into a BLOCK_PUBLISHER queue past its limit: then the cost is
held until that queue is back within its limit (or gone). What it gives
back goes out in one Credit{publish} once it reaches half the window. A
server therefore holds at most `window` plus one message per publishing
connection beyond its queues' limits.

Pure logic: no I/O, no clock.
"""
from __future__ import annotations

__all__ = ["PUBLISH_OVERHEAD", "publish_cost", "PublishCredit", "PublishWindow"]

#: What a Publish costs beyond its payload: tiny messages are bounded in
#: number too.
PUBLISH_OVERHEAD = 64


def publish_cost(payload_size: int) -> int:
    return payload_size + PUBLISH_OVERHEAD


def _may_send(outstanding: int, cost: int, window: int) -> bool:
    return outstanding + cost <= window or outstanding <= window // 2


class PublishCredit:
    """The client's side: what it may publish now."""

    __slots__ = ("window", "outstanding")

    def __init__(self, window: int) -> None:
        #: Bytes of cost; 0: the server announced none (nothing holds us).
        self.window = window
        self.outstanding = 0

    def may_send(self, cost: int) -> bool:
        return not self.window or _may_send(self.outstanding, cost, self.window)

    def sent(self, cost: int) -> None:
        if self.window:
            self.outstanding += cost

    def granted(self, amount: int) -> None:
        """Credit{publish}: `amount` of cost is back. More than is
        outstanding is the server's error: it is capped."""
        self.outstanding = max(0, self.outstanding - amount)


class PublishWindow:
    """The server's side, for one client connection."""

    __slots__ = ("window", "outstanding", "released")

    def __init__(self, window: int) -> None:
        self.window = window
        #: Cost received and not yet given back in a Credit.
        self.outstanding = 0
        #: Of it, what may be given back (handled, and not held).
        self.released = 0

    def receive(self, cost: int) -> bool:
        """A Publish of `cost` arrived: False if the client sent it past
        its window (it does not count then)."""
        if not _may_send(self.outstanding, cost, self.window):
            return False
        self.outstanding += cost
        return True

    def release(self, cost: int) -> int:
        """A Publish's cost may go back; returns the amount to grant now in
        a Credit{publish} (0: not yet, wait for more)."""
        self.released += cost
        if self.released < max(1, self.window // 2):
            return 0
        grant, self.released = self.released, 0
        self.outstanding -= grant
        return grant
