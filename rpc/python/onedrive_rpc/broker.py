"""The serving side of publish/subscribe, work queues and broadcasts.

A server owns one Broker. It hosts a topic space per PUBLISH_SUBSCRIBE
method and a work queue per PRODUCER_CONSUMER method of its services, and
relays broadcasts. Peers reach it through their connections (the frames of
spec §8); code in the server's own process reaches it through the same
calls (`rpc.Client(server, ...)`), as a subscriber, consumer, publisher,
producer or listener like any other.

Nothing here blocks (but a publish from this process, which waits while a
`block` subscriber is behind): the state machines (core/pubsub.py,
core/workqueue.py) decide, and frames are pushed to the peers' connections
without waiting (a peer that lets too much pile up is closed as a slow
consumer). A peer's publishes are held back by its publish window instead
(core/publish_window.py, spec §8.3). The broker
sees a connection only as an `Outlet`, so it can run, and be tested, without
the driver. The work queues are broker_queues.py's (WorkQueues); the broker
routes their frames and answers for them.

What crosses servers is the backend's (brokers.Backend; brokers.InProcess
by default): the work queues' state, and the relay of publishes, holds and
broadcasts to other servers. Everything else is here, the front: see
brokers/base.py for the split. The front calls its backend when this
server gains its first subscription of a method or loses its last, on each
publish here (with its publisher and seq), and on each broadcast here; the
backend calls the front back through brokers.Inbound (tasks, dead letters,
and other servers' messages, holds and broadcasts), always in the hub.
"""
from __future__ import annotations

import itertools
import logging
from typing import (Any, Callable, Dict, Hashable, Iterable, List, Optional, Protocol, Tuple,
                    Type, cast)

from google.protobuf.message import Message

from . import options_pb2
from .broker_queues import WorkQueues
from .brokers import Backend, ConsumerKey, InProcess
from .calls import CallOrigin
from .config import Limits
from .core import events as ev
from .core.budget import ByteBudget
from .core.pattern_frames import Broadcast, Deliver, OutFrame, deliver_shared
from .core.publish_window import publish_cost
from .core.pubsub import (Delivery, Disconnect, Policy, PublishResult, PubSub, SubscriptionState,
                          TooManySubscriptions)
from .core.topics import TopicError, check_pattern, check_topic
from .core.workqueue import DeadLetter, QueueStats
from .fan_out import FanOut
from .errors import RpcError, StatusCode, Violation
from .interceptors import Interception
from .pattern_gate import PatternGate
from .logs import Throttled
from .publisher_holds import Key, PublisherHolds
from .patterns import (DEFAULT_LISTENER_QUEUE, DEFAULT_RECEIVER_QUEUE_BYTES, BroadcastListener,
                       Consumer, Received, Receivers, Subscription, TaskContext)
from .service import MethodInfo, Registry

__all__ = ["Broker", "Outlet"]

log = logging.getLogger(__name__)
warn = Throttled(log)  # what a peer can provoke at will is rate-limited

# Messages whose shared Deliver fields are kept encoded: about what the
# subscriptions' queues can release at once; past it the cache starts over.
_ENCODED_CACHE = 4096


class Outlet(Protocol):
    """What the broker needs of a peer's connection. Nothing here blocks:
    a push that cannot go out now returns False (the connection is gone,
    or it is being closed as a slow consumer), and the frame is lost."""

    @property
    def session_id(self) -> str:
        """The peer's session: publisher (origin) of what it sends."""
        ...

    @property
    def address(self) -> str:
        """Where the peer is, for logs."""
        ...

    @property
    def origin(self) -> CallOrigin:
        """Who the peer is (its identity: what interceptors see)."""
        ...

    def push(self, frame: OutFrame) -> bool:
        """Send `frame` (a Deliver, Task or Broadcast); False if it did not
        go out."""
        ...

    def answer(self, call_id: int, code: StatusCode = StatusCode.OK, message: str = "",
               violations: Tuple[Violation, ...] = ()) -> None:
        """Answer the call a pattern frame opened (`violations`: of an
        INVALID_ARGUMENT refusal)."""
        ...

    def close_slow_consumer(self, code: StatusCode, reason: str) -> None:
        """Refuse further output and close in the background; later calls
        do nothing."""
        ...

    @property
    def suspended(self) -> bool:
        """The peer's connection was lost; its session waits for a resume."""
        ...

    def grant_publish(self, amount: int) -> None:
        """Give `amount` of the peer's publish window back (Credit{publish})."""
        ...


def _owner(outlet: Outlet) -> Hashable:
    """`outlet` as the owner of subscriptions and consumers (compared by
    identity; mypy does not take a Protocol for Hashable)."""
    return cast(Hashable, outlet)


class _Local:
    """The owner of the server's own subscriptions and consumers."""

    def __repr__(self) -> str:
        return "<this process>"


class Broker:
    """Topics, work queues and broadcasts of one server. Of `limits`, the
    subscription queue bounds apply (max_subscription_bytes, and
    max_server_subscription_bytes shared by every topic space)."""

    def __init__(self, registry: Registry, outlets: Callable[[], Iterable[Outlet]],
                 identity: str = "", limits: Optional[Limits] = None,
                 interception: Optional[Interception] = None,
                 backend: Optional[Backend] = None) -> None:
        limits = limits or Limits()
        self._registry = registry
        #: The server's interceptors, around what peers ask (not this process).
        self._gate: Optional[PatternGate] = None
        self.use_interception(interception)
        self._max_subscription_bytes = limits.max_subscription_bytes
        #: Publish windows, and the publishers block subscriptions hold back.
        self._holds = PublisherHolds(limits.publish_window, limits.block_stall_timeout,
                                     self._end_blocker, self._lost)
        #: What the queues of all subscriptions, of every method, hold.
        self.subscription_budget = ByteBudget(limits.max_server_subscription_bytes)
        #: The connected peers, for broadcasts.
        self._outlets = outlets
        #: The server's peer id: the publisher of what it publishes itself.
        self.identity = identity
        self._topics: Dict[str, PubSub] = {}
        #: The methods this server has subscriptions of (its backend knows).
        self._interested: Dict[str, None] = {}
        # (owner, subscription id) -> method; an owner is an Outlet, or
        # _Local for this process.
        self._subscribed: Dict[Tuple[object, int], str] = {}
        self._local = _Local()
        # (publisher_seq, publisher, topic) -> the Deliver fields they share.
        self._encoded: Dict[Tuple[int, str, str], bytes] = {}
        # Every delivery goes out through it, in the order decided.
        self._fan_out: FanOut[Delivery] = FanOut(self._push)
        # This process's own subscriptions, consumers and listeners.
        self._local_ids = itertools.count(1)
        self._receivers = Receivers()
        #: What crosses servers: the work queues' state, the relay to others.
        self._backend: Backend = backend if backend is not None else InProcess()
        #: The work queues, and the consumers of peers and of this process.
        self._work = WorkQueues(self._backend, self._method, self._local, self._receivers,
                                self._local_ids)
        self._handlers: Dict[type, Callable[[Outlet, Any], None]] = {
            ev.SubscribeReceived: self._on_subscribe,
            ev.UnsubscribeReceived: self._on_unsubscribe,
            ev.PublishReceived: self._on_publish,
            ev.CreditReceived: self._on_credit,
            ev.ProduceReceived: self._work.on_produce,
            ev.ConsumeReceived: self._work.on_consume,
            ev.TaskDoneReceived: self._work.on_task_done,
            ev.BroadcastReceived: self._on_broadcast,
        }
        self._backend.start(identity, self)

    # ------------------------------------------------------ from connections

    def use_interception(self, interception: Optional[Interception]) -> None:
        """Run `interception` around what peers ask from now on (the server
        adds message validation once a service with rules is added)."""
        self._gate = (PatternGate(interception, self._message_type)
                      if interception is not None else None)

    def handle(self, outlet: Outlet, event: Any) -> None:
        """A pattern frame arrived from `outlet` (the driver's `patterns` hook);
        a frame that opened a call is answered through it."""
        handler = self._handlers.get(type(event))
        call_id = getattr(event, "call_id", 0)
        try:
            if handler is None:
                raise RpcError(StatusCode.UNIMPLEMENTED,
                               f"a server does not take {type(event).__name__} frames")
            try:
                if self._gate is None:
                    handler(outlet, event)
                else:
                    self._gate.run(outlet.origin, event, lambda: handler(outlet, event))
            except ValueError as exc:  # e.g. more credit than a consumer may hold
                raise RpcError(StatusCode.INVALID_ARGUMENT, str(exc)) from None
        except RpcError as exc:
            if call_id:
                outlet.answer(call_id, exc.code, exc.message, exc.violations)
            else:
                warn.warning("refused", "%s from %s refused: %s", type(event).__name__,
                             outlet.origin.who, exc.message)
        else:
            if call_id:
                outlet.answer(call_id)

    def forget(self, outlet: Outlet, lost: bool) -> None:
        """`outlet`'s session ended: its subscriptions go, and its consumers'
        unfinished tasks go back to their queues (an attempt used if it was
        `lost`, none if it ended in order)."""
        owner = _owner(outlet)
        for method, pubsub in self._topics.items():
            if pubsub.drop_owner(owner):
                self._track_interest(method, pubsub)
            pubsub.forget_publisher(outlet.session_id)
        self._holds.forget(owner)
        for key in [key for key in self._subscribed if key[0] is outlet]:
            del self._subscribed[key]
        self._work.forget(outlet, lost)
        if self._gate is not None:
            self._gate.forget(owner)

    def _on_subscribe(self, outlet: Outlet, event: ev.SubscribeReceived) -> None:
        self._subscribe(outlet, event.subscription_id, event.method, event.pattern,
                        event.queue_limit, event.policy)

    def _on_unsubscribe(self, outlet: Outlet, event: ev.UnsubscribeReceived) -> None:
        self._unsubscribe(outlet, event.subscription_id)

    def _on_publish(self, outlet: Outlet, event: ev.PublishReceived) -> None:
        """A peer's publish, within its window: its cost goes back at once,
        or once the BLOCK queues it went past the limits of catch up."""
        payload = bytes(event.payload)
        holds = self._holds
        if not holds.window:
            self._publish(event.method, event.topic, payload, outlet.session_id)
            return
        cost = publish_cost(len(payload))
        holds.receive(outlet, cost)
        blocked: Tuple[Key, ...] = ()
        try:
            blocked = self._publish(event.method, event.topic, payload, outlet.session_id).blocked
        finally:
            holds.settle(event.method, outlet, cost, blocked)

    def _on_credit(self, outlet: Outlet, event: ev.CreditReceived) -> None:
        if event.subscription_id:
            method = self._subscribed.get((outlet, event.subscription_id))
            if method is not None:
                self._grant(method, _owner(outlet), event.subscription_id, event.items)
        elif event.consumer_id:
            self._work.grant(outlet, event.consumer_id, event.items)

    def _on_broadcast(self, outlet: Outlet, event: ev.BroadcastReceived) -> None:
        self.broadcast(event.method, bytes(event.payload), origin=outlet.session_id, skip=outlet)

    # ---------------------------------------------------- publish/subscribe

    def _pubsub(self, method: str) -> PubSub:
        pubsub = self._topics.get(method)
        if pubsub is None:
            self._method(method, options_pb2.PUBLISH_SUBSCRIBE)
            pubsub = self._topics[method] = PubSub(max_queue_bytes=self._max_subscription_bytes,
                                                   budget=self.subscription_budget)
        return pubsub

    def _subscribe(self, owner: Any, subscription_id: int, method: str, pattern: str,
                   queue_limit: int, policy: int) -> None:
        pubsub = self._pubsub(method)
        if policy == Policy.BLOCK_PUBLISHER and not self._holds.window:
            raise RpcError(StatusCode.INVALID_ARGUMENT,
                           "this server holds no publisher back (its Limits.publish_window is "
                           "0): subscribe with another policy than block")
        try:
            pubsub.subscribe(owner, subscription_id, pattern, queue_limit=queue_limit,
                             policy=Policy.from_wire(policy))
        except TooManySubscriptions as exc:
            raise RpcError(StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        except ValueError as exc:  # TopicError among them
            raise RpcError(StatusCode.INVALID_ARGUMENT, str(exc)) from None
        self._subscribed[(owner, subscription_id)] = method
        self._track_interest(method, pubsub)

    def _unsubscribe(self, owner: Any, subscription_id: int) -> None:
        method = self._subscribed.pop((owner, subscription_id), None)
        if method is not None:
            pubsub = self._topics[method]
            pubsub.unsubscribe(owner, subscription_id)
            self._holds.release(method, (owner, subscription_id))
            self._track_interest(method, pubsub)

    def _track_interest(self, method: str, pubsub: PubSub) -> None:
        """Tell the backend when this server's first subscription of
        `method` starts, or its last ends."""
        interested = method in self._interested
        if pubsub and not interested:
            self._interested[method] = None
            self._backend.interest(method)
        elif not pubsub and interested:
            del self._interested[method]
            self._backend.no_interest(method)

    def publish(self, method: str, topic: str, payload: bytes, confirm: bool = False,
                timeout: Optional[float] = None) -> int:
        """Publish from this process: hand `payload` to every subscription
        whose pattern matches `topic`; returns how many matched. While a
        matching `block` subscription is past its limits, wait first (at
        most `timeout` seconds: DEADLINE_EXCEEDED, nothing published);
        `confirm` changes nothing here. Do not call it from a subscription
        callback of the same topic: it may wait for itself."""
        pubsub = self._pubsub(method)
        try:
            check_topic(topic)
        except TopicError as exc:
            raise RpcError(StatusCode.INVALID_ARGUMENT, str(exc)) from None
        self._holds.wait(method, lambda: pubsub.held(topic), timeout,
                         f"publishing on {topic!r} of {method}")
        return self._publish(method, topic, payload, self.identity).matched

    def _publish(self, method: str, topic: str, payload: bytes, publisher: str) -> PublishResult:
        """Offer the message to the subscriptions, send what goes now,
        apply the policies, and hand it to the backend for the other
        servers; `publisher` is the session it came from."""
        pubsub = self._pubsub(method)
        try:
            result = pubsub.publish(topic, payload, publisher)
        except TopicError as exc:
            raise RpcError(StatusCode.INVALID_ARGUMENT, str(exc)) from None
        self._backend.publish(method, topic, payload, publisher, result.publisher_seq)
        self._apply(method, result)
        return result

    def _apply(self, method: str, result: PublishResult) -> None:
        """Send what a publish delivers now; report its drops, end the
        subscriptions it disconnected."""
        self._send(result.deliveries)
        if result.dropped:
            warn.warning("dropped", "%s: %d queued messages dropped for subscribers that do not "
                         "keep up (their slow-consumer policy)", method, result.dropped)
        for dropped in result.disconnected:
            self._disconnect(method, dropped)

    def _grant(self, method: str, owner: Hashable, subscription_id: int, items: int) -> None:
        """A subscriber's credit: send what it releases; a BLOCK queue back
        within its limits lets the publishes it held go on."""
        pubsub = self._topics[method]
        self._send(pubsub.grant(owner, subscription_id, items))
        key = (owner, subscription_id)
        if self._holds.holding(method, key):
            self._holds.progressed(method, key, pubsub.over_limit(owner, subscription_id))

    def suspended(self, outlet: Outlet) -> None:
        """`outlet`'s connection was lost (its heartbeat bound passed, or
        its stream broke): its BLOCK subscriptions that hold publishers
        back end as by DISCONNECT, and the publishers go on (spec §8.3)."""
        owner = _owner(outlet)
        for method, pubsub in self._topics.items():
            for subscription_id in pubsub.blocking(owner):
                self._end_blocker(method, (owner, subscription_id), "its connection was lost")

    def _lost(self, owner: Hashable) -> bool:
        return owner is not self._local and cast(Outlet, owner).suspended

    def _end_blocker(self, method: str, key: Key, why: str) -> None:
        """A block subscription that may hold publishers no longer ends,
        as by disconnect: a peer's closes its session."""
        owner, subscription_id = key
        reason = (f"subscription {subscription_id} of {method} holds publishers back (block) "
                  f"and {why}: it ends, as by disconnect")
        self._unsubscribe(owner, subscription_id)
        if owner is self._local:
            sub = self._receivers.remove_subscription(subscription_id)
            if sub is not None:
                sub.close(RpcError(StatusCode.RESOURCE_EXHAUSTED, reason))
            warn.warning("blocker", "ending a subscription of this process: %s", reason)
            return
        outlet = cast(Outlet, owner)
        warn.warning("blocker", "ending the connection of %s: %s", outlet.origin.who, reason)
        outlet.close_slow_consumer(StatusCode.RESOURCE_EXHAUSTED, reason)

    def _send(self, deliveries: List[Delivery]) -> None:
        if deliveries:
            self._fan_out.send(deliveries)

    def _push(self, d: Delivery) -> None:
        """One delivery: to a subscription of this process, or a peer's."""
        if d.owner is self._local:
            sub = self._receivers.subscription(d.subscription_id)
            if sub is not None:
                sub.deliver(d.payload, d.topic, d.publisher, d.publisher_seq, d.dropped)
            return
        # What the subscribers of one message share is encoded once (also
        # when queued messages go out later, one by one).
        encoded = self._encoded
        key = (d.publisher_seq, d.publisher, d.topic)
        shared = encoded.get(key)
        if shared is None:
            if len(encoded) >= _ENCODED_CACHE:
                encoded.clear()
            shared = encoded[key] = deliver_shared(d.topic, d.publisher, d.publisher_seq)
        outlet = cast(Outlet, d.owner)  # not local: a peer
        outlet.push(Deliver(d.subscription_id, d.dropped, shared, d.payload))

    def _disconnect(self, method: str, dropped: Disconnect) -> None:
        self._subscribed.pop((dropped.owner, dropped.subscription_id), None)
        self._track_interest(method, self._topics[method])
        if dropped.owner is self._local:
            sub = self._receivers.remove_subscription(dropped.subscription_id)
            if sub is not None:
                sub.close(RpcError(StatusCode.RESOURCE_EXHAUSTED, dropped.reason))
            return
        outlet = cast(Outlet, dropped.owner)
        warn.warning("disconnect", "disconnecting %s from %s: %s", outlet.origin.who, method,
                     dropped.reason)
        outlet.close_slow_consumer(StatusCode.RESOURCE_EXHAUSTED, dropped.reason)

    def subscribe(self, method: str, pattern: str, decode: Callable[[Any], Any],
                  callback: Optional[Callable[[Received], None]] = None, *,
                  queue_limit: int = 0, policy: int = Policy.DROP_OLDEST,
                  timeout: Optional[float] = None,
                  queue_bytes: int = DEFAULT_RECEIVER_QUEUE_BYTES) -> Subscription:
        """Subscribe this process to `pattern` of `method` (see Peer.subscribe)."""
        check_pattern(pattern)
        sid = next(self._local_ids)
        pubsub = self._pubsub(method)
        sub: Subscription = Subscription(
            sid, method, pattern, queue_limit or pubsub.default_queue_limit, policy, decode,
            callback, grant=lambda items: self._grant(method, self._local, sid, items),
            unsubscribe=self._local_unsubscribe, queue_bytes=queue_bytes)
        self._receivers.add_subscription(sub)
        try:
            self._subscribe(self._local, sid, method, pattern, queue_limit, policy)
        except RpcError:
            self._receivers.remove_subscription(sid)
            raise
        return sub

    def _local_unsubscribe(self, sub: Subscription) -> None:
        self._receivers.remove_subscription(sub.id)
        self._unsubscribe(self._local, sub.id)

    # ------------------------------------------------------------ work queues

    def configure_queue(self, method: str, **limits: int) -> None:
        """Set `max_attempts`, `max_tasks`, `max_bytes`, `max_dead_letters`
        or `max_dead_letter_bytes` of the queue of `method`."""
        self._work.configure_queue(method, **limits)

    def queue_stats(self, method: str) -> QueueStats:
        return self._work.queue_stats(method)

    def every_queue_stats(self) -> Dict[str, QueueStats]:
        return self._work.every_queue_stats()

    def subscriptions(self, limit: Optional[int] = None
                      ) -> Tuple[List[Tuple[str, Optional[str], SubscriptionState]], int]:
        """The first `limit` subscriptions (None: all), each with its
        method and the session of the peer that holds it (None: this
        process's own), and how many there are in all (peers can make
        millions: listing them all would stall the loop)."""
        listed = [(method, None if isinstance(sub.owner, _Local)
                   else cast(Outlet, sub.owner).session_id, sub)
                  for method, pubsub in self._topics.items()
                  for sub in pubsub.subscriptions(None if limit is None else limit)]
        return listed[:limit], sum(len(pubsub) for pubsub in self._topics.values())

    def pattern_totals(self) -> Dict[str, Dict[str, Tuple[int, int]]]:
        """(delivered, dropped) by method and subscription pattern since the
        start (PubSub.totals: bounded, subscriptions that ended included)."""
        return {method: pubsub.totals() for method, pubsub in self._topics.items()}

    def dead_letters(self, method: str) -> List[DeadLetter]:
        return self._work.dead_letters(method)

    def replay(self, method: str, task_ids: Optional[Iterable[int]] = None) -> int:
        """Put dead letters (all, or those named) back on the queue."""
        return self._work.replay(method, task_ids)

    def purge(self, method: str) -> int:
        return self._work.purge(method)

    def produce(self, method: str, payload: bytes, timeout: Optional[float] = None) -> int:
        """Put a task on the queue; returns its id."""
        return self._work.produce(method, payload, timeout)

    def consume(self, method: str, decode: Callable[[Any], Any],
                handler: Callable[[Any, TaskContext], Any], prefetch: int = 1,
                timeout: Optional[float] = None) -> Consumer:
        """Consume tasks of `method` in this process (see Peer.consume)."""
        return self._work.consume(method, decode, handler, prefetch)

    # ------------------------------------------------------------- broadcast

    def broadcast(self, method: str, payload: bytes, confirm: bool = False,
                  timeout: Optional[float] = None, *, origin: str = "",
                  skip: Optional[Outlet] = None) -> int:
        """Send to every connected peer but `skip`, the one it came from
        (and then to this process's listeners too: like a peer, the server
        does not hear its own); returns how many peers it went to."""
        self._method(method, options_pb2.BROADCAST)
        sent = self._broadcast_to_peers(method, payload, origin, skip)
        if skip is not None:
            self._receivers.deliver_broadcast(method, payload, origin)
        self._backend.broadcast(method, payload, origin)
        return sent

    def _broadcast_to_peers(self, method: str, payload: bytes, origin: str,
                            skip: Optional[Outlet]) -> int:
        """Push a broadcast to every connected peer but `skip` that may hear
        it; returns how many it went to."""
        sent = 0
        frame = Broadcast(method, payload, origin)
        gate = self._gate
        for outlet in list(self._outlets()):
            if outlet is skip or (gate is not None and not gate.may_listen(
                    _owner(outlet), outlet.origin, method, payload)):
                continue
            if outlet.push(frame):
                sent += 1
        return sent

    def listen(self, method: str, decode: Callable[[Any], Any],
               callback: Optional[Callable[[Received], None]] = None,
               queue_limit: int = DEFAULT_LISTENER_QUEUE,
               queue_bytes: int = DEFAULT_RECEIVER_QUEUE_BYTES) -> BroadcastListener:
        """Hear the broadcasts of `method` in this process."""
        self._method(method, options_pb2.BROADCAST)
        listener: BroadcastListener = BroadcastListener(method, decode, callback,
                                                        self._receivers.unlisten, queue_limit,
                                                        queue_bytes)
        self._receivers.add_listener(listener)
        return listener

    # --------------------------------------------- from the backend (Inbound)

    def on_task(self, key: ConsumerKey, task_id: int, attempt: int, payload: bytes) -> None:
        self._work.on_task(key, task_id, attempt, payload)

    def on_dead(self, method: str, key: ConsumerKey, letters: List[DeadLetter]) -> None:
        self._work.on_dead(method, key, letters)

    def on_message(self, method: str, topic: str, payload: bytes, publisher: str,
                   seq: int) -> None:
        """Another server's message: to this server's subscribers, as its
        `publisher`'s `seq`-th; a block subscription it leaves past its
        limits holds that publisher back there until it catches up."""
        pubsub = self._topics.get(method)
        if pubsub is None:
            return  # no subscription here (any more)
        try:
            result = pubsub.publish(topic, payload, publisher, publisher_seq=seq)
        except TopicError as exc:
            warn.warning("remote topic", "a message of %s from another server refused: %s",
                         method, exc)
            return
        self._apply(method, result)
        if result.blocked:
            backend = self._backend
            backend.hold(method, publisher, True)
            self._holds.hold_remote(method, result.blocked,
                                    lambda: backend.hold(method, publisher, False))

    def on_hold(self, method: str, publisher: str, held: bool) -> None:
        """A block subscriber on another server holds this server's
        `publisher` back. Not acted on yet: no backend relays holds (the
        NATS backend will; the publisher's window then waits as for a
        local block subscriber)."""
        log.debug("hold of %s on %s from another server: %s (not acted on)", publisher, method,
                  held)

    def on_broadcast(self, method: str, payload: bytes, origin: str) -> None:
        """Another server's broadcast: to every peer here that may hear it,
        and this process's listeners."""
        self._broadcast_to_peers(method, payload, origin, None)
        self._receivers.deliver_broadcast(method, payload, origin)

    # ------------------------------------------------------------------ misc

    def close(self) -> None:
        """The server stopped: this process's own receivers end too."""
        self._receivers.close_all(RpcError(StatusCode.UNAVAILABLE, "the server stopped"))
        self._holds.close()
        self._backend.close()

    def _message_type(self, path: str) -> Optional[Type[Message]]:
        info = self._registry.info(path)
        return info.input_type if info is not None else None

    def _method(self, path: str, pattern: int) -> MethodInfo:
        info = self._registry.info(path)
        if info is None:
            raise self._registry.not_served(path)
        if info.pattern != pattern:
            raise RpcError(StatusCode.UNIMPLEMENTED,
                           f"{path} is a {options_pb2.Pattern.Name(info.pattern)} method, "
                           f"not {options_pb2.Pattern.Name(pattern)}")
        return info
