"""Bytes that many sessions draw on together: a server's bound on what all
of its peers' calls in flight may hold, whichever connection they came on.
A plain counter (no I/O, no clock), shared by the sessions it bounds."""
from __future__ import annotations

__all__ = ["ByteBudget"]


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
