"""What a Session reports after it is fed bytes: one event per meaningful frame.

Events are immutable NamedTuples: as frozen as dataclasses, and several
times cheaper to build, which matters at one or two events per call.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple, Optional, Tuple, Union

from .errors import Violation

__all__ = [
    "Event",
    "PeerInfo",
    "Handshaken",
    "RequestReceived",
    "ResponseReceived",
    "CancelReceived",
    "RequestRefused",
    "CloseReceived",
    "PeerSilent",
    "ResumeRequested",
    "StreamItemReceived",
    "StreamEndReceived",
    "CreditReceived",
    "NotifyReceived",
    "SubscribeReceived",
    "UnsubscribeReceived",
    "PublishReceived",
    "DeliverReceived",
    "BroadcastReceived",
    "ProduceReceived",
    "ConsumeReceived",
    "TaskReceived",
    "TaskDoneReceived",
    "PATTERN_EVENTS",
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
    # Server streams: items we may send before the caller grants more (0: our default).
    initial_credit: int = 0


class ResponseReceived(NamedTuple):
    """The outcome of one of our calls; payload is empty unless code is OK.
    `violations`: which fields of our message broke which rules (an error's
    Status.bad_request, decoded; () for an OK answer and most errors)."""

    call_id: int
    code: int
    message: str
    details: str
    payload: Payload
    violations: Tuple[Violation, ...] = ()


class CancelReceived(NamedTuple):
    """The caller gave up on call_id; `deadline`: because its deadline
    passed (the Cancel's code was DEADLINE_EXCEEDED)."""

    call_id: int
    reason: str
    deadline: bool = False


class RequestRefused(NamedTuple):
    """A Request the session answered itself, with `code` and `reason`
    (past a limit): its handler never runs. Reported so the owner can log it."""

    call_id: int
    method: str
    code: int
    reason: str


class CloseReceived(NamedTuple):
    """The peer closes the connection in an orderly way, saying why
    (`violations`: as in ResponseReceived, seldom any)."""

    code: int
    message: str
    end_session: bool
    violations: Tuple[Violation, ...] = ()


class PeerSilent(NamedTuple):
    """Nothing came from the peer for longer than the heartbeat bound: it is
    dead, frozen, blocked or cut off. The session queued a Close and is CLOSED."""

    silent_for: float
    bound: float


# ------------------------------------------------- the other patterns (§8)


class StreamItemReceived(NamedTuple):
    """One item of the server stream our call `call_id` opened."""

    call_id: int
    payload: Payload


class StreamEndReceived(NamedTuple):
    """The server stream of call `call_id` ended: OK, or an error
    (`violations`: as in ResponseReceived)."""

    call_id: int
    code: int
    message: str
    details: str
    violations: Tuple[Violation, ...] = ()


class CreditReceived(NamedTuple):
    """Flow control: the peer may take `items` more on one stream
    (call_id), subscription (subscription_id) or consumer (consumer_id);
    or, with `publish`, we may publish `items` more bytes of cost (the
    server gave our publish window back)."""

    call_id: int
    subscription_id: int
    consumer_id: int
    items: int
    publish: bool = False


class NotifyReceived(NamedTuple):
    """A one-way message to notification method `method`."""

    method: str
    payload: Payload
    metadata: Mapping[str, str]


class SubscribeReceived(NamedTuple):
    """The peer subscribes to `pattern` of publish/subscribe method
    `method`; answer call_id with a response."""

    call_id: int
    subscription_id: int
    method: str
    pattern: str
    queue_limit: int
    policy: int


class UnsubscribeReceived(NamedTuple):
    subscription_id: int


class PublishReceived(NamedTuple):
    """The peer publishes a message on `topic` through us; a non-zero
    call_id wants a response once it was fanned out."""

    call_id: int
    method: str
    topic: str
    payload: Payload


class DeliverReceived(NamedTuple):
    """A message published on a topic our subscription matched."""

    subscription_id: int
    topic: str
    publisher: str
    publisher_seq: int
    dropped: int
    payload: Payload


class BroadcastReceived(NamedTuple):
    """A broadcast: from the peer itself (origin empty) or relayed by it;
    a non-zero call_id wants a response once it was relayed."""

    call_id: int
    method: str
    origin: str
    payload: Payload


class ProduceReceived(NamedTuple):
    """The peer puts a task on work queue `method`; answer call_id once
    the queue took it."""

    call_id: int
    method: str
    payload: Payload


class ConsumeReceived(NamedTuple):
    """The peer registers (or, stop=True, withdraws) consumer `consumer_id`
    of work queue `method`; answer call_id."""

    call_id: int
    consumer_id: int
    method: str
    prefetch: int
    stop: bool


class TaskReceived(NamedTuple):
    """A task for our consumer `consumer_id`; `attempt` is 1 the first time."""

    consumer_id: int
    task_id: int
    attempt: int
    payload: Payload


class TaskDoneReceived(NamedTuple):
    """The peer's consumer finished a task: code 0 acknowledges it."""

    consumer_id: int
    task_id: int
    code: int
    message: str


Event = Union[Handshaken, RequestReceived, ResponseReceived, CancelReceived, RequestRefused,
              CloseReceived, PeerSilent, ResumeRequested, StreamItemReceived,
              StreamEndReceived, CreditReceived, NotifyReceived, SubscribeReceived,
              UnsubscribeReceived, PublishReceived, DeliverReceived, BroadcastReceived,
              ProduceReceived, ConsumeReceived, TaskReceived, TaskDoneReceived]

# The events of the publish/subscribe, work queue and broadcast frames,
# which the driver hands to the side hosting those patterns.
PATTERN_EVENTS = (SubscribeReceived, UnsubscribeReceived, PublishReceived, DeliverReceived,
                  BroadcastReceived, ProduceReceived, ConsumeReceived, TaskReceived,
                  TaskDoneReceived)
