"""Bytes that many sessions or connections draw on together: a server's
bounds on what all of its peers may make it hold, whichever connection
they came on. Plain counters (no I/O, no clock), shared by what they bound.

`ByteBudget` is a counter its users keep exact (calls in flight, queued
subscription messages). `OutputBudget` follows what each connection holds
for its peer (pushed and not acknowledged): its users report a connection's
figure when they push to it, so the total costs O(1) per push and may be
stale only on the high side (acks since then are not in it); when the
total passes the limit, `settle` counts afresh and names the connections to
close, those holding the most first.
"""
from __future__ import annotations

from typing import Callable, Dict, Generic, Hashable, List, Tuple, TypeVar

__all__ = ["ByteBudget", "OutputBudget"]

H = TypeVar("H", bound=Hashable)


class ByteBudget:
    """`used` bytes of `limit`; a Session takes a Request's bytes when it
    admits it and gives them back when the call is answered, cancelled or
    the session ends."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a byte budget must be at least 1 byte, not {limit}")
        self.limit = limit
        self.used = 0

    def fits(self, size: int) -> bool:
        return self.used + size <= self.limit

    def __repr__(self) -> str:
        return f"ByteBudget({self.used}/{self.limit} bytes)"


class OutputBudget(Generic[H]):
    """What each holder (a connection) was last seen to hold, and their
    `total`, against `limit`."""

    __slots__ = ("limit", "total", "_held")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"an output budget must be at least 1 byte, not {limit}")
        self.limit = limit
        self.total = 0
        self._held: Dict[H, int] = {}

    def __len__(self) -> int:
        return len(self._held)

    @property
    def over(self) -> bool:
        return self.total > self.limit

    def hold(self, holder: H, held: int) -> None:
        """`holder` holds `held` bytes now (what it reported before is replaced)."""
        held_before = self._held.get(holder, 0)
        self._held[holder] = held
        self.total += held - held_before

    def release(self, holder: H) -> None:
        """`holder` holds nothing any more (it closed); nothing if unknown."""
        self.total -= self._held.pop(holder, 0)

    def held(self, holder: H) -> int:
        return self._held.get(holder, 0)

    def settle(self, measure: Callable[[H], int]) -> List[Tuple[H, int]]:
        """Count afresh (`measure(holder)` -> what it holds now), then pick
        holders to close, those holding the most first, until the total is
        within the limit; they are released. Returns them with what each
        held, in that order: [] if the fresh count is within the limit.

        Each one picked holds at least the average of those left, so more
        than `limit / holders`: a holder within its fair share is never
        picked while another holds more. O(holders log holders); called only
        when `over`."""
        held = self._held
        for holder in held:
            held[holder] = measure(holder)
        self.total = sum(held.values())
        picked: List[Tuple[H, int]] = []
        if self.total <= self.limit:
            return picked
        for holder, size in sorted(held.items(), key=lambda item: item[1], reverse=True):
            if self.total <= self.limit:
                break
            picked.append((holder, size))
            self.release(holder)
        return picked

    def __repr__(self) -> str:
        return f"OutputBudget({self.total}/{self.limit} bytes, {len(self._held)} holders)"
