"""The publish/subscribe broker state: fan-out by pattern, credit, bounded
queues and slow-consumer policies, ordering, and memory freed on the way out."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onedrive_rpc.core import wire_pb2
from onedrive_rpc.core.budget import ByteBudget
from onedrive_rpc.core.pubsub import (OTHER_PATTERNS, Delivery, Disconnect, Policy, PubSub,
                                      SubscriptionState, TooManySubscriptions)
from onedrive_rpc.core.topics import TopicError, matches

A, B = "conn-a", "conn-b"


def payloads(deliveries):
    return [d.payload for d in deliveries]


def test_policy_matches_the_wire_enum():
    for policy in Policy:
        assert policy.value == wire_pb2.SlowConsumerPolicy.Value(policy.name)
        assert Policy.from_wire(policy.value) is policy
    assert Policy.from_wire(wire_pb2.SLOW_CONSUMER_POLICY_UNSPECIFIED) is Policy.DROP_OLDEST
    with pytest.raises(ValueError, match="unknown slow-consumer policy 9"):
        Policy.from_wire(9)


def test_fan_out_to_matching_subscriptions_only():
    ps = PubSub()
    ps.subscribe(A, 1, "drive.x.report")
    ps.subscribe(B, 1, "drive.y.report")
    ps.subscribe(B, 2, "drive.*.report")
    ps.subscribe(A, 2, "drive.>")
    ps.subscribe(A, 3, "other")
    result = ps.publish("drive.x.report", b"m", "pub")
    assert result.matched == 3 and result.disconnected == [] and result.publisher_seq == 1
    assert result.deliveries == [
        Delivery(A, 1, "drive.x.report", "pub", 1, 0, b"m"),
        Delivery(B, 2, "drive.x.report", "pub", 1, 0, b"m"),
        Delivery(A, 2, "drive.x.report", "pub", 1, 0, b"m"),
    ]
    result = ps.publish("drive.x", b"n", "pub")
    assert [(d.owner, d.subscription_id) for d in result.deliveries] == [(A, 2)]
    result = ps.publish("nothing.here", b"o", "pub")
    assert result.matched == 0 and result.deliveries == [] and result.publisher_seq == 3


def test_same_id_for_different_owners_is_two_subscriptions():
    ps = PubSub()
    ps.subscribe(A, 7, "t")
    ps.subscribe(B, 7, "t")
    assert [d.owner for d in ps.publish("t", b"x", "p").deliveries] == [A, B]


def test_credit_limits_deliveries_and_grant_releases_the_queue_in_order():
    ps = PubSub()
    ps.subscribe(A, 1, "t", queue_limit=10, credit=2)
    got = []
    for n in range(5):
        got += ps.publish("t", b"%d" % n, "p").deliveries
    assert payloads(got) == [b"0", b"1"]
    state = ps.subscription(A, 1)
    assert (state.credit, state.queued, state.dropped) == (0, 3, 0)
    released = ps.grant(A, 1, 2)
    assert payloads(released) == [b"2", b"3"]
    assert [d.publisher_seq for d in released] == [3, 4]
    assert ps.grant(A, 1, 5) == [Delivery(A, 1, "t", "p", 5, 0, b"4")]
    assert ps.subscription(A, 1).credit == 4 and ps.subscription(A, 1).queued == 0
    assert payloads(ps.publish("t", b"5", "p").deliveries) == [b"5"]
    assert ps.grant(A, 1, 0) == [] and ps.subscription(A, 1).credit == 3


def test_default_credit_is_the_queue_limit():
    ps = PubSub(default_queue_limit=3)
    ps.subscribe(A, 1, "t")
    ps.subscribe(A, 2, "t", queue_limit=5)
    assert ps.subscription(A, 1).credit == 3 and ps.subscription(A, 1).queue_limit == 3
    assert ps.subscription(A, 2).credit == 5


def fill(ps, count, topic="t"):
    """Publish `count` messages b"0", b"1", ...; returns all results."""
    return [ps.publish(topic, b"%d" % n, "p") for n in range(count)]


def test_drop_oldest_keeps_the_newest():
    ps = PubSub()
    ps.subscribe(A, 1, "t", queue_limit=3, credit=1)
    results = fill(ps, 6)  # 0 delivered, 1-3 queued, then 4 and 5 push out 1 and 2
    assert [len(r.deliveries) for r in results] == [1, 0, 0, 0, 0, 0]
    state = ps.subscription(A, 1)
    assert (state.queued, state.dropped, state.policy) == (3, 2, Policy.DROP_OLDEST)
    released = ps.grant(A, 1, 10)
    assert payloads(released) == [b"3", b"4", b"5"]
    assert [d.dropped for d in released] == [2, 2, 2]
    assert all(r.matched == 1 and not r.disconnected for r in results)


def test_drop_newest_keeps_what_is_queued():
    ps = PubSub()
    ps.subscribe(A, 1, "t", queue_limit=3, credit=1, policy=Policy.DROP_NEWEST)
    fill(ps, 6)
    assert ps.subscription(A, 1).dropped == 2
    released = ps.grant(A, 1, 10)
    assert payloads(released) == [b"1", b"2", b"3"]
    assert [d.dropped for d in released] == [2, 2, 2]
    # The counter rides on later deliveries too.
    assert ps.publish("t", b"later", "p").deliveries[0].dropped == 2


def test_dropped_is_the_count_when_handed_out():
    ps = PubSub()
    ps.subscribe(A, 1, "t", queue_limit=1, credit=1)
    assert ps.publish("t", b"0", "p").deliveries[0].dropped == 0
    fill(ps, 3)  # queue holds one: two dropped
    [delivery] = ps.grant(A, 1, 1)
    assert delivery.dropped == 2 and delivery.payload == b"2"


def test_disconnect_reports_and_removes_the_slow_consumer():
    ps = PubSub()
    ps.subscribe(A, 1, "t", queue_limit=2, credit=1, policy=Policy.DISCONNECT)
    ps.subscribe(B, 1, "t")
    results = fill(ps, 3)
    assert all(not r.disconnected for r in results)
    assert ps.subscription(A, 1).queued == 2
    result = ps.publish("t", b"3", "p")
    assert result.matched == 2
    [gone] = result.disconnected
    assert isinstance(gone, Disconnect) and (gone.owner, gone.subscription_id) == (A, 1)
    assert gone.reason.startswith("slow consumer: subscription 1 (pattern 't')")
    assert "queue limit" in gone.reason
    assert [(d.owner, d.payload) for d in result.deliveries] == [(B, b"3")]
    assert len(ps) == 1 and ps.unsubscribe(A, 1) is False and ps.grant(A, 1, 5) == []
    assert ps.publish("t", b"4", "p").matched == 1
    assert ps._index.match("t") == [(B, 1)]


def test_unsubscribe_stops_delivery_and_frees_the_queue():
    ps = PubSub()
    ps.subscribe(A, 1, "t", credit=1)
    ps.subscribe(A, 2, "t")
    fill(ps, 5)
    assert ps.subscription(A, 1).queued == 4
    assert ps.unsubscribe(A, 1) is True
    assert ps.unsubscribe(A, 1) is False
    with pytest.raises(KeyError, match="no subscription 1 for owner 'conn-a'"):
        ps.subscription(A, 1)
    result = ps.publish("t", b"x", "p")
    assert result.matched == 1 and [d.subscription_id for d in result.deliveries] == [2]
    ps.subscribe(A, 1, "t")  # the id may be reused
    assert ps.subscription(A, 1).queued == 0


def test_drop_owner_removes_all_its_subscriptions():
    ps = PubSub()
    for sid in range(3):
        ps.subscribe(A, sid, "t.>", credit=1)
    ps.subscribe(B, 0, "t.>")
    fill(ps, 4, "t.x")
    assert ps.drop_owner(A) == 3
    assert ps.drop_owner(A) == 0 and ps.drop_owner("never") == 0
    assert [(s.owner, s.subscription_id) for s in ps.subscriptions()] == [(B, 0)]
    assert [d.owner for d in ps.publish("t.x", b"y", "p").deliveries] == [B]
    assert A not in ps._owners and len(ps._index) == 1


def test_everything_freed_when_all_subscriptions_go():
    ps = PubSub()
    ps.subscribe(A, 1, "a.*.c", credit=1)
    ps.subscribe(B, 1, "a.>", credit=1, policy=Policy.DISCONNECT, queue_limit=1)
    fill(ps, 3, "a.b.c")
    ps.drop_owner(A)
    assert ps.subscriptions() == [] and len(ps) == 0
    assert ps._subs == {} and ps._owners == {} and ps._index._node_count() == 0
    assert ps.forget_publisher("p") is True and ps.forget_publisher("p") is False
    assert ps._publishers == {}


def test_subscribe_errors():
    ps = PubSub(default_queue_limit=10, max_queue_limit=100, max_subscriptions_per_owner=2)
    ps.subscribe(A, 1, "t")
    with pytest.raises(ValueError,
                       match=r"subscription id 1 is already in use by this owner \(pattern 't'\)"):
        ps.subscribe(A, 1, "u")
    with pytest.raises(TopicError, match=r"pattern 'a\.>\.b'"):
        ps.subscribe(A, 2, "a.>.b")
    with pytest.raises(ValueError, match="queue_limit 101 for subscription 2 is out of range: it must be "
                                         "between 1 and 100"):
        ps.subscribe(A, 2, "t", queue_limit=101)
    with pytest.raises(ValueError, match="queue_limit -1 for subscription 2"):
        ps.subscribe(A, 2, "t", queue_limit=-1)
    with pytest.raises(ValueError, match="credit -3 for subscription 2 is negative"):
        ps.subscribe(A, 2, "t", credit=-3)
    with pytest.raises(ValueError, match="policy must be a Policy, got 4"):
        ps.subscribe(A, 2, "t", policy=4)  # type: ignore[arg-type]
    assert len(ps) == 1  # nothing half-added
    ps.subscribe(A, 2, "t", queue_limit=100)
    with pytest.raises(TooManySubscriptions, match="would exceed the limit of 2 subscriptions"):
        ps.subscribe(A, 3, "t")
    ps.subscribe(B, 3, "t")  # the limit is per owner
    ps.unsubscribe(A, 1)
    ps.subscribe(A, 3, "t")
    with pytest.raises(ValueError, match="credit grant of -1 items for subscription 3 is negative"):
        ps.grant(A, 3, -1)


def test_constructor_limits_are_checked():
    with pytest.raises(ValueError, match="default_queue_limit must be between 1 and max_queue_limit"):
        PubSub(default_queue_limit=10, max_queue_limit=5)
    with pytest.raises(ValueError, match="max_subscriptions_per_owner must be at least 1, got 0"):
        PubSub(max_subscriptions_per_owner=0)


def test_bad_topic_is_refused_before_anything_changes():
    ps = PubSub()
    ps.subscribe(A, 1, ">")
    with pytest.raises(TopicError, match=r"topic 'a\.\*'"):
        ps.publish("a.*", b"x", "p")
    with pytest.raises(TopicError, match="topic is empty"):
        ps.publish("", b"x", "p")
    assert ps.publish("a", b"x", "p").publisher_seq == 1  # no number was spent


def test_publisher_seq_counts_per_publisher():
    ps = PubSub()
    ps.subscribe(A, 1, ">")
    seen = [(d.publisher, d.publisher_seq)
            for pub, topic in [("p", "a"), ("q", "b"), ("p", "c.d"), ("p", "a"), ("q", "a")]
            for d in ps.publish(topic, b"", pub).deliveries]
    assert seen == [("p", 1), ("q", 1), ("p", 2), ("p", 3), ("q", 2)]
    ps.forget_publisher("p")
    assert ps.publish("a", b"", "p").publisher_seq == 1
    assert ps.publish("a", b"", "q").publisher_seq == 3


def test_subscription_state_is_a_snapshot():
    ps = PubSub()
    ps.subscribe(A, 1, "a.*", queue_limit=4, credit=2, policy=Policy.DROP_NEWEST)
    state = ps.subscription(A, 1)
    assert state == SubscriptionState(A, 1, "a.*", 4, Policy.DROP_NEWEST, 2, 0, 0)
    ps.publish("a.b", b"", "p")
    assert state.credit == 2 and ps.subscription(A, 1).credit == 1


# ------------------------------------------------------------ properties

SUBS = [  # (owner, id, pattern, queue_limit, policy)
    (A, 1, "t.>", 3, Policy.DROP_OLDEST),
    (A, 2, "t.x", 2, Policy.DROP_NEWEST),
    (B, 1, "t.*", 4, Policy.DISCONNECT),
    (B, 2, ">", 1, Policy.DROP_OLDEST),
]

operations = st.lists(st.one_of(
    st.tuples(st.just("publish"), st.sampled_from(["t.x", "t.y", "u"]), st.sampled_from(["p", "q"])),
    st.tuples(st.just("grant"), st.integers(0, len(SUBS) - 1), st.integers(0, 3)),
), max_size=80)


@settings(max_examples=300, deadline=None)
@given(operations, st.lists(st.integers(0, 3), min_size=len(SUBS), max_size=len(SUBS)))
def test_any_interleaving_delivers_a_subsequence_in_order(ops, credits):
    ps = PubSub()
    for (owner, sid, pattern, limit, policy), credit in zip(SUBS, credits):
        ps.subscribe(owner, sid, pattern, queue_limit=limit, policy=policy, credit=credit)
    published = []  # every message, in publish order: (topic, publisher, seq)
    received = {(owner, sid): [] for owner, sid, *_ in SUBS}
    last_seq = {}
    gone = set()

    def take(deliveries):
        for d in deliveries:
            key = (d.owner, d.subscription_id)
            assert key not in gone
            received[key].append((d.topic, d.publisher, d.publisher_seq))
            assert d.payload == b"%s:%d" % (d.publisher.encode(), d.publisher_seq)
            assert d.dropped == ps.subscription(*key).dropped

    for op in ops:
        if op[0] == "publish":
            _, topic, publisher = op
            result = ps.publish(topic, b"%s:%d" % (publisher.encode(), last_seq.get(publisher, 0) + 1),
                                publisher)
            assert result.publisher_seq == last_seq.get(publisher, 0) + 1
            last_seq[publisher] = result.publisher_seq
            published.append((topic, publisher, result.publisher_seq))
            take(result.deliveries)
            for owner, sid, reason in result.disconnected:
                assert reason.startswith("slow consumer: ")
                gone.add((owner, sid))
        else:
            _, index, items = op
            owner, sid = SUBS[index][:2]
            take(ps.grant(owner, sid, items))
        for state in ps.subscriptions():
            assert state.queued <= state.queue_limit
            assert state.queued == 0 or state.credit == 0

    for owner, sid, pattern, *_ in SUBS:
        key = (owner, sid)
        got = received[key]
        assert len(set(got)) == len(got)  # no duplicates
        wanted = [m for m in published if matches(pattern, m[0])]
        it = iter(wanted)
        assert all(m in it for m in got)  # a subsequence of publish order
        if key not in gone:
            state = ps.subscription(owner, sid)
            # Nothing vanished unaccounted: delivered + queued + dropped == matched.
            assert len(got) + state.queued + state.dropped == len(wanted)
            if state.dropped == 0:  # nothing lost: a prefix, the rest still queued
                assert got == wanted[:len(got)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["t.x", "t.y", "u.v"]), st.sampled_from(["p", "q", "r"])),
                max_size=60),
       st.lists(st.integers(0, 5), max_size=60))
def test_enough_credit_delivers_everything_exactly_once(messages, grants):
    ps = PubSub()
    limit = len(messages) + 1  # the queue can never fill: no policy ever trips
    ps.subscribe(A, 1, "t.*", queue_limit=limit, credit=1, policy=Policy.DISCONNECT)
    ps.subscribe(B, 1, ">", queue_limit=limit, credit=1, policy=Policy.DROP_NEWEST)
    got = {A: [], B: []}
    grants = iter(grants)
    for topic, publisher in messages:
        result = ps.publish(topic, topic.encode(), publisher)
        assert not result.disconnected
        for d in result.deliveries:
            got[d.owner].append((topic, publisher, d.publisher_seq))
        for owner in (A, B):
            for d in ps.grant(owner, 1, next(grants, 0)):
                got[d.owner].append((d.topic, d.publisher, d.publisher_seq))
    for owner in (A, B):
        for d in ps.grant(owner, 1, limit):
            got[owner].append((d.topic, d.publisher, d.publisher_seq))

    seqs = {}
    published = []
    for topic, publisher in messages:
        seqs[publisher] = seqs.get(publisher, 0) + 1
        published.append((topic, publisher, seqs[publisher]))
    assert got[A] == [m for m in published if m[0].startswith("t.")]
    assert got[B] == published
    assert all(s.dropped == 0 and s.queued == 0 for s in ps.subscriptions())


# ------------------------------------------------------------ bytes (issue 10)

def kib(n, fill=b"x"):
    return fill * (n * 1024)


def test_queues_are_bounded_in_bytes_drop_oldest_makes_room_for_the_new_one():
    ps = PubSub(max_queue_bytes=10 * 1024)
    ps.subscribe(A, 1, "t", queue_limit=100, credit=1)
    ps.publish("t", b"first", "p")  # within credit
    for n in range(3):
        assert ps.publish("t", kib(3, b"%d" % n), "p").dropped == 0
    # 12 KiB would be queued: the oldest go until the new one fits.
    result = ps.publish("t", kib(3, b"3"), "p")
    assert result.dropped == 1 and not result.disconnected
    state = ps.subscription(A, 1)
    assert (state.queued, state.queued_bytes, state.dropped) == (3, 9 * 1024, 1)
    assert ps.budget.used == 9 * 1024
    # A bigger one pushes out as many as it takes.
    assert ps.publish("t", kib(7, b"4"), "p").dropped == 2
    released = ps.grant(A, 1, 10)
    assert [d.payload[:1] for d in released] == [b"3", b"4"]
    assert [d.dropped for d in released] == [3, 3]
    assert ps.subscription(A, 1).queued_bytes == 0 and ps.budget.used == 0


def test_bytes_bound_with_drop_newest_and_disconnect():
    ps = PubSub(max_queue_bytes=4 * 1024)
    ps.subscribe(A, 1, "t", queue_limit=100, credit=1, policy=Policy.DROP_NEWEST)
    ps.subscribe(B, 1, "t", queue_limit=100, credit=1, policy=Policy.DISCONNECT)
    ps.publish("t", b"delivered", "p")
    results = [ps.publish("t", kib(1, b"%d" % n), "p") for n in range(5)]
    assert [r.dropped for r in results] == [0, 0, 0, 0, 1]
    [gone] = results[4].disconnected
    assert gone.owner == B and gone.subscription_id == 1
    assert gone.reason == ("slow consumer: subscription 1 (pattern 't') has 4096 bytes waiting for "
                           "credit and a message of 1024 bytes would exceed its limit of 4096 "
                           "bytes, and its policy is DISCONNECT")
    assert [d.payload[:1] for d in ps.grant(A, 1, 10)] == [b"0", b"1", b"2", b"3"]
    assert ps.budget.used == 0  # the disconnected queue gave its bytes back


def test_a_message_larger_than_the_bound_is_queued_alone():
    ps = PubSub(max_queue_bytes=1024)
    ps.subscribe(A, 1, "t", credit=1)
    ps.publish("t", b"delivered", "p")
    assert ps.publish("t", kib(5), "p").dropped == 0  # an empty queue takes it
    assert ps.subscription(A, 1).queued_bytes == 5 * 1024
    assert ps.publish("t", b"small", "p").dropped == 1  # and it goes first
    assert payloads(ps.grant(A, 1, 5)) == [b"small"]


def test_the_count_bound_still_applies_to_small_messages():
    ps = PubSub(max_queue_bytes=1 << 20)
    ps.subscribe(A, 1, "t", queue_limit=2, credit=1, policy=Policy.DISCONNECT)
    results = fill(ps, 4)
    [gone] = results[3].disconnected
    assert "has 2 messages waiting for credit, its queue limit (queue_limit)" in gone.reason


def test_a_shared_budget_bounds_all_queues_of_every_method():
    budget = ByteBudget(10 * 1024)
    one, two = PubSub(budget=budget), PubSub(budget=budget)
    one.subscribe(A, 1, "t", credit=1)
    two.subscribe(B, 1, "t", credit=1, policy=Policy.DISCONNECT)
    two.subscribe(B, 2, "t", credit=1, policy=Policy.DROP_NEWEST)
    one.publish("t", b"", "p")
    two.publish("t", b"", "p")
    for n in range(8):
        one.publish("t", kib(1, b"%d" % n), "p")
    assert budget.used == 8 * 1024
    # The other method's queues: 2 KiB left between them.
    assert two.publish("t", kib(1), "p").disconnected == []
    result = two.publish("t", kib(1), "p")
    [gone] = result.disconnected  # DISCONNECT: as if its own queue were full
    assert gone.owner == B and gone.subscription_id == 1
    assert ("the server's subscription queues hold 10240 bytes, and their limit is "
            "10240 bytes") in gone.reason
    # B/1 gave back its KiB, in time for B/2.
    assert result.dropped == 0 and budget.used == 10 * 1024
    assert two.publish("t", kib(1), "p").dropped == 1  # DROP_NEWEST: the new one
    assert two.subscription(B, 2).queued == 2
    # DROP_OLDEST drops its own oldest to make room ...
    assert one.publish("t", kib(2, b"8"), "p").dropped == 2
    assert budget.used == 10 * 1024
    assert payloads(one.grant(A, 1, 1)) == [kib(1, b"2")]
    # ... but when emptying its own queue would not be enough, only the new one.
    three = PubSub(budget=budget)
    three.subscribe(A, 9, "t", credit=1)
    three.publish("t", b"", "p")
    three.publish("t", kib(1), "p")
    assert three.publish("t", kib(3), "p").dropped == 1
    assert three.subscription(A, 9).queued == 1
    # Everything removed gives its bytes back.
    one.drop_owner(A)
    two.drop_owner(B)
    three.unsubscribe(A, 9)
    assert budget.used == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3000), st.integers(0, 3)),
                max_size=60))
def test_queued_bytes_never_pass_their_bounds(steps):
    budget = ByteBudget(6000)
    ps = PubSub(max_queue_bytes=2500, budget=budget)
    for sid, policy in enumerate((Policy.DROP_OLDEST, Policy.DROP_NEWEST, Policy.DISCONNECT)):
        ps.subscribe(A, sid, "t", queue_limit=4, credit=1, policy=policy)
    for who, size, grant in steps:
        ps.publish("t", b"x" * size, "p")
        if grant:
            ps.grant(A, who, grant)
        states = ps.subscriptions()
        assert budget.used == sum(s.queued_bytes for s in states) <= budget.limit
        for s in states:
            assert s.queued <= s.queue_limit
            assert s.queued_bytes <= 2500 or s.queued == 1


# ------------------------------------------------------------- block


def test_block_queues_past_the_limit_and_reports_who_is_held():
    ps = PubSub()
    ps.subscribe(A, 1, ">", queue_limit=2, policy=Policy.BLOCK_PUBLISHER, credit=1)
    ps.subscribe(B, 1, ">", queue_limit=2, policy=Policy.DROP_OLDEST, credit=1)
    results = [ps.publish("t", bytes([i]), "pub") for i in range(5)]
    assert [r.blocked for r in results] == [(), (), (), ((A, 1),), ((A, 1),)]
    assert ps.over_limit(A, 1) and not ps.over_limit(B, 1)
    assert ps.subscription(A, 1).queued == 4 and ps.subscription(A, 1).dropped == 0
    assert ps.held("t") == [(A, 1)] and ps.held("other.topic") == [(A, 1)]
    assert ps.blocking(A) == [1] and ps.blocking(B) == []
    # Credit brings it back within its limit: nothing was lost, in order.
    assert payloads(ps.grant(A, 1, 2)) == [b"\x01", b"\x02"]
    assert not ps.over_limit(A, 1) and ps.held("t") == []
    assert payloads(ps.grant(A, 1, 10)) == [b"\x03", b"\x04"]


def test_block_counts_bytes_and_the_shared_budget_too():
    budget = ByteBudget(1000)
    ps = PubSub(max_queue_bytes=300, budget=budget)
    ps.subscribe(A, 1, "a", queue_limit=100, policy=Policy.BLOCK_PUBLISHER, credit=1)
    ps.publish("a", b"x", "pub")  # within credit
    assert [ps.publish("a", b"y" * 200, "pub").blocked for _ in range(2)] == [(), ((A, 1),)]
    assert ps.over_limit(A, 1)
    ps.grant(A, 1, 1)
    assert not ps.over_limit(A, 1)
    ps.subscribe(B, 1, "b", queue_limit=100, policy=Policy.BLOCK_PUBLISHER, credit=1)
    ps.publish("b", b"", "pub")
    for _ in range(4):
        ps.publish("b", b"z" * 250, "pub")  # the budget runs out at the 4th
    assert budget.used > budget.limit and ps.over_limit(B, 1)
    ps.unsubscribe(B, 1)
    assert budget.used == 200 and not ps.over_limit(B, 1)


def test_an_unknown_or_empty_subscription_is_not_over_its_limit():
    ps = PubSub()
    assert not ps.over_limit(A, 9) and ps.blocking(A) == []


def test_totals_count_deliveries_and_drops_by_pattern_and_outlive_subscriptions():
    ps = PubSub()
    assert ps.totals() == {}
    ps.subscribe(A, 1, "t.*", queue_limit=2, credit=1, policy=Policy.DROP_NEWEST)
    ps.subscribe(B, 1, "t.*")
    ps.subscribe(B, 2, "t.x")
    for i in range(5):
        ps.publish("t.x", b"%d" % i, "p")
    # A: one delivered on credit, two queued, two dropped; B's: all five each.
    assert ps.totals() == {"t.*": (6, 2), "t.x": (5, 0)}
    assert len(ps.grant(A, 1, 1)) == 1
    assert ps.totals()["t.*"] == (7, 2)
    ps.unsubscribe(A, 1)   # its queued one is neither delivered nor dropped
    ps.drop_owner(B)
    assert ps.totals() == {"t.*": (7, 2), "t.x": (5, 0)}
    ps.subscribe(A, 2, "t.*")
    ps.publish("t.y", b"y", "p")
    assert ps.totals() == {"t.*": (8, 2), "t.x": (5, 0)}


def test_totals_of_a_disconnected_subscription_stay():
    ps = PubSub()
    ps.subscribe(A, 1, "t", queue_limit=1, credit=1, policy=Policy.DISCONNECT)
    for i in range(3):
        ps.publish("t", b"m", "p")
    assert len(ps) == 0 and ps.totals() == {"t": (1, 0)}


def test_totals_keep_at_most_max_pattern_totals_patterns_apart():
    ps = PubSub()
    ps.max_pattern_totals = 3
    for i in range(10):
        ps.subscribe(A, i, f"p{i}.>")
        ps.publish(f"p{i}.x", b"m", "pub")
        ps.unsubscribe(A, i)
    ps.subscribe(B, 1, "p1.>")  # counted apart before: still apart
    ps.publish("p1.x", b"m", "pub")
    assert ps.totals() == {"p0.>": (1, 0), "p1.>": (2, 0), "p2.>": (1, 0), OTHER_PATTERNS: (7, 0)}
