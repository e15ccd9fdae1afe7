"""This process's identity as a peer: a random id, a name, its pid."""
from __future__ import annotations

import os
import sys
import uuid
from typing import Optional, Tuple

__all__ = ["local_identity"]

_cached: Optional[Tuple[int, str]] = None


def local_identity(name: Optional[str] = None) -> Tuple[str, str, int]:
    """(peer_id, name, pid). A forked child gets a new peer id: it is a new peer."""
    global _cached
    pid = os.getpid()
    if _cached is None or _cached[0] != pid:
        _cached = (pid, uuid.uuid4().hex)
    if name is None:
        name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return _cached[1], name, pid
