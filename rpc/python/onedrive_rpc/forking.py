"""What a forked child does with the parent's connections: it lets go of them.

After `os.fork()` the child holds copies of every socket of the parent. If
both processes used them, their bytes would interleave on the same
connection and corrupt it. So, in the child only, every connection and
server this library created is closed on the child's side (the parent's
are untouched: no shutdown, no Close frame, no unlinking of unix socket
files), and any use in the child fails at once with PeerLost saying why.
The child makes its own connections if it needs some.
"""
from __future__ import annotations

import os
import weakref
from typing import Any

__all__ = ["track"]

_tracked: "weakref.WeakSet[Any]" = weakref.WeakSet()


def track(obj: Any) -> None:
    """Make `obj.after_fork_in_child(parent_pid)` run in forked children."""
    _tracked.add(obj)


_parent_pid = os.getpid()


def _before_fork() -> None:
    global _parent_pid
    _parent_pid = os.getpid()


def _after_fork_in_child() -> None:
    for obj in list(_tracked):
        try:
            obj.after_fork_in_child(_parent_pid)
        except Exception:  # never break the child over a connection it won't use
            pass
    _tracked.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
