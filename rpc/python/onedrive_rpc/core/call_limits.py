"""What the peer's Requests may hold on this side at once: how many
(max_concurrent_calls, announced in the handshake) and how many payload
bytes, on this session and, through a shared ByteBudget, on the whole
server. A Request counts from when it is read until it is answered or
cancelled (HTTP/2 counts streams the same way); its count lives in the
session's Reliability, so it survives a resume. No I/O."""
from __future__ import annotations

from typing import Optional

from .budget import ByteBudget
from .reliability import Reliability

__all__ = ["CallLimits"]


class CallLimits:
    """`max_calls` Requests, `max_bytes` of their payloads per session (0:
    no limit), `budget` over every session that shares it (None: none)."""

    __slots__ = ("max_calls", "max_bytes", "budget")

    def __init__(self, max_calls: int = 0, max_bytes: int = 0,
                 budget: Optional[ByteBudget] = None) -> None:
        for name, value in (("max_concurrent_calls", max_calls), ("max_call_bytes", max_bytes)):
            if value < 0:
                raise ValueError(f"{name} must not be negative, not {value}")
        self.max_calls = max_calls
        self.max_bytes = max_bytes
        self.budget = budget

    def refusal(self, reliability: Reliability, size: int) -> Optional[str]:
        """Why a Request of `size` payload bytes is refused, or None: past
        the calls we serve at once (the peer ignored what we announced),
        the session's byte limit (unless nothing else is in flight: one
        call always fits) or the shared budget."""
        calls = self.max_calls
        if calls and len(reliability.requests_in) >= calls:
            return (f"too many calls in flight: this side serves at most {calls} at once on "
                    f"one connection (max_concurrent_calls, announced in the handshake); wait "
                    f"for an answer before calling again")
        limit = self.max_bytes
        held = reliability.requests_in_bytes
        if limit and reliability.requests_in and held + size > limit:
            return (f"calls in flight on this connection hold {held} bytes; {size} more would "
                    f"exceed its limit of {limit} bytes (max_call_bytes): wait for answers "
                    f"before sending more")
        budget = self.budget
        if budget is not None and not budget.fits(size):
            return (f"calls in flight on this server hold {budget.used} bytes; {size} more "
                    f"would exceed its limit of {budget.limit} bytes (max_server_call_bytes): "
                    f"try again later")
        return None

    def admit(self, reliability: Reliability, call_id: int, size: int) -> None:
        """Request `call_id` of `size` payload bytes counts from now on."""
        reliability.requests_in[call_id] = size
        reliability.requests_in_bytes += size
        if self.budget is not None:
            self.budget.used += size

    def settle(self, reliability: Reliability, call_id: int) -> None:
        """Request `call_id` was answered or cancelled: it no longer counts."""
        size = reliability.requests_in.pop(call_id, None)
        if size is not None:
            reliability.requests_in_bytes -= size
            if self.budget is not None:
                self.budget.used -= size

    def settle_all(self, reliability: Reliability) -> None:
        """The session ended: what its calls held goes back to the budget."""
        for call_id in list(reliability.requests_in):
            self.settle(reliability, call_id)
