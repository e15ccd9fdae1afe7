"""What the parts of a connection (outbox, outgoing and incoming calls) see
of it: declared here, below them all, so the parts depend on this and not
on `Connection` (which is built from them).
"""
from __future__ import annotations

from typing import Any, Optional, Protocol

from gevent.event import Event

from ..calls import CallOrigin, Context, Identity
from ..config import Limits
from ..core.pattern_frames import Credit
from ..core.session import Session
from ..errors import LocalProtocolError, MessageTooLarge, RpcError, StatusCode
from ..transport.base import Stream

__all__ = ["ConnectionView", "Output", "CallServer", "send_error"]


class Output(Protocol):
    """The connection's outbox, as senders use it."""

    out_bytes: int

    def flush_soon(self) -> None: ...

    def flush_batch(self) -> None: ...

    def flush_if_idle(self) -> None: ...

    def flush(self) -> None: ...

    def wait_for_room(self) -> bool: ...


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
    identity: Optional[Identity]

    @property
    def outbox(self) -> Output: ...

    @property
    def origin(self) -> CallOrigin: ...

    @property
    def owner(self) -> CallServer: ...

    def stream_lost(self, error: RpcError, stream: Stream, silent: bool = False) -> None: ...

    def take_over_reading(self, serving: Any) -> None: ...

    def is_reader(self, greenlet: Any) -> bool: ...

    def grant(self, credit: Credit) -> None: ...

    def closed_error(self) -> RpcError: ...

    @property
    def refusing_outgoing(self) -> bool: ...

    def refuse_outgoing(self, reason: RpcError) -> None: ...

    def close(self, code: StatusCode = StatusCode.UNAVAILABLE, message: str = "connection closed",
              flush_timeout: float = 1.0) -> None: ...


def send_error(connection: ConnectionView, exc: LocalProtocolError) -> RpcError:
    """What a send the session refused raises (the one mapping, at the
    edge): a message too large keeps its status (RESOURCE_EXHAUSTED);
    anything else means the session is closed."""
    if isinstance(exc, MessageTooLarge):
        return RpcError(exc.status, str(exc))
    return connection.closed_error()
