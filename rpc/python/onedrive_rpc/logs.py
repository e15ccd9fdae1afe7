"""Warnings that an attacker can repeat stay readable: each kind is logged
at most once per interval, then a count of what was left out.

A peer opening a thousand bad connections a second must not turn the log
into a thousand lines a second (or the disk into a denial of service).
"""
from __future__ import annotations

import logging
import time
import weakref
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

__all__ = ["Throttled", "who", "fields"]


def who(peer: Any, session_id: str, address: str) -> str:
    """A peer (its PeerInfo, or None) in a log line: "tray, session
    0743f9b7..., from /run/x.sock" (the fields operators grep for, in one
    order everywhere)."""
    name = peer.name if peer is not None else ""
    return (f"{name or 'a peer'}" + (f", session {session_id}" if session_id else "")
            + (f", from {address}" if address else ""))


def fields(peer: Any, session_id: str, address: str) -> Dict[str, str]:
    """The same as attributes of the log record (`extra=`), for formatters
    that write JSON or key=value: peer, session_id, peer_address."""
    return {"peer": peer.name if peer is not None else "", "session_id": session_id,
            "peer_address": address}


#: Seconds between two warnings of the same kind.
DEFAULT_EVERY = 1.0


_all: "weakref.WeakSet[Throttled]" = weakref.WeakSet()


class Throttled:
    """Rate-limited warnings of one logger, by kind (a short key)."""

    def __init__(self, logger: logging.Logger, every: float = DEFAULT_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._every = every
        self._clock = clock
        # kind -> (when last logged, how many left out since)
        self._kinds: Dict[str, Tuple[float, int]] = {}
        _all.add(self)

    def forget(self) -> None:
        """Start afresh: the next warning of each kind is logged."""
        self._kinds.clear()

    @staticmethod
    def forget_all() -> None:
        """forget() everywhere (tests that look for a warning use this)."""
        for throttled in list(_all):
            throttled.forget()

    def warning(self, kind: str, message: str, *args: Any,
                extra: Optional[Mapping[str, Any]] = None) -> None:
        self._log_at(logging.WARNING, kind, message, args, extra)

    def error(self, kind: str, message: str, *args: Any,
              extra: Optional[Mapping[str, Any]] = None) -> None:
        """An error of ours that a peer can make happen again and again."""
        self._log_at(logging.ERROR, kind, message, args, extra)

    def _log_at(self, level: int, kind: str, message: str, args: Tuple[Any, ...],
                extra: Optional[Mapping[str, Any]]) -> None:
        now = self._clock()
        last, left_out = self._kinds.get(kind, (float("-inf"), 0))
        if now - last < self._every:
            self._kinds[kind] = (last, left_out + 1)
            return
        if left_out:
            message += " (and %d more like it in the last %.0fs)"
            args += (left_out, now - last)
        self._kinds[kind] = (now, 0)
        self._log.log(level, message, *args, extra=extra)
