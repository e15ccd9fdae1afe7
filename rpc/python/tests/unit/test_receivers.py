"""patterns.Receivers: the registry of subscriptions, consumers and broadcast
listeners that a peer and a server's broker each hold. No sockets, no
driver; the receivers are real ones without callbacks, so nothing spawns
and every wait is bounded."""
from __future__ import annotations

import pytest

from onedrive_rpc.core.pubsub import Policy
from onedrive_rpc.errors import PeerLost, RpcError, StatusCode
from onedrive_rpc.patterns import BroadcastListener, Consumer, Receivers, Subscription

METHOD = "/onedrive_rpc.testing.Echo/Announce"


def identity(payload):
    return payload


def subscription(sid, pattern="a.>"):
    return Subscription(sid, "/onedrive_rpc.testing.Echo/Changed", pattern, 8,
                        int(Policy.DROP_OLDEST), identity, None,
                        grant=lambda items: None, unsubscribe=lambda sub: None)


def consumer(cid):
    return Consumer(cid, "/onedrive_rpc.testing.Echo/Work", 1, identity,
                    handler=lambda task, context: None,
                    done=lambda task_id, code, message: None, withdraw=lambda c: None)


def listener(receivers, method=METHOD):
    heard = BroadcastListener(method, identity, None, receivers.unlisten)
    receivers.add_listener(heard)
    return heard


def test_subscriptions_by_id():
    receivers = Receivers()
    first, second = subscription(1), subscription(2)
    receivers.add_subscription(first)
    receivers.add_subscription(second)
    assert receivers.subscription(1) is first and receivers.subscription(3) is None
    assert receivers.subscriptions() == [first, second]
    with pytest.raises(ValueError, match="subscription id 1"):
        receivers.add_subscription(subscription(1))
    assert receivers.subscription(1) is first  # the refused one replaced nothing
    assert receivers.remove_subscription(1) is first
    assert receivers.remove_subscription(1) is None
    assert receivers.subscription(1) is None
    assert receivers.subscriptions() == [second]


def test_consumers_by_id():
    receivers = Receivers()
    first, second = consumer(1), consumer(2)
    receivers.add_consumer(first)
    receivers.add_consumer(second)
    assert receivers.consumer(2) is second and receivers.consumer(3) is None
    with pytest.raises(ValueError, match="consumer id 2"):
        receivers.add_consumer(consumer(2))
    assert receivers.remove_consumer(2) is second
    assert receivers.remove_consumer(2) is None
    assert receivers.consumers() == [first]


def test_the_lists_are_snapshots():
    receivers = Receivers()
    receivers.add_subscription(subscription(1))
    receivers.add_consumer(consumer(1))
    subs, consumers = receivers.subscriptions(), receivers.consumers()
    for sub in subs:
        receivers.remove_subscription(sub.id)
    for each in consumers:
        receivers.remove_consumer(each.id)
    assert len(subs) == len(consumers) == 1
    assert receivers.subscriptions() == receivers.consumers() == []


def test_a_broadcast_reaches_the_listeners_of_its_method_in_order():
    receivers = Receivers()
    first, second = listener(receivers), listener(receivers)
    other = listener(receivers, "/onedrive_rpc.testing.Echo/Other")
    assert receivers.deliver_broadcast(METHOD, b"one", "peer-1") == 2
    assert receivers.deliver_broadcast(METHOD, b"two", "") == 2
    for heard in (first, second):
        assert [(r.message, r.publisher) for r in (heard.get(timeout=2), heard.get(timeout=2))] \
            == [(b"one", "peer-1"), (b"two", "")]
    assert len(other) == 0
    assert receivers.deliver_broadcast("/nobody.Listens/Here", b"x", "") == 0


def test_a_cancelled_listener_hears_nothing_more():
    receivers = Receivers()
    gone, kept = listener(receivers), listener(receivers)
    gone.cancel()  # calls receivers.unlisten
    assert receivers.deliver_broadcast(METHOD, b"after", "") == 1
    assert kept.get(timeout=2).message == b"after"
    with pytest.raises(RpcError) as raised:
        gone.get(timeout=2)
    assert raised.value.code == StatusCode.CANCELLED
    receivers.unlisten(gone)  # again, or never added: nothing happens
    receivers.unlisten(BroadcastListener(METHOD, identity, None, receivers.unlisten))
    assert receivers.deliver_broadcast(METHOD, b"again", "") == 1


def test_close_all_ends_every_receiver_once_with_its_own_copy_of_the_reason():
    receivers = Receivers()
    subs = [subscription(1), subscription(2)]
    for sub in subs:
        receivers.add_subscription(sub)
    heard = [listener(receivers), listener(receivers, "/onedrive_rpc.testing.Echo/Other")]
    workers = [consumer(1), consumer(2)]
    for each in workers:
        receivers.add_consumer(each)
    reason = PeerLost("the peer was closed")

    receivers.close_all(reason)

    raised = []
    for receiver in subs + heard:
        with pytest.raises(PeerLost) as caught:
            receiver.get(timeout=2)
        assert caught.value.message == "the peer was closed"
        raised.append(caught.value)
    assert len({id(exc) for exc in raised + [reason]}) == len(raised) + 1
    assert all(each.stopped for each in workers)
    assert receivers.subscriptions() == receivers.consumers() == []
    assert receivers.subscription(1) is None and receivers.consumer(1) is None
    assert receivers.deliver_broadcast(METHOD, b"late", "") == 0


def test_receivers_added_after_close_all_live_on():
    receivers = Receivers()
    receivers.close_all(RpcError(StatusCode.UNAVAILABLE, "the server stopped"))
    later = subscription(1)
    receivers.add_subscription(later)
    heard = listener(receivers)
    assert later.closed is None and heard.closed is None
    assert receivers.deliver_broadcast(METHOD, b"x", "") == 1


# --------------------------------------------- inboxes bounded in bytes (issue 10)

def test_a_listener_drops_the_oldest_past_its_bytes_and_keeps_a_big_one_alone():
    heard = BroadcastListener(METHOD, identity, None, lambda listener: None, queue_bytes=10)
    for payload in (b"aaaa", b"bbbb", b"cccc"):  # 12 bytes: a goes
        heard.deliver(payload, "origin")
    assert (len(heard), heard.queued_bytes, heard.dropped) == (2, 8, 1)
    heard.deliver(b"x" * 25, "origin")  # larger than the bound: alone
    assert (len(heard), heard.queued_bytes, heard.dropped) == (1, 25, 3)
    assert heard.get(timeout=1).message == b"x" * 25 and heard.queued_bytes == 0
    with pytest.raises(ValueError, match="queue_bytes must be at least 1"):
        BroadcastListener(METHOD, identity, None, lambda listener: None, queue_bytes=0)


def bounded_subscription(policy, granted, unsubscribed, queue_limit=8):
    return Subscription(1, "/onedrive_rpc.testing.Echo/Changed", "a.>", queue_limit, int(policy),
                        identity, None, grant=granted.append, unsubscribe=unsubscribed.append,
                        queue_bytes=10)


def test_a_subscription_past_its_bytes_drops_the_oldest_and_gives_their_credit_back():
    granted, unsubscribed = [], []
    sub = bounded_subscription(Policy.DROP_OLDEST, granted, unsubscribed, queue_limit=4)
    for n, payload in enumerate((b"aaaa", b"bbbb", b"cccc", b"dddd")):
        sub.deliver(payload, "a.b", "pub", n + 1, 0)
    assert (len(sub), sub.overflowed, sub.queued_bytes) == (2, 2, 8)
    # Two dropped count as consumed: taking one more reaches half the window.
    assert sub.get(timeout=1).message == b"cccc"
    assert granted == [3] and unsubscribed == []
    assert sub.get(timeout=1).message == b"dddd"


def test_a_subscription_past_its_bytes_with_drop_newest_keeps_what_waits():
    granted, unsubscribed = [], []
    sub = bounded_subscription(Policy.DROP_NEWEST, granted, unsubscribed, queue_limit=6)
    for n, payload in enumerate((b"aaaa", b"bbbb", b"cccc")):
        sub.deliver(payload, "a.b", "pub", n + 1, 0)
    assert [sub.get(timeout=1).message for _ in range(2)] == [b"aaaa", b"bbbb"]
    assert sub.overflowed == 1 and granted == [3]


def test_a_subscription_past_its_bytes_with_disconnect_ends():
    import gevent
    granted, unsubscribed = [], []
    sub = bounded_subscription(Policy.DISCONNECT, granted, unsubscribed)
    for n, payload in enumerate((b"aaaa", b"bbbb", b"cccc")):
        sub.deliver(payload, "a.b", "pub", n + 1, 0)
    assert sub.closed is not None and sub.closed.code == StatusCode.RESOURCE_EXHAUSTED
    assert "would exceed queue_bytes (10); its policy is DISCONNECT" in sub.closed.message
    with gevent.Timeout(1):
        while not unsubscribed:
            gevent.sleep(0.001)
    assert unsubscribed == [sub]
