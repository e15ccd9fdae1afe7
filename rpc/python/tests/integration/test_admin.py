"""The admin service (issue 14, part 2): what `rpc.Server(url, admin=True)`
tells of its peers, sessions, subscriptions and queues, the actions it
takes (replay, disconnect), and who may use it."""
from __future__ import annotations

import collections
import os

import gevent
import pytest
from gevent.event import AsyncResult, Event

import onedrive_rpc as rpc
from onedrive_rpc.admin import ADMIN
from onedrive_rpc.admin_pb2 import (AdminListRequest, DeadLettersRequest, DisconnectRequest,
                                    ReplayRequest)
from onedrive_rpc.testing.echo_pb2 import Msg
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.faults import FaultProxy
from onedrive_rpc.testing.helpers import wait_until

WORK = "/onedrive_rpc.testing.Echo/Work"
CHANGED = "/onedrive_rpc.testing.Echo/Changed"
LIST = AdminListRequest()
HB = rpc.Heartbeat(interval=0.2, misses=3)


@pytest.fixture
def unix_server(servers, tmp_path):
    """An Echo server with the admin service on a unix socket: the kernel
    tells who connects, so the admin service answers this process."""
    return servers(f"unix://{tmp_path}/admin.sock", EchoService(), admin=True, heartbeat=HB,
                   session_grace=5.0)


def admin(peer):
    return rpc.Client(peer, ADMIN)


def test_peers_tells_who_is_connected_and_what_it_is_doing(unix_server, peers):
    tray = peers(unix_server.url, name="tray")
    sleeping = rpc.Client(tray, ECHO).sleep.future(Msg(delay=5.0), timeout=10)
    operator = admin(peers(unix_server.url, name="operator"))
    wait_until(lambda: any(p.calls_in_flight for p in operator.peers(LIST).peers))
    by_name = {p.name: p for p in operator.peers(LIST).peers}
    assert set(by_name) == {"tray", "operator"}
    seen = by_name["tray"]
    assert seen.session_id == tray.session_id
    assert seen.pid == os.getpid() and seen.uid == os.getuid()
    assert seen.identity == f"unix uid {os.getuid()}"
    assert seen.transport == "unix" and seen.state == "connected"
    assert seen.calls_in_flight == 1 and seen.calls_received == 1
    assert seen.bytes_in > 0 and seen.heartbeat_interval == pytest.approx(0.2)
    assert 0 <= seen.last_heard < 5 and not seen.HasField("grace_left")
    sleeping.cancel()


def test_sessions_show_a_suspended_session_with_its_grace_then_its_resume(servers, peers):
    server = servers("tcp://127.0.0.1:0", EchoService(), admin=True, heartbeat=HB,
                     session_grace=5.0, authorize=lambda *_: True)
    proxy = FaultProxy(server.url).start()
    try:
        resumed = AsyncResult()
        lost = Event()
        server.on_peer_lost(lambda peer, reason: lost.set())
        uploader = peers(proxy.url, name="uploader", heartbeat=HB, timeout=0.5)
        uploader.on_resumed(resumed.set)
        operator = admin(peers(server.url))
        proxy.blackhole()  # reconnects get nowhere...
        proxy.cut()
        assert lost.wait(5)
        [suspended] = [p for p in operator.sessions(LIST).peers if p.name == "uploader"]
        assert suspended.state == "suspended" and 0 < suspended.grace_left <= 5.0
        assert "uploader" not in {p.name for p in operator.peers(LIST).peers}
        proxy.heal()
        assert resumed.get(timeout=10) == uploader.session_id
        [back] = [p for p in operator.peers(LIST).peers if p.name == "uploader"]
        assert back.state == "connected" and back.resumes == 1
        assert back.session_id == suspended.session_id
    finally:
        proxy.stop()


def test_subscriptions_show_pattern_policy_queued_and_dropped(unix_server, peers):
    subscriber = peers(unix_server.url, name="watcher")
    release = Event()
    subscription = rpc.Client(subscriber, ECHO).changed.subscribe(
        "drive.>", lambda received: release.wait(10), queue_limit=2, policy="drop_newest",
        timeout=5)
    publisher = rpc.Client(peers(unix_server.url), ECHO)
    for i in range(50):
        publisher.changed.publish(f"drive.{i}", Msg(text=str(i)), confirm=True, timeout=5)
    operator = admin(peers(unix_server.url))
    [seen] = operator.subscriptions(LIST).subscriptions
    assert operator.subscriptions(LIST).total == 1
    assert (seen.method, seen.pattern, seen.peer, seen.session_id) == (
        CHANGED, "drive.>", "watcher", subscriber.session_id)
    assert seen.policy == "drop_newest" and seen.queue_limit == 2
    assert seen.dropped > 0 and seen.queued <= 2
    release.set()
    subscription.cancel()


def test_queues_dead_letters_and_replay(unix_server, peers):
    healed = Event()
    attempts = collections.defaultdict(list)

    def handle(task, context):
        attempts[task.text].append(context.attempt)
        if task.text == "poison" and not healed.is_set():
            raise RuntimeError("cannot digest")

    unix_server.configure_queue(WORK, max_attempts=2)
    echo = rpc.Client(peers(unix_server.url), ECHO)
    echo.work.consume(handle, timeout=5)
    echo.work.produce(Msg(text="fine"), timeout=5)
    echo.work.produce(Msg(text="poison"), timeout=5)
    operator = admin(peers(unix_server.url))
    wait_until(lambda: operator.queues(LIST).queues[0].dead_letters == 1)
    [queue] = operator.queues(LIST).queues
    assert (queue.method, queue.consumers, queue.produced, queue.failed_attempts) == (WORK, 1, 2, 2)
    letters = operator.dead_letters(DeadLettersRequest(queue=WORK.lstrip("/"), payloads=True))
    [letter] = letters.dead_letters
    assert letters.total == 1 and letter.queue == WORK and letter.attempts == 2
    assert "cannot digest" in letter.last_error
    assert Msg.FromString(letter.payload).text == "poison"
    assert letter.payload_size == len(letter.payload)
    assert operator.dead_letters(DeadLettersRequest()).dead_letters[0].payload == b""
    with pytest.raises(rpc.RpcError) as info:
        operator.replay(ReplayRequest(queue=WORK, task_ids=[letter.task_id + 1000]))
    assert info.value.code == rpc.StatusCode.NOT_FOUND
    with pytest.raises(rpc.RpcError) as info:
        operator.replay(ReplayRequest(queue="no.Such/Queue"))
    assert info.value.code == rpc.StatusCode.NOT_FOUND
    healed.set()
    assert operator.replay(ReplayRequest(queue=WORK, task_ids=[letter.task_id])).replayed == 1
    wait_until(lambda: attempts["poison"] == [1, 2, 1])
    wait_until(lambda: operator.queues(LIST).queues[0].completed == 2)
    assert operator.dead_letters(DeadLettersRequest()).total == 0


def test_subscriptions_listed_up_to_the_limit_of_how_many_there_are(unix_server, peers):
    echo = rpc.Client(peers(unix_server.url), ECHO)
    for i in range(30):
        echo.changed.subscribe(f"drive.{i}.>", lambda received: None, timeout=5)
    operator = admin(peers(unix_server.url))
    listed = operator.subscriptions(AdminListRequest(limit=7))
    assert len(listed.subscriptions) == 7 and listed.total == 30
    assert [s.pattern for s in listed.subscriptions] == [f"drive.{i}.>" for i in range(7)]
    assert unix_server.inspect(subscription_limit=0).subscription_count == 30


def test_dead_letters_listed_up_to_the_limit(unix_server, peers):
    unix_server.configure_queue(WORK, max_attempts=1)
    echo = rpc.Client(peers(unix_server.url), ECHO)

    def fail(task, context):
        raise RuntimeError("no")
    echo.work.consume(fail, prefetch=10, timeout=5)
    for i in range(7):
        echo.work.produce(Msg(text=str(i)), timeout=5)
    operator = admin(peers(unix_server.url))
    wait_until(lambda: operator.dead_letters(DeadLettersRequest()).total == 7)
    listed = operator.dead_letters(DeadLettersRequest(limit=3))
    assert len(listed.dead_letters) == 3 and listed.total == 7


def test_disconnect_ends_a_session_and_the_peer_comes_back_as_a_new_one(unix_server, peers):
    tray = peers(unix_server.url, name="tray")
    old_session = tray.session_id
    reconnected = AsyncResult()
    tray.on_reconnected(reconnected.set)
    operator = admin(peers(unix_server.url, name="operator"))
    reply = operator.disconnect(DisconnectRequest(peer="tray", reason="maintenance"))
    assert list(reply.session_ids) == [old_session]
    new_session = reconnected.get(timeout=10)
    assert new_session != old_session
    sessions = {p.session_id for p in operator.sessions(LIST).peers}
    assert old_session not in sessions and new_session in sessions
    # By the first characters of a session id, as the tables show it.
    operator.disconnect(DisconnectRequest(peer=new_session[:12]))
    assert reconnected.get(timeout=10)


def test_disconnect_refuses_an_unknown_or_ambiguous_peer(unix_server, peers):
    peers(unix_server.url, name="uploader")
    peers(unix_server.url, name="uploader")
    operator = admin(peers(unix_server.url))
    with pytest.raises(rpc.RpcError) as info:
        operator.disconnect(DisconnectRequest(peer="nobody"))
    assert info.value.code == rpc.StatusCode.NOT_FOUND
    with pytest.raises(rpc.RpcError) as info:
        operator.disconnect(DisconnectRequest(peer="uploader"))
    assert info.value.code == rpc.StatusCode.FAILED_PRECONDITION
    assert "2 sessions" in info.value.message
    with pytest.raises(rpc.RpcError) as info:
        operator.disconnect(DisconnectRequest(peer=""))
    assert info.value.code == rpc.StatusCode.NOT_FOUND
    assert len(operator.peers(LIST).peers) == 3


def test_an_anonymous_peer_is_refused_without_an_authorize_hook(servers, peers):
    server = servers("tcp://127.0.0.1:0", EchoService(), admin=True)
    with pytest.raises(rpc.RpcError) as info:
        admin(peers(server.url)).peers(LIST)
    assert info.value.code == rpc.StatusCode.PERMISSION_DENIED
    assert "authorize" in info.value.message


def test_the_authorize_hook_sees_admin_calls_as_the_action_admin(servers, peers):
    asked = []

    def authorize(identity, action, method, target):
        asked.append((action, method))
        return action != "admin" or method.endswith("/Peers")

    server = servers("tcp://127.0.0.1:0", EchoService(), admin=True, authorize=authorize)
    operator = admin(peers(server.url))
    assert len(operator.peers(LIST).peers) == 1
    with pytest.raises(rpc.RpcError) as info:
        operator.disconnect(DisconnectRequest(peer="x"))
    assert info.value.code == rpc.StatusCode.PERMISSION_DENIED
    rpc.Client(peers(server.url), ECHO).echo(Msg(text="hi"), timeout=5)
    assert asked == [("admin", "/onedrive_rpc.Admin/Peers"),
                     ("admin", "/onedrive_rpc.Admin/Disconnect"),
                     ("call", "/onedrive_rpc.testing.Echo/Echo")]


def test_without_admin_the_service_is_not_served(unix_server, servers, tmp_path, peers):
    server = servers(f"unix://{tmp_path}/plain.sock", EchoService())
    with pytest.raises(rpc.RpcError) as info:
        admin(peers(server.url)).peers(LIST)
    assert info.value.code == rpc.StatusCode.UNIMPLEMENTED


def test_inspect_counts_what_each_peer_sent_and_received(unix_server, peers):
    tray = peers(unix_server.url, name="tray")
    echo = rpc.Client(tray, ECHO)
    for _ in range(10):
        echo.echo(Msg(data=b"x" * 1000), timeout=5)
    [seen] = [p for p in unix_server.inspect().connected if p.name == "tray"]
    assert seen.calls_received == 10 and seen.calls_in_flight == 0
    assert seen.bytes_in > 10_000 and seen.bytes_out > 10_000
    greenlets = [gevent.spawn(echo.echo, Msg(text=str(i)), timeout=5) for i in range(5)]
    gevent.joinall(greenlets, raise_error=True)
    [seen] = [p for p in unix_server.inspect().connected if p.name == "tray"]
    assert seen.calls_received == 15


def test_disconnect_ends_a_suspended_session_at_once(servers, peers):
    server = servers("tcp://127.0.0.1:0", EchoService(), admin=True, heartbeat=HB,
                     session_grace=30.0, authorize=lambda *_: True)
    proxy = FaultProxy(server.url).start()
    try:
        lost = Event()
        server.on_peer_lost(lambda peer, reason: lost.set())
        uploader = peers(proxy.url, name="uploader", heartbeat=HB, timeout=0.5)
        reconnected = AsyncResult()
        uploader.on_reconnected(reconnected.set)
        old = uploader.session_id
        operator = admin(peers(server.url))
        proxy.blackhole()
        proxy.cut()
        assert lost.wait(5)
        assert operator.disconnect(DisconnectRequest(peer=old)).session_ids == [old]
        assert old not in {p.session_id for p in operator.sessions(LIST).peers}
        proxy.heal()
        assert reconnected.get(timeout=10) != old  # it comes back as a new session
    finally:
        proxy.stop()


def test_dead_letters_with_payloads_fit_in_a_frame(unix_server, peers):
    unix_server.configure_queue(WORK, max_attempts=1)
    echo = rpc.Client(peers(unix_server.url), ECHO)

    def fail(task, context):
        raise RuntimeError("no")
    echo.work.consume(fail, prefetch=10, timeout=5)
    for i in range(6):
        echo.work.produce(Msg(data=bytes([i]) * (1 << 20)), timeout=5)
    operator = admin(peers(unix_server.url))
    wait_until(lambda: operator.dead_letters(DeadLettersRequest()).total == 6)
    listed = operator.dead_letters(DeadLettersRequest(payloads=True), timeout=10)
    assert listed.total == 6 and 1 <= len(listed.dead_letters) <= 4
    assert all(len(d.payload) == d.payload_size > (1 << 20) for d in listed.dead_letters)
    assert len(operator.dead_letters(DeadLettersRequest()).dead_letters) == 6  # sizes only: all
