"""The frames of the patterns beyond request/response (spec §8), both
ways: what each received frame becomes as an event (DECODERS), and the
typed frames this side sends (StreamItem, Subscribe, Deliver, ...), each
encoded here as its Envelope field (`encode`), as h11 pairs its readers
with its writers. Which frames open a call that the receiver answers with
a Response: OPENS_CALL.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, FrozenSet, Mapping, NamedTuple, Sequence, Tuple, Union

from . import wire_pb2
from .errors import RemoteProtocolError, Violation
from .violations import decode_violations, encode_violations
from . import events as ev
from .framing import Frame, Payload, varint

__all__ = ["DECODERS", "OPENS_CALL", "SENT_BY_SERVERS", "deliver_shared", "encode", "OutFrame", "CallFrame",
           "StreamItem", "StreamEnd", "Credit", "Notify", "Subscribe", "Unsubscribe", "Publish",
           "Deliver", "Broadcast", "Produce", "Consume", "Task", "TaskDone"]

_Envelope = wire_pb2.Envelope
Decoder = Callable[[_Envelope, Frame], ev.Event]


def _named(method: str, kind: str) -> str:
    if not method:
        raise RemoteProtocolError(f"{kind} frame names no method")
    return method


def _stream_end(env: _Envelope, payload: Frame) -> ev.Event:
    end = env.stream_end
    status = end.status
    code = status.code
    if code and status.bad_request:  # an OK end never pays for it
        return ev.StreamEndReceived(end.call_id, code, status.message, status.details,
                                    decode_violations(status.bad_request))
    return ev.StreamEndReceived(end.call_id, code, status.message, status.details)


def _credit(env: _Envelope, payload: Frame) -> ev.Event:
    credit = env.credit
    if not credit.items:
        raise RemoteProtocolError("credit frame grants no items")
    named = bool(credit.call_id) + bool(credit.subscription_id) + bool(credit.consumer_id)
    if named != (0 if credit.publish else 1):
        raise RemoteProtocolError("credit frame must name exactly one of call_id, "
                                  "subscription_id and consumer_id, or none with publish")
    return ev.CreditReceived(credit.call_id, credit.subscription_id, credit.consumer_id,
                             credit.items, credit.publish)


def _notify(env: _Envelope, payload: Frame) -> ev.Event:
    notify = env.notify
    metadata = dict(notify.metadata) if len(notify.metadata) else {}
    return ev.NotifyReceived(_named(notify.method, "notify"), payload, metadata)


def _answered(call_id: int, kind: str) -> int:
    if not call_id:
        raise RemoteProtocolError(f"{kind} frame has no call_id: it is answered with a Response "
                                  f"carrying one")
    return call_id


def _subscribe(env: _Envelope, payload: Frame) -> ev.Event:
    sub = env.subscribe
    if not sub.subscription_id:
        raise RemoteProtocolError("subscribe frame has no subscription_id")
    _answered(sub.call_id, "subscribe")
    return ev.SubscribeReceived(sub.call_id, sub.subscription_id, _named(sub.method, "subscribe"),
                                sub.pattern, sub.queue_limit, sub.policy)


def _publish(env: _Envelope, payload: Frame) -> ev.Event:
    pub = env.publish
    return ev.PublishReceived(pub.call_id, _named(pub.method, "publish"), pub.topic, payload)


def _deliver(env: _Envelope, payload: Frame) -> ev.Event:
    d = env.deliver
    return ev.DeliverReceived(d.subscription_id, d.topic, d.publisher, d.publisher_seq,
                              d.dropped, payload)


def _broadcast(env: _Envelope, payload: Frame) -> ev.Event:
    b = env.broadcast
    return ev.BroadcastReceived(b.call_id, _named(b.method, "broadcast"), b.origin, payload)


def _produce(env: _Envelope, payload: Frame) -> ev.Event:
    produce = env.produce
    return ev.ProduceReceived(_answered(produce.call_id, "produce"),
                              _named(produce.method, "produce"), payload)


def _consume(env: _Envelope, payload: Frame) -> ev.Event:
    c = env.consume
    if not c.consumer_id:
        raise RemoteProtocolError("consume frame has no consumer_id")
    if not c.stop:  # a withdrawal may go one-way (a peer stopping while disconnected)
        _answered(c.call_id, "consume")
    return ev.ConsumeReceived(c.call_id, c.consumer_id, _named(c.method, "consume"),
                              c.prefetch, c.stop)


def _task_done(env: _Envelope, payload: Frame) -> ev.Event:
    done = env.task_done
    return ev.TaskDoneReceived(done.consumer_id, done.task_id, done.status.code,
                               done.status.message)


#: Envelope kind -> the event its frame becomes.
DECODERS: Dict[str, Decoder] = {
    "stream_item": lambda env, payload: ev.StreamItemReceived(env.stream_item.call_id, payload),
    "stream_end": _stream_end,
    "credit": _credit,
    "notify": _notify,
    "subscribe": _subscribe,
    "unsubscribe": lambda env, payload: ev.UnsubscribeReceived(env.unsubscribe.subscription_id),
    "publish": _publish,
    "deliver": _deliver,
    "broadcast": _broadcast,
    "produce": _produce,
    "consume": _consume,
    "task": lambda env, payload: ev.TaskReceived(env.task.consumer_id, env.task.task_id,
                                                 env.task.attempt, payload),
    "task_done": _task_done,
}

#: Kinds whose call_id the receiver answers with a Response (when non-zero).
OPENS_CALL: FrozenSet[str] = frozenset({"subscribe", "produce", "consume", "publish", "broadcast"})

#: Kinds only the server sends (it hosts the topics and queues): a server
#: receiving one is a protocol error, as is a Credit{publish} (§8).
SENT_BY_SERVERS: FrozenSet[str] = frozenset({"deliver", "task"})

# ---------------------------------------------------------------- sending
# One NamedTuple per frame kind this side sends, named as its Envelope
# field; `payload` (where there is one) travels in Envelope.payload. A
# frame that opens a call carries `call_id` last: the connection fills it.

_EMPTY: Mapping[str, str] = {}


class StreamItem(NamedTuple):
    call_id: int
    payload: Payload


class StreamEnd(NamedTuple):
    """`violations`: which fields broke which rules (an INVALID_ARGUMENT
    end), sent as Status.bad_request."""

    call_id: int
    code: int
    message: str = ""
    details: str = ""
    violations: Tuple[Violation, ...] = ()


class Credit(NamedTuple):
    """Exactly one of call_id, subscription_id and consumer_id is set, or
    none and `publish` (the server gives a client publish window back)."""

    items: int
    call_id: int = 0
    subscription_id: int = 0
    consumer_id: int = 0
    publish: bool = False


class Notify(NamedTuple):
    method: str
    payload: Payload
    metadata: Mapping[str, str] = _EMPTY


class Subscribe(NamedTuple):
    subscription_id: int
    method: str
    pattern: str
    queue_limit: int
    policy: int
    call_id: int = 0


class Unsubscribe(NamedTuple):
    subscription_id: int


class Publish(NamedTuple):
    method: str
    topic: str
    payload: Frame
    call_id: int = 0


class Deliver(NamedTuple):
    """`shared`: the fields every subscriber of one message gets, encoded
    once (deliver_shared)."""

    subscription_id: int
    dropped: int
    shared: bytes
    payload: Frame


class Broadcast(NamedTuple):
    method: str
    payload: Frame
    origin: str = ""
    call_id: int = 0


class Produce(NamedTuple):
    method: str
    payload: Frame
    call_id: int = 0


class Consume(NamedTuple):
    consumer_id: int
    method: str
    prefetch: int = 0
    stop: bool = False
    call_id: int = 0


class Task(NamedTuple):
    consumer_id: int
    task_id: int
    attempt: int
    payload: Frame


class TaskDone(NamedTuple):
    consumer_id: int
    task_id: int
    code: int = 0
    message: str = ""


#: The frames that open a call (their `call_id` is answered with a Response).
CallFrame = Union[Subscribe, Publish, Broadcast, Produce, Consume]

OutFrame = Union[StreamItem, StreamEnd, Credit, Notify, Subscribe, Unsubscribe, Publish, Deliver,
                 Broadcast, Produce, Consume, Task, TaskDone]


def _status(code: int, message: str, details: str = "",
            violations: Sequence[Violation] = ()) -> bytes:
    """A serialized Status (code 1, message 2, details 3, and bad_request 4
    only when there are violations)."""
    out = b"\x08" + varint(code) if code else b""
    for tag, text in ((b"\x12", message), (b"\x1a", details)):
        if text:
            data = text.encode()
            out += tag + varint(len(data)) + data
    if violations:
        out += _nested(b"\x22", encode_violations(violations))
    return out


def _nested(tag: bytes, message: bytes) -> bytes:
    return tag + varint(len(message)) + message if message else b""


def _stream_item_message(f: StreamItem) -> bytes:
    # Sent for every item of every stream: written by hand.
    return b"\x08" + varint(f.call_id)


def _stream_end_message(f: StreamEnd) -> bytes:
    return b"\x08" + varint(f.call_id) + _nested(b"\x12", _status(f.code, f.message, f.details,
                                                                  f.violations))


def _credit_message(f: Credit) -> bytes:
    return wire_pb2.Credit(call_id=f.call_id, subscription_id=f.subscription_id,
                           consumer_id=f.consumer_id, items=f.items,
                           publish=f.publish).SerializeToString()


def _notify_message(f: Notify) -> bytes:
    return wire_pb2.Notify(method=f.method, metadata=f.metadata).SerializeToString()


def _subscribe_message(f: Subscribe) -> bytes:
    return wire_pb2.Subscribe(subscription_id=f.subscription_id, call_id=f.call_id,
                              method=f.method, pattern=f.pattern, queue_limit=f.queue_limit,
                              policy=f.policy).SerializeToString()  # type: ignore[arg-type]


def _unsubscribe_message(f: Unsubscribe) -> bytes:
    return wire_pb2.Unsubscribe(subscription_id=f.subscription_id).SerializeToString()


def _publish_message(f: Publish) -> bytes:
    return wire_pb2.Publish(method=f.method, topic=f.topic, call_id=f.call_id).SerializeToString()


def _broadcast_message(f: Broadcast) -> bytes:
    return wire_pb2.Broadcast(method=f.method, origin=f.origin,
                              call_id=f.call_id).SerializeToString()


def _produce_message(f: Produce) -> bytes:
    return wire_pb2.Produce(method=f.method, call_id=f.call_id).SerializeToString()


def _consume_message(f: Consume) -> bytes:
    return wire_pb2.Consume(consumer_id=f.consumer_id, call_id=f.call_id, method=f.method,
                            prefetch=f.prefetch, stop=f.stop).SerializeToString()


def _deliver_message(f: Deliver) -> bytes:
    # One per subscriber of every message: its own fields by hand, then the
    # shared ones (a serialized message may be the concatenation of its parts).
    own = b"\x08" + varint(f.subscription_id)
    if f.dropped:
        own += b"\x28" + varint(f.dropped)
    return own + f.shared


def _task_message(f: Task) -> bytes:
    # Sent for every task: written by hand.
    return b"\x08" + varint(f.consumer_id) + b"\x10" + varint(f.task_id) + b"\x18" + varint(f.attempt)


def _task_done_message(f: TaskDone) -> bytes:
    return (b"\x08" + varint(f.consumer_id) + b"\x10" + varint(f.task_id)
            + _nested(b"\x1a", _status(f.code, f.message)))


def _tag(kind: str) -> bytes:
    """The tag of Envelope field `kind` (a length-delimited message)."""
    return varint(_Envelope.DESCRIPTOR.fields_by_name[kind].number << 3 | 2)


#: Frame type -> (the tag of its Envelope field, its message's encoder).
_ENCODERS: Dict[type, Any] = {
    StreamItem: (_tag("stream_item"), _stream_item_message),
    StreamEnd: (_tag("stream_end"), _stream_end_message),
    Credit: (_tag("credit"), _credit_message),
    Notify: (_tag("notify"), _notify_message),
    Subscribe: (_tag("subscribe"), _subscribe_message),
    Unsubscribe: (_tag("unsubscribe"), _unsubscribe_message),
    Publish: (_tag("publish"), _publish_message),
    Deliver: (_tag("deliver"), _deliver_message),
    Broadcast: (_tag("broadcast"), _broadcast_message),
    Produce: (_tag("produce"), _produce_message),
    Consume: (_tag("consume"), _consume_message),
    Task: (_tag("task"), _task_message),
    TaskDone: (_tag("task_done"), _task_done_message),
}


def encode(frame: OutFrame) -> bytes:
    """`frame` as its Envelope field (tag, length, message); the session
    adds the payload, seq and ack around it."""
    try:
        tag, message_of = _ENCODERS[type(frame)]
    except KeyError:
        raise TypeError(f"{frame!r} is not a pattern frame") from None
    message = message_of(frame)
    return tag + varint(len(message)) + message


def deliver_shared(topic: str, publisher: str, publisher_seq: int) -> bytes:
    """The Deliver fields every subscriber of one message gets, serialized."""
    return wire_pb2.Deliver(topic=topic, publisher=publisher,
                            publisher_seq=publisher_seq).SerializeToString()
