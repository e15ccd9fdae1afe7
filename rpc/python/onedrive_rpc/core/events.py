"""What a Session reports after it is fed bytes: one event per meaningful frame.

Events are immutable NamedTuples: as frozen as dataclasses, and several
times cheaper to build, which matters at one or two events per call.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple, Optional, Union

__all__ = [
    "Event",
    "PeerInfo",
    "Handshaken",
    "RequestReceived",
    "ResponseReceived",
    "CancelReceived",
    "CloseReceived",
    "PeerSilent",
    "ResumeRequested",
]

Payload = Union[bytes, memoryview]


class PeerInfo(NamedTuple):
    """Who the other side says it is (from its handshake frame)."""

    peer_id: str
    name: str
    pid: int


class Handshaken(NamedTuple):
    """The handshake finished; calls may flow.

    `resumed`: this connection continues an earlier session (what the peer
    had not received was queued again). A client that asked to resume and
    gets resumed=False learns that its old session is gone.
    """

    peer: PeerInfo
    session_id: str
    metadata: Mapping[str, str]
    resumed: bool = False


class ResumeRequested(NamedTuple):
    """Server side: the Hello names an earlier session. Answer with
    Session.accept_resume(its Reliability) or Session.refuse_resume()."""

    session_id: str
    received_seq: int
    peer: PeerInfo
    metadata: Mapping[str, str]


class RequestReceived(NamedTuple):
    """The peer calls `method`; answer with Session.send_response."""

    call_id: int
    method: str
    payload: Payload
    # Seconds the caller still allowed when it sent the call; None: no deadline.
    timeout: Optional[float]
    metadata: Mapping[str, str]
    # When the call must be done, on the clock the session is fed (arrival
    # time + timeout), so time spent queued here counts; None: no deadline.
    deadline: Optional[float]


class ResponseReceived(NamedTuple):
    """The outcome of one of our calls; payload is empty unless code is OK."""

    call_id: int
    code: int
    message: str
    details: str
    payload: Payload


class CancelReceived(NamedTuple):
    """The caller gave up on call_id."""

    call_id: int
    reason: str


class CloseReceived(NamedTuple):
    """The peer closes the connection in an orderly way, saying why."""

    code: int
    message: str
    end_session: bool


class PeerSilent(NamedTuple):
    """Nothing came from the peer for longer than the heartbeat bound: it is
    dead, frozen, blocked or cut off. The session queued a Close and is CLOSED."""

    silent_for: float
    bound: float


Event = Union[Handshaken, RequestReceived, ResponseReceived, CancelReceived,
              CloseReceived, PeerSilent, ResumeRequested]
