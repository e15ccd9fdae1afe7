"""What the parts of a connection (outbox, outgoing and incoming calls) see
of it: declared here, below them all, so the parts depend on this and not
on `Connection` (which is built from them).
"""
from __future__ import annotations

from typing import Any, Optional, Protocol

from gevent.event import Event

from ..calls import Context
from ..config import Limits
from ..core.pattern_frames import Credit
from ..core.session import Session
from ..errors import LocalProtocolError, RpcError
from ..transport.base import Stream

__all__ = ["ConnectionView", "Output", "CallServer"]


class Output(Protocol):
    """The connection's outbox, as senders use it."""

    def flush_soon(self) -> None: ...

    def flush(self) -> None: ...

    def wait_for_room(self) -> None: ...


class CallServer(Protocol):
    """Who runs the handlers of incoming calls (the connection's owner)."""

    def serve(self, call: Context, event: Any) -> None: ...


class ConnectionView(Protocol):
    """The state and verbs of a Connection its parts use."""

    stream: Stream
    session: Session
    limits: Limits
    hub: Any
    closed: bool
    suspended: bool
    suspend_reason: Optional[RpcError]
    progress: Event

    @property
    def outbox(self) -> Output: ...

    @property
    def owner(self) -> CallServer: ...

    def stream_lost(self, error: RpcError, stream: Stream, silent: bool = False) -> None: ...

    def take_over_reading(self, serving: Any) -> None: ...

    def is_reader(self, greenlet: Any) -> bool: ...

    def grant(self, credit: Credit) -> None: ...

    def closed_error(self) -> RpcError: ...

    def send_error(self, exc: LocalProtocolError) -> RpcError: ...
