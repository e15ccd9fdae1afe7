"""Authorization of every action over real connections (issue 11, part 4):
`rpc.Server(authorize=fn)` is asked for calls, streams, notifications,
publish, subscribe, produce, consume, broadcast, listen and reflection,
with the identity the peer proved; what it refuses gets PERMISSION_DENIED,
is logged, and changes nothing, and the server goes on serving everyone
else. Identities here come from an authenticate hook (a token in the
Hello's metadata), so every transport can carry two users."""
from __future__ import annotations

import logging

import gevent
import pytest
from gevent.event import Event

import onedrive_rpc as rpc
from onedrive_rpc import reflection
from onedrive_rpc.testing.echo_pb2 import Msg
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.helpers import wait_until

SERVICE = "/onedrive_rpc.testing.Echo"
DENIED = rpc.StatusCode.PERMISSION_DENIED


def by_token(peer, metadata):
    """The authenticate hook: the Hello's "user" entry is who it is."""
    user = metadata.get("user")
    return rpc.Identity("token", user) if user else None


class Rules:
    """authorize=: alice may do anything; mallory only what `allowed`
    holds, as (action, method name, target) with "*" for any target. Every
    question is kept, in order."""

    def __init__(self, *allowed):
        self.allowed = set(allowed)
        self.asked = []

    def __call__(self, identity, action, method, target):
        self.asked.append((identity.subject, action, method, target))
        name = method.rpartition("/")[2]
        return identity == rpc.Identity("token", "alice") or bool(
            {(action, name, target), (action, name, "*")} & self.allowed)


@pytest.fixture
def service():
    return EchoService()


@pytest.fixture
def serving(url, service, servers):
    """serving(rules, **options) -> a started server of `service`."""
    return lambda rules, **options: servers(
        url, service, authenticate=by_token, authorize=rules,
        heartbeat=rpc.Heartbeat(interval=0.2, misses=5), **options)


@pytest.fixture
def user(peers):
    def connect(server, name, **options):
        return peers(server.url, metadata={"user": name}, timeout=5, **options)
    return connect


def echo(endpoint):
    return rpc.Client(endpoint, ECHO)


def refused(call, *args, **kwargs) -> rpc.RpcError:
    with pytest.raises(rpc.RpcError) as raised:
        call(*args, **kwargs)
    assert raised.value.code == DENIED, raised.value
    return raised.value


def test_every_action_is_asked_with_the_proven_identity_its_method_and_target(serving, user):
    rules = Rules()
    server = serving(rules)
    alice, bob = echo(user(server, "alice")), echo(user(server, "bob-listens"))
    rules.allowed.add(("listen", "Announce", ""))
    heard = bob.announce.listen()
    got = alice.changed.subscribe("drive.>", timeout=5)
    assert alice.echo(Msg(text="hi"), timeout=5).text == "hi"
    assert [m.text for m in alice.count(Msg(count=2), timeout=5)] == ["0", "1"]
    alice.note(Msg(text="n"), confirm=True, timeout=5)
    alice.changed.publish("drive.a", Msg(text="p"), confirm=True, timeout=5)
    done = Event()
    consumer = alice.work.consume(lambda task, context: done.set(), timeout=5)
    alice.work.produce(Msg(text="t"), timeout=5)
    alice.announce.broadcast(Msg(text="b"), confirm=True, timeout=5)
    assert got.get(timeout=5).message.text == "p"
    assert heard.get(timeout=5).message.text == "b"
    assert done.wait(5)
    consumer.stop()
    path = SERVICE + "/"
    wait_until(lambda: len(rules.asked) >= 9, timeout=5)
    assert sorted(rules.asked) == sorted([
        ("alice", "subscribe", path + "Changed", "drive.>"),
        ("alice", "call", path + "Echo", ""),
        ("alice", "stream", path + "Count", ""),
        ("alice", "notify", path + "Note", ""),
        ("alice", "publish", path + "Changed", "drive.a"),
        ("alice", "consume", path + "Work", path + "Work"),
        ("alice", "produce", path + "Work", path + "Work"),
        ("alice", "broadcast", path + "Announce", ""),
        ("bob-listens", "listen", path + "Announce", ""),
    ])


def test_refused_calls_streams_and_notifications_do_nothing_and_others_go_on(
        serving, user, service, caplog):
    server = serving(Rules(("call", "Stats", "")))
    mallory, alice = echo(user(server, "mallory")), echo(user(server, "alice"))
    caplog.set_level(logging.WARNING, logger="onedrive_rpc")
    error = refused(mallory.echo, Msg(text="x"), timeout=5)
    assert error.message == f"permission denied: token 'mallory' may not call {SERVICE}/Echo"
    refused(lambda: list(mallory.count(Msg(count=3), timeout=5)))
    mallory.note(Msg(text="sneaky"), confirm=True, timeout=5)
    refused(mallory.fail, Msg(text="x"), timeout=5)
    # What mallory may do, it can; alice is served throughout.
    assert mallory.stats(Msg(), timeout=5)
    assert alice.echo(Msg(text="still"), timeout=5).text == "still"
    alice.note(Msg(text="fine"), confirm=True, timeout=5)
    wait_until(lambda: service.notes["fine"] == 1, timeout=5)
    assert service.notes["sneaky"] == 0 and service.calls["echo"] == 1
    assert service.items_sent == 0
    logged = caplog.text
    assert f"permission denied: token 'mallory' may not call {SERVICE}/Echo" in logged


def test_refused_publish_and_subscribe_deliver_nothing(serving, user, service):
    server = serving(Rules(("subscribe", "Changed", "public.>"),
                           ("publish", "Changed", "public.news")))
    alice, mallory = echo(user(server, "alice")), echo(user(server, "mallory"))
    watching = alice.changed.subscribe(">", timeout=5)
    error = refused(mallory.changed.subscribe, "private.>", timeout=5)
    assert error.message == (f"permission denied: token 'mallory' may not subscribe "
                             f"{SERVICE}/Changed (pattern 'private.>')")
    error = refused(mallory.changed.publish, "private.x", Msg(text="forged"), confirm=True,
                    timeout=5)
    assert "may not publish" in error.message and "(topic 'private.x')" in error.message
    mallory.changed.publish("private.y", Msg(text="forged, unconfirmed"))
    allowed = mallory.changed.subscribe("public.>", timeout=5)
    mallory.changed.publish("public.news", Msg(text="ok"), confirm=True, timeout=5)
    alice.changed.publish("private.z", Msg(text="secret"), confirm=True, timeout=5)
    alice.changed.publish("public.news", Msg(text="after"), confirm=True, timeout=5)
    assert [watching.get(timeout=5).message.text for _ in range(3)] == ["ok", "secret", "after"]
    assert [allowed.get(timeout=5).message.text for _ in range(2)] == ["ok", "after"]
    assert len(watching) == 0 and len(allowed) == 0


def test_refused_produce_and_consume_touch_no_queue(serving, user):
    server = serving(Rules())
    alice, mallory = echo(user(server, "alice")), echo(user(server, "mallory"))
    error = refused(mallory.work.produce, Msg(text="forged"), timeout=5)
    assert error.message == f"permission denied: token 'mallory' may not produce {SERVICE}/Work"
    refused(mallory.work.consume, lambda task, context: None, timeout=5)
    stats = server.queue_stats(SERVICE + "/Work")
    assert (stats.produced, stats.consumers) == (0, 0)
    tasks = []
    consumer = alice.work.consume(lambda task, context: tasks.append(task.text), timeout=5)
    alice.work.produce(Msg(text="real"), timeout=5)
    wait_until(lambda: tasks == ["real"], timeout=5)
    consumer.stop()


def test_a_peer_not_allowed_to_listen_hears_no_broadcast_and_one_not_allowed_to_send_sends_none(
        serving, user):
    server = serving(Rules())
    alice, mallory = echo(user(server, "alice")), echo(user(server, "mallory"))
    alice_hears, mallory_hears = alice.announce.listen(), mallory.announce.listen()
    refused(mallory.announce.broadcast, Msg(text="forged"), confirm=True, timeout=5)
    mallory.announce.broadcast(Msg(text="forged, unconfirmed"))
    # From the server itself too: only the peers that may listen count.
    assert echo(server).announce.broadcast(Msg(text="from the server")) == 1
    user(server, "bob")  # a peer connected later is asked afresh
    assert echo(server).announce.broadcast(Msg(text="again")) == 1
    assert [alice_hears.get(timeout=5).message.text for _ in range(2)] == [
        "from the server", "again"]
    refused(mallory.echo, Msg(), timeout=5)  # a round trip: what was sent to mallory is in
    assert len(mallory_hears) == 0 and len(alice_hears) == 0


def test_unknown_methods_and_reflection_are_refused_before_they_tell_anything(serving, user):
    server = serving(Rules(), reflection=True)
    mallory = user(server, "mallory")
    error = refused(mallory.call, "/secret.Admin/Wipe", b"", Msg.FromString, 5)
    assert "secret.Admin" in error.message and "onedrive_rpc.testing.Echo" not in error.message
    refused(reflection.list_services, mallory)
    listed = reflection.list_services(user(server, "alice"))
    assert "onedrive_rpc.testing.Echo" in listed.services


def test_a_failing_authorize_hook_refuses_and_says_so_in_the_log(serving, user, caplog):
    def hook(identity, action, method, target):
        if identity.subject == "mallory":
            raise KeyError("no such user in the policy table")
        if identity.subject == "eve":
            raise rpc.RpcError(rpc.StatusCode.UNAUTHENTICATED, "token expired")
        return True

    server = serving(hook)
    caplog.set_level(logging.WARNING, logger="onedrive_rpc")
    refused(echo(user(server, "mallory")).echo, Msg(), timeout=5)
    assert "the authorize hook failed" in caplog.text and "KeyError" in caplog.text
    with pytest.raises(rpc.RpcError) as expired:
        echo(user(server, "eve")).echo(Msg(), timeout=5)
    assert (expired.value.code, expired.value.message) == (
        rpc.StatusCode.UNAUTHENTICATED, "token expired")
    assert echo(user(server, "alice")).echo(Msg(text="ok"), timeout=5).text == "ok"


def test_a_resumed_session_keeps_its_identity_and_its_refusals(url, serving, user):
    from onedrive_rpc.testing.faults import FaultProxy
    if not url.startswith("tcp://"):
        pytest.skip("the fault proxy cuts tcp")
    server = serving(Rules(), session_grace=5.0)
    with FaultProxy(server.url) as proxy:
        resumed = Event()
        peer = user(proxy, "mallory")
        peer.on_resumed(lambda session_id: resumed.set())
        mallory = echo(peer)
        refused(mallory.echo, Msg(), timeout=5)
        proxy.cut()
        assert resumed.wait(10)
        refused(mallory.echo, Msg(), timeout=5)


def test_a_blocking_authorize_hook_does_not_stall_other_peers(serving, user):
    """authorize runs in a handler's greenlet for calls: one slow answer
    holds only that call."""
    slow = Event()

    def hook(identity, action, method, target):
        if identity.subject == "slow":
            slow.wait(10)
        return True

    server = serving(hook)
    waiting = gevent.spawn(echo(user(server, "slow")).echo, Msg(text="late"), timeout=10)
    others = echo(user(server, "alice"))
    assert others.echo(Msg(text="now"), timeout=5).text == "now"
    assert not waiting.ready()
    slow.set()
    assert waiting.get(timeout=5).text == "late"
