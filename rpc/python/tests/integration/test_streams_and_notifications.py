"""Server streams and notifications end to end: over every transport, with
the server in another process where it can be; flow control, early stops,
deadlines, lost peers, and cuts in the middle."""
from __future__ import annotations

import json

import gevent
import pytest
from gevent.event import AsyncResult

import onedrive_rpc as rpc
from onedrive_rpc.testing import echo_pb2
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.faults import FaultProxy
from onedrive_rpc.testing.helpers import wait_until

Msg = echo_pb2.Msg
HB = rpc.Heartbeat(interval=0.2, misses=3)


def stats(client):
    return json.loads(client.stats(Msg(), timeout=5).text)


def server_calls(server):
    """The calls the (in-process) server is serving right now."""
    return [call for conn in server.connections for call in conn.calls.values()]


# ------------------------------------------------------------------ streams


def test_a_stream_delivers_every_item_in_order_then_ends(remote_url, peers):
    client = rpc.Client(peers(remote_url), ECHO)
    items = list(client.count(Msg(count=500, data=b"d"), timeout=10))
    assert [item.text for item in items] == [str(i) for i in range(500)]
    assert all(item.data == b"d" for item in items)
    assert list(client.count(Msg(count=0), timeout=5)) == []
    # The connection carries on with calls.
    assert client.echo(Msg(text="after"), timeout=5).text == "after"


def test_a_stream_error_comes_after_the_items_sent_before_it(remote_url, peers):
    client = rpc.Client(peers(remote_url), ECHO)
    stream = client.count(Msg(count=3, text="fail"), timeout=5)
    assert [next(stream).text for _ in range(3)] == ["0", "1", "2"]
    with pytest.raises(rpc.RpcError) as info:
        next(stream)
    assert info.value.code == rpc.StatusCode.INTERNAL
    assert info.value.message.startswith("RuntimeError (error id ")  # its text stays in the log
    assert stream.done


def test_many_streams_at_once_on_one_connection(remote_url, peers):
    client = rpc.Client(peers(remote_url), ECHO)
    results = {}

    def read(i):
        results[i] = [m.text for m in client.count(Msg(count=50 + i), timeout=20, window=3)]

    gevent.joinall([gevent.spawn(read, i) for i in range(40)], timeout=30, raise_error=True)
    assert results == {i: [str(n) for n in range(50 + i)] for i in range(40)}


def test_flow_control_stops_a_fast_server_at_the_window(local_server, peers):
    service = local_server.service
    client = rpc.Client(peers(local_server.url), ECHO)
    stream = client.count(Msg(count=1000), timeout=10, window=4)
    # The server sends exactly one window, then waits for credit.
    wait_until(lambda: service.items_sent == 4 and _waiting_for_credit(local_server))
    assert [next(stream).text for _ in range(2)] == ["0", "1"]  # half a window read: 2 granted
    wait_until(lambda: service.items_sent == 6 and _waiting_for_credit(local_server))
    rest = [item.text for item in stream]
    assert rest == [str(i) for i in range(2, 1000)]


def _waiting_for_credit(server):
    calls = server_calls(server)
    return len(calls) == 1 and calls[0].credit == 0


def test_breaking_out_of_the_loop_stops_the_servers_generator(local_server, peers):
    service = local_server.service
    client = rpc.Client(peers(local_server.url), ECHO)
    for item in client.count(Msg(count=100000), timeout=10, window=8):
        if item.text == "3":
            break
    wait_until(lambda: service.streams_stopped == 1 and not server_calls(local_server))
    assert service.items_sent < 100
    # cancel() and leaving a with block do the same.
    stream = client.count(Msg(count=100000), timeout=10)
    next(stream)
    assert stream.cancel() and not stream.cancel()
    with pytest.raises(rpc.RpcError) as info:
        next(stream)
    assert info.value.code == rpc.StatusCode.CANCELLED
    with client.count(Msg(count=100000), timeout=10) as stream:
        next(stream)
    wait_until(lambda: service.streams_stopped == 3 and not server_calls(local_server))


def test_a_stream_deadline_ends_it_on_both_sides(local_server, peers):
    service = local_server.service
    client = rpc.Client(peers(local_server.url), ECHO)
    stream = client.count(Msg(count=1000, delay=0.02), timeout=0.3)
    with pytest.raises(rpc.RpcError) as info:
        for _ in stream:
            pass
    assert info.value.code == rpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(lambda: service.streams_stopped == 1 and not server_calls(local_server))


def test_a_killed_server_fails_the_stream_at_once(server_process, peers):
    client = rpc.Client(peers(server_process.url, heartbeat=HB), ECHO)
    stream = client.count(Msg(count=1000000, delay=0.001), timeout=30)
    next(stream)
    server_process.kill()
    with pytest.raises(rpc.PeerLost):
        with gevent.Timeout(5):
            for _ in stream:
                pass


def test_a_frozen_server_fails_the_stream_within_the_bound(server_process, peers):
    peer = peers(server_process.url, heartbeat=HB)
    resumed = AsyncResult()
    peer.on_resumed(resumed.set)
    client = rpc.Client(peer, ECHO)
    stream = client.count(Msg(count=1000000, delay=0.001), timeout=30)
    next(stream)
    server_process.stop()
    try:
        with gevent.Timeout(5):
            with pytest.raises(rpc.PeerLost):
                for _ in stream:
                    pass
    finally:
        server_process.cont()
    # Thawed, the server resumes the session and learns the stream was
    # cancelled: its generator stops.
    resumed.get(timeout=5)
    wait_until(lambda: stats(client)["streams_stopped"] == 1)


def test_a_stream_survives_a_cut_connection_without_loss_or_duplicates(local_server, peers):
    proxy = FaultProxy(local_server.url).start()
    try:
        resumed = AsyncResult()
        peer = peers(proxy.url, heartbeat=HB)
        peer.on_resumed(resumed.set)
        client = rpc.Client(peer, ECHO)
        received = []
        for item in client.count(Msg(count=3000), timeout=30, window=16):
            received.append(item.text)
            if len(received) == 700:
                proxy.cut()
        assert resumed.get(timeout=5)
        assert received == [str(i) for i in range(3000)]
    finally:
        proxy.stop()


def test_a_stream_method_called_as_a_call_says_how_to_use_it(remote_url, peers):
    peer = peers(remote_url)
    with pytest.raises(rpc.RpcError) as info:
        peer.call("/onedrive_rpc.testing.Echo/Note", b"", Msg.FromString, timeout=5)
    assert info.value.code == rpc.StatusCode.UNIMPLEMENTED
    assert "is a NOTIFICATION method, sent a call: send it as a notification" in info.value.message


# ------------------------------------------------------------ notifications


def test_notifications_arrive_once_in_order_with_calls(remote_url, peers):
    client = rpc.Client(peers(remote_url), ECHO)
    for i in range(200):
        assert client.note(Msg(text=f"n{i}")) is None
    # Sequenced with the calls: a call sent after them is served after them.
    seen = stats(client)
    assert seen["notes"] == {f"n{i}": 1 for i in range(200)}


def test_a_confirmed_notification_returns_once_received(remote_url, peers):
    client = rpc.Client(peers(remote_url), ECHO)
    client.note(Msg(text="sure"), confirm=True, timeout=5)
    assert stats(client)["notes"] == {"sure": 1}


def test_a_notification_handler_failure_is_the_servers_business(local_server, peers, caplog):
    client = rpc.Client(peers(local_server.url), ECHO)
    peer = client.peer
    # A payload that does not parse: logged on the server; the caller never waits.
    peer.notify("/onedrive_rpc.testing.Echo/Note", b"\xff\xff", confirm=True, timeout=5)
    peer.notify("/onedrive_rpc.testing.Echo/Echo", Msg().SerializeToString(), confirm=True, timeout=5)
    assert client.echo(Msg(text="still"), timeout=5).text == "still"
    wait_until(lambda: sum("notification" in r.message for r in caplog.records) >= 2)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "INVALID_ARGUMENT" in messages and "is a REQUEST_RESPONSE method, sent a notification" in messages


def test_a_confirmed_notification_to_a_frozen_server_raises_within_the_bound(server_process, peers):
    client = rpc.Client(peers(server_process.url, heartbeat=HB), ECHO)
    client.note(Msg(text="before"), confirm=True, timeout=5)
    server_process.stop()
    try:
        with gevent.Timeout(5):
            with pytest.raises(rpc.PeerLost):
                client.note(Msg(text="frozen"), confirm=True)
    finally:
        server_process.cont()


def test_confirmed_notifications_across_cuts_confirm_or_raise_exactly(url, peers):
    server = rpc.Server(url, heartbeat=HB)
    service = EchoService()
    server.add_service(service)
    server.start()
    proxy = FaultProxy(server.url).start()
    try:
        client = rpc.Client(peers(proxy.url, heartbeat=HB), ECHO)
        confirmed, raised = [], []

        def send(worker):
            for i in range(150):
                text = f"{worker}-{i}"
                try:
                    client.note(Msg(text=text), confirm=True, timeout=10)
                except rpc.RpcError:
                    raised.append(text)
                else:
                    confirmed.append(text)

        senders = [gevent.spawn(send, w) for w in range(4)]
        for n in range(5):
            wait_until(lambda: len(confirmed) + len(raised) >= 100 * (n + 1), timeout=10)
            proxy.cut()
        gevent.joinall(senders, timeout=30, raise_error=True)
        assert len(confirmed) + len(raised) == 600
        assert len(set(confirmed) | set(raised)) == 600  # each one outcome, never both
        wait_until(lambda: all(service.notes[t] == 1 for t in confirmed))
        assert all(service.notes[t] <= 1 for t in raised)
        assert sum(service.notes.values()) <= 600
    finally:
        proxy.stop()
        server.stop()


def test_a_stream_stays_bounded_even_against_a_server_ignoring_credit():
    from onedrive_rpc.streams import ServerStream, StreamReceiver

    class FakeConnection:
        abandoned = []

        def abandon(self, call_id, reason):
            self.abandoned.append(reason)

    receiver = StreamReceiver(FakeConnection(), "/a.B/C", window=4)
    stream = ServerStream(receiver, Msg.FromString)
    for i in range(10):
        receiver.item(Msg(text=str(i)).SerializeToString())
    assert len(receiver.items) == 4 and FakeConnection.abandoned == ["sent past the stream window"]
    assert [next(stream).text for _ in range(4)] == ["0", "1", "2", "3"]
    with pytest.raises(rpc.RpcError, match="more than the stream window of 4 items"):
        next(stream)
