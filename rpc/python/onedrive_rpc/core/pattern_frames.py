"""The frames of the patterns beyond request/response (spec §8): what
each one's fields become as an event, and which of them open a call that
the receiver answers with a Response.
"""
from __future__ import annotations

from typing import Callable, Dict, FrozenSet

from . import wire_pb2
from .errors import RemoteProtocolError
from . import events as ev
from .framing import Frame, varint

__all__ = ["DECODERS", "OPENS_CALL", "SENDABLE", "TAGS", "deliver_shared", "deliver_message",
           "task_message", "task_done_message"]

_Envelope = wire_pb2.Envelope
Decoder = Callable[[_Envelope, Frame], ev.Event]


def _named(method: str, kind: str) -> str:
    if not method:
        raise RemoteProtocolError(f"{kind} frame names no method")
    return method


def _stream_end(env: _Envelope, payload: Frame) -> ev.Event:
    end = env.stream_end
    return ev.StreamEndReceived(end.call_id, end.status.code, end.status.message,
                                end.status.details)


def _credit(env: _Envelope, payload: Frame) -> ev.Event:
    credit = env.credit
    if not credit.items:
        raise RemoteProtocolError("credit frame grants no items")
    if bool(credit.call_id) + bool(credit.subscription_id) + bool(credit.consumer_id) != 1:
        raise RemoteProtocolError("credit frame must name exactly one of call_id, "
                                  "subscription_id and consumer_id")
    return ev.CreditReceived(credit.call_id, credit.subscription_id, credit.consumer_id,
                             credit.items)


def _notify(env: _Envelope, payload: Frame) -> ev.Event:
    notify = env.notify
    metadata = dict(notify.metadata) if len(notify.metadata) else {}
    return ev.NotifyReceived(_named(notify.method, "notify"), payload, metadata)


def _subscribe(env: _Envelope, payload: Frame) -> ev.Event:
    sub = env.subscribe
    if not sub.subscription_id:
        raise RemoteProtocolError("subscribe frame has no subscription_id")
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
    return ev.ProduceReceived(produce.call_id, _named(produce.method, "produce"), payload)


def _consume(env: _Envelope, payload: Frame) -> ev.Event:
    c = env.consume
    if not c.consumer_id:
        raise RemoteProtocolError("consume frame has no consumer_id")
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

#: Kinds Session.send_frame accepts.
SENDABLE: FrozenSet[str] = frozenset(DECODERS)

#: Kind -> the tag of its (length-delimited) Envelope field, for
#: Session.send_encoded.
TAGS: Dict[str, bytes] = {
    kind: varint(_Envelope.DESCRIPTOR.fields_by_name[kind].number << 3 | 2) for kind in DECODERS}


def deliver_shared(topic: str, publisher: str, publisher_seq: int) -> bytes:
    """The Deliver fields every subscriber of one message gets, serialized."""
    return wire_pb2.Deliver(topic=topic, publisher=publisher,
                            publisher_seq=publisher_seq).SerializeToString()


def task_message(consumer_id: int, task_id: int, attempt: int) -> bytes:
    """A serialized Task: sent for every task, so written by hand."""
    return b"\x08" + varint(consumer_id) + b"\x10" + varint(task_id) + b"\x18" + varint(attempt)


def task_done_message(consumer_id: int, task_id: int, code: int, message: str) -> bytes:
    """A serialized TaskDone (its status as a nested message, field 3)."""
    status = b""
    if code:
        status += b"\x08" + varint(code)
    if message:
        text = message.encode()
        status += b"\x12" + varint(len(text)) + text
    out = b"\x08" + varint(consumer_id) + b"\x10" + varint(task_id)
    return out + b"\x1a" + varint(len(status)) + status if status else out


def deliver_message(shared: bytes, subscription_id: int, dropped: int) -> bytes:
    """One subscriber's Deliver: its own fields, then the shared ones (a
    serialized message may be the concatenation of its parts)."""
    own = b"\x08" + varint(subscription_id)
    if dropped:
        own += b"\x28" + varint(dropped)
    return own + shared
