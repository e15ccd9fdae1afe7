"""The broker state of one publish/subscribe method (e.g. "/pkg.Svc/ItemChanged"),
on the server. Pure logic: no I/O, no clock; the driver feeds it calls and
sends what they return.

Calls and what they return::

    PubSub(default_queue_limit=1024, max_queue_limit=65536, max_subscriptions_per_owner=10000,
           max_queue_bytes=8 MiB, budget=ByteBudget(256 MiB))
    subscribe(owner, subscription_id, pattern, *, queue_limit=0, policy=Policy.DROP_OLDEST, credit=0)
    unsubscribe(owner, subscription_id) -> bool       # False if unknown: idempotent
    drop_owner(owner) -> int                          # the peer is gone: how many were removed
    publish(topic, payload, publisher[, publisher_seq]) -> PublishResult(deliveries, disconnected, matched,
                                                        publisher_seq, dropped, blocked)
    grant(owner, subscription_id, items) -> [Delivery]  # queued messages the new credit releases
    over_limit(owner, subscription_id) -> bool        # a BLOCK queue past its limits
    held(topic) -> [(owner, subscription_id)]         # BLOCK ones past them, matching topic
    blocking(owner) -> [subscription_id]              # owner's BLOCK ones past them
    forget_publisher(publisher) -> bool               # its session ended: drop its counter
    totals() -> {pattern: (delivered, dropped)}       # since the start, subscriptions gone too
    subscription(owner, subscription_id) -> SubscriptionState
    subscriptions() -> [SubscriptionState]

A subscriber is ``(owner, subscription_id)``: the owner is any hashable the
driver chooses (a connection, a local subscriber's token), the id is the
subscriber's own number, unique per owner.

Delivery guarantee: at most once, in order. Each subscription receives the
messages published on topics its pattern matches, in publish order, each at
most once; the broker hands it at most `credit` messages (the subscriber
grants more as it consumes them) and queues the rest, at most `queue_limit`
messages and `max_queue_bytes` payload bytes. A message arriving for a full
queue invokes the subscription's slow-consumer `Policy`: drop the oldest
queued messages (as many as it takes for the new one to fit), drop the new
one, end the subscription (reported in `PublishResult.disconnected`, for
the driver to end with RESOURCE_EXHAUSTED), or (BLOCK_PUBLISHER) queue it past the
limit and report the subscription in `PublishResult.blocked`: the driver
holds that message's publisher back until `over_limit` is False again, so a
BLOCK queue holds at most its limit plus what its publishers' windows let
through. A message larger than
`max_queue_bytes` on its own is queued only into an empty queue (it is never
lost merely for its size; a frame limit bounds it). All the queues of every
PubSub sharing one `budget` (a server's) hold at most `budget.limit` bytes
together: a message that would take them past it invokes the receiving
subscription's policy as if its own queue were full (DROP_OLDEST drops only
the new message when emptying its own queue would not make room). Dropped
messages are counted, and every `Delivery` carries the subscription's count
so far, so a subscriber can see what it missed. Each publisher's messages
carry `publisher_seq`, counting from 1 across all topics of this method: a
subscriber sees it strictly increase per publisher (with gaps for other
topics and dropped messages).

Memory: at most `queue_limit` messages and `max_queue_bytes` bytes (or one
message) per subscription, at most `budget.limit` bytes over all of them
(each queued copy counts its payload, although payloads are shared between
subscriptions, not copied), at most `max_subscriptions_per_owner`
subscriptions per owner, and a removed subscription frees everything it
held. Publisher counters are kept until
`forget_publisher`.

Totals for monitoring: `totals()` counts the messages delivered to, and
dropped for, the subscriptions of each pattern since the PubSub began,
those that ended included, so a counter never goes back. Patterns are
chosen by peers: the first `max_pattern_totals` distinct ones are counted
apart, the rest together under OTHER_PATTERNS (which no pattern can be).
"""
from __future__ import annotations

import enum
import itertools
from collections import deque
from typing import Deque, Dict, Hashable, List, NamedTuple, Optional, Tuple

from .budget import ByteBudget
from .topics import TopicIndex, check_topic

__all__ = [
    "Policy",
    "Delivery",
    "Disconnect",
    "PublishResult",
    "SubscriptionState",
    "TooManySubscriptions",
    "PubSub",
    "DEFAULT_QUEUE_LIMIT",
    "MAX_QUEUE_LIMIT",
    "MAX_SUBSCRIPTIONS_PER_OWNER",
    "DEFAULT_MAX_QUEUE_BYTES",
    "DEFAULT_MAX_TOTAL_QUEUE_BYTES",
    "MAX_PATTERN_TOTALS",
    "OTHER_PATTERNS",
]

# Messages a subscription may have waiting for credit unless it asks
# otherwise: enough to ride out a burst, small enough that a stalled
# subscriber costs a bounded amount of memory.
DEFAULT_QUEUE_LIMIT = 1024
# The most a subscriber may ask for: each subscriber chooses its own queue
# size, so this caps what one peer can make the server hold per subscription.
MAX_QUEUE_LIMIT = 65536
# Subscriptions one owner (peer) may hold: with MAX_QUEUE_LIMIT, this bounds
# what a single peer can make the server hold.
MAX_SUBSCRIPTIONS_PER_OWNER = 10000
# Payload bytes one subscription may have waiting for credit: queue_limit
# alone lets a subscriber that stops granting credit make the server hold
# 1024 (up to 65,536) messages of any size, a GiB at 1 MiB each.
DEFAULT_MAX_QUEUE_BYTES = 8 * 1024 * 1024
# What the queues of all subscriptions together may hold (a server shares
# one budget between its methods): peers with many stalled subscriptions
# cannot multiply the bound above.
DEFAULT_MAX_TOTAL_QUEUE_BYTES = 256 * 1024 * 1024
# Distinct patterns whose totals are kept apart (each is a metric series, and
# peers choose patterns): past it, new patterns are counted as OTHER_PATTERNS.
MAX_PATTERN_TOTALS = 100
#: Where the totals of patterns past MAX_PATTERN_TOTALS go: it holds spaces,
#: so no subscription can have it as its pattern.
OTHER_PATTERNS = "(other patterns)"


class Policy(enum.IntEnum):
    """What happens when a message arrives for a full queue. Values equal
    the wire's SlowConsumerPolicy."""

    #: Drop the oldest queued message, keep the new one: a subscriber that
    #: catches up sees the latest state.
    DROP_OLDEST = 1
    #: Drop the new message, keep what is queued.
    DROP_NEWEST = 2
    #: End the subscription: the subscriber must not miss messages silently.
    DISCONNECT = 3
    #: Queue it past the limit and hold the publishers back ("block"):
    #: nothing is lost; the driver withholds the publishers' window
    #: (core/publish_window.py) while `over_limit`.
    BLOCK_PUBLISHER = 4

    @classmethod
    def from_name(cls, name: str) -> "Policy":
        """The policy an API takes by name: "drop_oldest", "drop_newest",
        "disconnect" or "block"."""
        policy = _NAMES.get(name.lower()) if isinstance(name, str) else None
        if policy is None:
            raise ValueError(f"policy must be 'drop_oldest', 'drop_newest', 'disconnect' or "
                             f"'block', not {name!r}")
        return policy

    @property
    def api_name(self) -> str:
        """The name an API takes for this policy (`from_name`'s inverse)."""
        return _API_NAMES[self]

    @classmethod
    def from_wire(cls, value: int) -> "Policy":
        """The policy a Subscribe frame asks for; 0 (unspecified) is
        DROP_OLDEST. ValueError for unknown numbers."""
        if value == 0:
            return cls.DROP_OLDEST
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown slow-consumer policy {value!r}") from None


_NAMES = {"drop_oldest": Policy.DROP_OLDEST, "drop_newest": Policy.DROP_NEWEST,
          "disconnect": Policy.DISCONNECT, "block": Policy.BLOCK_PUBLISHER}
_API_NAMES = {policy: name for name, policy in _NAMES.items()}


class Delivery(NamedTuple):
    """One message to send to one subscription (a Deliver frame)."""

    owner: Hashable
    subscription_id: int
    topic: str
    publisher: str
    publisher_seq: int
    #: The subscription's messages dropped so far, when this one was handed out.
    dropped: int
    payload: bytes


class Disconnect(NamedTuple):
    """A subscription the DISCONNECT policy ended; the driver ends it with
    RESOURCE_EXHAUSTED and `reason`."""

    owner: Hashable
    subscription_id: int
    reason: str


class PublishResult(NamedTuple):
    """What one publish did."""

    #: Sendable now (within credit), in subscription order.
    deliveries: List[Delivery]
    #: Subscriptions removed because their DISCONNECT policy tripped.
    disconnected: List[Disconnect]
    #: Subscriptions whose pattern matched the topic (delivered, queued,
    #: dropped or disconnected).
    matched: int
    #: The number this message got in its publisher's sequence.
    publisher_seq: int
    #: Messages the slow-consumer policies dropped to take this one (queued
    #: ones, or this one), over all subscriptions.
    dropped: int = 0
    #: BLOCK subscriptions this message took past their limit: its
    #: publisher is to be held back until each is within it (or gone).
    blocked: Tuple["_Key", ...] = ()


class SubscriptionState(NamedTuple):
    """A read-only snapshot of one subscription."""

    owner: Hashable
    subscription_id: int
    pattern: str
    queue_limit: int
    policy: Policy
    #: Messages the broker may still hand out without waiting for a grant.
    credit: int
    #: Messages waiting for credit.
    queued: int
    dropped: int
    #: Payload bytes of the messages waiting for credit.
    queued_bytes: int = 0


class TooManySubscriptions(ValueError):
    """An owner asked for more subscriptions than allowed (RESOURCE_EXHAUSTED)."""


# A published message as queued: topic, publisher, publisher_seq, payload.
_Message = Tuple[str, str, int, bytes]
_Key = Tuple[Hashable, int]


class _Subscription:
    __slots__ = ("owner", "subscription_id", "pattern", "queue_limit", "policy",
                 "credit", "queue", "queued_bytes", "dropped", "granted", "tally")

    def __init__(self, owner: Hashable, subscription_id: int, pattern: str,
                 queue_limit: int, policy: Policy, credit: int) -> None:
        self.owner = owner
        self.subscription_id = subscription_id
        self.pattern = pattern
        self.queue_limit = queue_limit
        self.policy = policy
        self.credit = credit
        # Invariant: the queue is non-empty only while credit is 0.
        self.queue: Deque[_Message] = deque()
        #: Payload bytes in `queue`.
        self.queued_bytes = 0
        self.dropped = 0
        #: Credit ever given (at the start, and each grant): what it was
        #: delivered is this less the credit left, with nothing to count
        #: on the publish path.
        self.granted = credit
        #: The key of its pattern's totals (see PubSub.totals).
        self.tally = pattern

    @property
    def delivered(self) -> int:
        return self.granted - self.credit

    def deliver(self, message: _Message) -> Delivery:
        topic, publisher, seq, payload = message
        return Delivery(self.owner, self.subscription_id, topic, publisher, seq,
                        self.dropped, payload)

    def state(self) -> SubscriptionState:
        return SubscriptionState(self.owner, self.subscription_id, self.pattern,
                                 self.queue_limit, self.policy, self.credit,
                                 len(self.queue), self.dropped, self.queued_bytes)


class PubSub:
    """Subscriptions, their queues and credit, and publisher counters for
    one publish/subscribe method. See the module docstring."""

    def __init__(self, default_queue_limit: int = DEFAULT_QUEUE_LIMIT,
                 max_queue_limit: int = MAX_QUEUE_LIMIT,
                 max_subscriptions_per_owner: int = MAX_SUBSCRIPTIONS_PER_OWNER,
                 max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
                 budget: Optional[ByteBudget] = None) -> None:
        if max_queue_limit < 1:
            raise ValueError(f"max_queue_limit must be at least 1, got {max_queue_limit!r}")
        if not 1 <= default_queue_limit <= max_queue_limit:
            raise ValueError(f"default_queue_limit must be between 1 and max_queue_limit "
                             f"({max_queue_limit}), got {default_queue_limit!r}")
        if max_subscriptions_per_owner < 1:
            raise ValueError(f"max_subscriptions_per_owner must be at least 1, "
                             f"got {max_subscriptions_per_owner!r}")
        if max_queue_bytes < 1:
            raise ValueError(f"max_queue_bytes must be at least 1, got {max_queue_bytes!r}")
        self.default_queue_limit = default_queue_limit
        self.max_queue_limit = max_queue_limit
        self.max_subscriptions_per_owner = max_subscriptions_per_owner
        self.max_queue_bytes = max_queue_bytes
        #: Payload bytes queued here and in every PubSub sharing it.
        self.budget = budget if budget is not None else ByteBudget(DEFAULT_MAX_TOTAL_QUEUE_BYTES)
        self._index: TopicIndex[_Key] = TopicIndex()
        self._subs: Dict[_Key, _Subscription] = {}
        #: owner -> its subscription ids (a dict as an ordered set).
        self._owners: Dict[Hashable, Dict[int, None]] = {}
        #: publisher -> the last publisher_seq it was given.
        self._publishers: Dict[str, int] = {}
        self.max_pattern_totals = MAX_PATTERN_TOTALS
        #: Totals key -> [delivered, dropped] of the subscriptions that ended;
        #: every key ever given out is here (at most max_pattern_totals + 1).
        self._ended: Dict[str, List[int]] = {}

    def __len__(self) -> int:
        return len(self._subs)

    # ------------------------------------------------------- subscriptions

    def subscribe(self, owner: Hashable, subscription_id: int, pattern: str, *,
                  queue_limit: int = 0, policy: Policy = Policy.DROP_OLDEST,
                  credit: int = 0) -> None:
        """Add a subscription. `queue_limit` 0 means the default; `credit`
        0 means `queue_limit`. TopicError for a bad pattern, ValueError for
        a bad limit, policy or credit or an id the owner already uses,
        TooManySubscriptions past the per-owner limit."""
        if queue_limit < 0 or queue_limit > self.max_queue_limit:
            raise ValueError(f"queue_limit {queue_limit!r} for subscription {subscription_id} is "
                             f"out of range: it must be between 1 and {self.max_queue_limit} "
                             f"(or 0 for the default, {self.default_queue_limit})")
        if not isinstance(policy, Policy):
            raise ValueError(f"policy must be a Policy, got {policy!r} "
                             f"(use Policy.from_wire for wire values)")
        if credit < 0:
            raise ValueError(f"credit {credit!r} for subscription {subscription_id} is negative")
        key = (owner, subscription_id)
        if key in self._subs:
            raise ValueError(f"subscription id {subscription_id} is already in use by this owner "
                             f"(pattern {self._subs[key].pattern!r})")
        ids = self._owners.get(owner)
        if ids is not None and len(ids) >= self.max_subscriptions_per_owner:
            raise TooManySubscriptions(
                f"subscription {subscription_id} would exceed the limit of "
                f"{self.max_subscriptions_per_owner} subscriptions per subscriber")
        self._index.add(key, pattern)  # validates the pattern
        limit = queue_limit or self.default_queue_limit
        sub = self._subs[key] = _Subscription(owner, subscription_id, pattern, limit, policy,
                                              credit or limit)
        if pattern not in self._ended:
            if len(self._ended) < self.max_pattern_totals:
                self._ended[pattern] = [0, 0]
            else:
                sub.tally = OTHER_PATTERNS
                self._ended.setdefault(OTHER_PATTERNS, [0, 0])
        if ids is None:
            ids = self._owners[owner] = {}
        ids[subscription_id] = None

    def unsubscribe(self, owner: Hashable, subscription_id: int) -> bool:
        """Remove a subscription and its queue; False if there is none
        (already gone, e.g. disconnected as a slow consumer)."""
        if (owner, subscription_id) not in self._subs:
            return False
        self._remove(owner, subscription_id)
        return True

    def drop_owner(self, owner: Hashable) -> int:
        """Remove every subscription of `owner` (its peer is gone); returns
        how many there were."""
        ids = self._owners.get(owner)
        if not ids:
            return 0
        count = len(ids)
        for subscription_id in list(ids):
            self._remove(owner, subscription_id)
        return count

    def _remove(self, owner: Hashable, subscription_id: int) -> _Subscription:
        key = (owner, subscription_id)
        sub = self._subs.pop(key)
        self.budget.used -= sub.queued_bytes
        ended = self._ended[sub.tally]
        ended[0] += sub.delivered
        ended[1] += sub.dropped
        self._index.remove(key)
        ids = self._owners[owner]
        del ids[subscription_id]
        if not ids:
            del self._owners[owner]
        return sub

    def subscription(self, owner: Hashable, subscription_id: int) -> SubscriptionState:
        """A snapshot of one subscription; KeyError if there is none."""
        sub = self._subs.get((owner, subscription_id))
        if sub is None:
            raise KeyError(f"no subscription {subscription_id} for owner {owner!r}")
        return sub.state()

    def subscriptions(self, limit: Optional[int] = None) -> List[SubscriptionState]:
        """Snapshots of the first `limit` subscriptions (None: every one),
        in the order they were made."""
        return [sub.state() for sub in itertools.islice(self._subs.values(), limit)]

    # ------------------------------------------------------------- messages

    def publish(self, topic: str, payload: bytes, publisher: str,
                publisher_seq: int = 0) -> PublishResult:
        """Offer a message to every subscription matching `topic`
        (TopicError if it is invalid): deliver within credit, else queue,
        else apply the slow-consumer policy. `publisher_seq`: the seq the
        message already has (relayed from another server; 0: the next)."""
        check_topic(topic)
        seq = publisher_seq or self._publishers.get(publisher, 0) + 1
        self._publishers[publisher] = seq
        message: _Message = (topic, publisher, seq, payload)
        deliveries: List[Delivery] = []
        disconnected: List[Disconnect] = []
        blocked: List[_Key] = []
        dropped = 0
        keys = self._index.match(topic)
        subs = self._subs
        size = len(payload)
        budget = self.budget
        max_bytes = self.max_queue_bytes
        for key in keys:
            sub = subs[key]
            if sub.credit:
                sub.credit -= 1
                deliveries.append(sub.deliver(message))
                continue
            # _full() and DROP_OLDEST's one-for-one, inlined: a fan-out to
            # many stalled subscriptions runs here for each of them.
            queue = sub.queue
            if (len(queue) < sub.queue_limit and budget.used + size <= budget.limit
                    and (sub.queued_bytes + size <= max_bytes or not queue)):
                queue.append(message)
                sub.queued_bytes += size
                budget.used += size
                continue
            if sub.policy is Policy.DROP_OLDEST and len(queue) == sub.queue_limit:
                freed = len(queue[0][3])  # one out, one in: does that do?
                if (budget.used - freed + size <= budget.limit
                        and (sub.queued_bytes - freed + size <= max_bytes or len(queue) == 1)):
                    queue.popleft()
                    queue.append(message)
                    sub.queued_bytes += size - freed
                    budget.used += size - freed
                    sub.dropped += 1
                    dropped += 1
                    continue
            if sub.policy is Policy.BLOCK_PUBLISHER:
                self._enqueue(sub, message, size)
                blocked.append(key)
            elif sub.policy is Policy.DROP_OLDEST:
                dropped += self._drop_oldest_for(sub, message, size)
            elif sub.policy is Policy.DROP_NEWEST:
                sub.dropped += 1
                dropped += 1
            else:
                full = self._full(sub, size)
                self._remove(sub.owner, sub.subscription_id)
                disconnected.append(Disconnect(
                    sub.owner, sub.subscription_id,
                    f"slow consumer: subscription {sub.subscription_id} (pattern {sub.pattern!r}) "
                    f"{full}, and its policy is DISCONNECT"))
        return PublishResult(deliveries, disconnected, len(keys), seq, dropped, tuple(blocked))

    def over_limit(self, owner: Hashable, subscription_id: int) -> bool:
        """Does this subscription hold more than its limits (a BLOCK one
        can)? False if there is none."""
        sub = self._subs.get((owner, subscription_id))
        if sub is None:
            return False
        queue = sub.queue
        return (len(queue) > sub.queue_limit
                or (len(queue) > 1 and sub.queued_bytes > self.max_queue_bytes)
                or (bool(queue) and self.budget.used > self.budget.limit))

    def held(self, topic: str) -> List[_Key]:
        """The BLOCK subscriptions matching `topic` that are past their
        limits: a publisher that can wait should, before publishing on it."""
        subs = self._subs
        return [key for key in self._index.match(topic)
                if subs[key].policy is Policy.BLOCK_PUBLISHER and self.over_limit(*key)]

    def blocking(self, owner: Hashable) -> List[int]:
        """`owner`'s BLOCK subscriptions that are past their limits."""
        return [sid for sid in self._owners.get(owner, ())
                if self._subs[(owner, sid)].policy is Policy.BLOCK_PUBLISHER
                and self.over_limit(owner, sid)]

    def _full(self, sub: _Subscription, size: int) -> Optional[str]:
        """None if a message of `size` bytes fits in `sub`'s queue, else
        which bound it would break, in words."""
        if len(sub.queue) >= sub.queue_limit:
            return (f"has {sub.queue_limit} messages waiting for credit, its queue limit "
                    f"(queue_limit)")
        if sub.queued_bytes + size > self.max_queue_bytes and sub.queue:
            return (f"has {sub.queued_bytes} bytes waiting for credit and a message of {size} "
                    f"bytes would exceed its limit of {self.max_queue_bytes} bytes")
        budget = self.budget
        if budget.used + size > budget.limit:
            return (f"has no room for a message of {size} bytes: the server's subscription "
                    f"queues hold {budget.used} bytes, and their limit is {budget.limit} bytes")
        return None

    def _enqueue(self, sub: _Subscription, message: _Message, size: int) -> None:
        sub.queue.append(message)
        sub.queued_bytes += size
        self.budget.used += size

    def _dequeue(self, sub: _Subscription) -> _Message:
        message = sub.queue.popleft()
        size = len(message[3])
        sub.queued_bytes -= size
        self.budget.used -= size
        return message

    def _drop_oldest_for(self, sub: _Subscription, message: _Message, size: int) -> int:
        """DROP_OLDEST: drop queued messages, oldest first, until `message`
        fits, and queue it. If it would not fit even alone (the server's
        budget is held by other queues), drop only it: emptying this queue
        would not help. Returns how many were dropped."""
        budget = self.budget
        if budget.used - sub.queued_bytes + size > budget.limit:
            sub.dropped += 1
            return 1
        dropped = 0
        while self._full(sub, size) is not None:
            self._dequeue(sub)
            dropped += 1
        self._enqueue(sub, message, size)
        sub.dropped += dropped
        return dropped

    def grant(self, owner: Hashable, subscription_id: int, items: int) -> List[Delivery]:
        """The subscriber may take `items` more messages: returns the queued
        ones that are now sendable, in order. An unknown subscription
        returns [] (a grant may cross its removal); ValueError if `items`
        is negative."""
        if items < 0:
            raise ValueError(f"credit grant of {items!r} items for subscription "
                             f"{subscription_id} is negative")
        sub = self._subs.get((owner, subscription_id))
        if sub is None:
            return []
        released = min(items, len(sub.queue))
        out = [sub.deliver(self._dequeue(sub)) for _ in range(released)]
        sub.credit += items - released
        sub.granted += items
        return out

    def totals(self) -> Dict[str, Tuple[int, int]]:
        """(delivered, dropped) by pattern since the start, for monitoring:
        each only grows (ended subscriptions stay counted); patterns past
        `max_pattern_totals` are under OTHER_PATTERNS. O(subscriptions)."""
        sums = {tally: list(counts) for tally, counts in self._ended.items()}
        for sub in self._subs.values():
            counts = sums[sub.tally]
            counts[0] += sub.delivered
            counts[1] += sub.dropped
        return {tally: (delivered, dropped) for tally, (delivered, dropped) in sums.items()}

    def forget_publisher(self, publisher: str) -> bool:
        """Drop `publisher`'s counter (its session ended); False if unknown.
        A later publisher of the same name starts again at 1."""
        return self._publishers.pop(publisher, None) is not None
