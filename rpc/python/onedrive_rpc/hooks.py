"""Connection event callbacks: each runs in its own greenlet, errors are logged."""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List

import gevent

__all__ = ["PeerHooks"]

log = logging.getLogger(__name__)


class PeerHooks:
    """Named lists of callbacks ("connected", "lost", "disconnected", ...)."""

    def __init__(self) -> None:
        self._callbacks: Dict[str, List[Callable[..., Any]]] = {}

    def add(self, name: str, callback: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(callback):
            raise TypeError(f"{callback!r} is not callable")
        self._callbacks.setdefault(name, []).append(callback)
        return callback

    def fire(self, name: str, *args: Any) -> None:
        for callback in self._callbacks.get(name, ()):
            gevent.spawn(self._run, name, callback, args)

    @staticmethod
    def _run(name: str, callback: Callable[..., Any], args: tuple) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("%s callback %r failed", name, callback)
