"""Heartbeats and liveness on a fake clock: when a heartbeat goes out, when
the peer is declared lost, how the two sides agree. No sockets, no sleeps."""
from __future__ import annotations

import pytest

from onedrive_rpc.core import events as ev
from onedrive_rpc.core.liveness import Liveness
from onedrive_rpc.core.session import Role, Session, State
from onedrive_rpc.errors import RemoteProtocolError
from onedrive_rpc.testing.helpers import envelopes, framed
from onedrive_rpc.core import wire_pb2


def frames(session, now):
    return envelopes(b"".join(bytes(b) for b in session.data_to_send(now)))


def deliver(src, dst, now):
    data = b"".join(bytes(b) for b in src.data_to_send(now))
    return dst.receive_data(data, now)


def open_pair(client_hb=(1.0, 3), server_hb=(1.0, 3), now=0.0):
    client = Session(Role.CLIENT, peer_id="c", heartbeat_interval=client_hb[0],
                     heartbeat_misses=client_hb[1])
    server = Session(Role.SERVER, peer_id="s", session_id="S", heartbeat_interval=server_hb[0],
                     heartbeat_misses=server_hb[1])
    client.start(now)
    deliver(client, server, now)
    deliver(server, client, now)
    assert client.state is server.state is State.OPEN
    return client, server


def test_liveness_arithmetic():
    live = Liveness(0.5, 4, now=10.0)
    assert live.timeout == 2.0
    assert live.next_deadline() == 10.5
    assert not live.heartbeat_due(10.49) and live.heartbeat_due(10.5)
    live.sent(10.5)
    assert live.next_deadline() == 11.0
    assert not live.expired(11.99) and live.expired(12.0)
    live.received(11.9)
    assert live.silent_for(12.0) == pytest.approx(0.1)
    assert live.next_deadline() == 11.0
    with pytest.raises(ValueError):
        Liveness(0, 3, 0.0)
    with pytest.raises(ValueError):
        Liveness(1.0, 0, 0.0)


def test_the_smaller_interval_wins_and_each_side_keeps_its_misses():
    client, server = open_pair(client_hb=(0.25, 5), server_hb=(2.0, 3))
    assert (client.liveness.interval, client.liveness.misses) == (0.25, 5)
    assert (server.liveness.interval, server.liveness.misses) == (0.25, 3)
    client, server = open_pair(client_hb=(3.0, 2), server_hb=(0.5, 4))
    assert (client.liveness.interval, client.liveness.misses) == (0.5, 2)
    assert (server.liveness.interval, server.liveness.misses) == (0.5, 4)


def test_handshake_frames_carry_the_settings():
    client = Session(Role.CLIENT, peer_id="c", heartbeat_interval=0.2, heartbeat_misses=7)
    server = Session(Role.SERVER, peer_id="s", heartbeat_interval=1.5, heartbeat_misses=2)
    client.start(0.0)
    [hello] = frames(client, 0.0)
    assert (hello.hello.heartbeat.interval_ms, hello.hello.heartbeat.misses) == (200, 7)
    server.receive_data(framed(hello), 0.0)
    [welcome] = frames(server, 0.0)
    assert (welcome.welcome.heartbeat.interval_ms, welcome.welcome.heartbeat.misses) == (200, 2)


def test_an_idle_side_sends_one_heartbeat_per_interval():
    client, server = open_pair()
    assert client.next_deadline() == 1.0
    assert client.tick(0.99) == [] and frames(client, 0.99) == []
    assert client.tick(1.0) == []
    [beat] = frames(client, 1.0)
    assert beat.WhichOneof("kind") == "heartbeat" and beat.heartbeat.sent_us == 1_000_000
    assert client.next_deadline() == 2.0
    assert client.tick(1.5) == [] and frames(client, 1.5) == []


def test_traffic_counts_as_life_and_suppresses_heartbeats():
    client, server = open_pair()
    for step in range(1, 20):
        now = step * 0.6
        client.send_request(step, "/a.B/C", b"x")
        assert deliver(client, server, now)[0].call_id == step
        server.send_response(step, 0, payload=b"y")
        assert deliver(server, client, now)[0].call_id == step
        assert client.tick(now) == [] and server.tick(now) == []
        assert frames(client, now) == [] and frames(server, now) == []  # no heartbeat needed


def test_heartbeats_keep_an_idle_pair_alive():
    client, server = open_pair()
    now = 0.0
    while now < 30.0:
        now = min(client.next_deadline(), server.next_deadline())
        assert client.tick(now) == [] and server.tick(now) == []
        deliver(client, server, now)
        deliver(server, client, now)
    assert client.state is server.state is State.OPEN


def test_a_silent_peer_is_lost_exactly_at_interval_times_misses():
    client, server = open_pair(client_hb=(0.5, 4))
    # The server goes silent at t=0 (dead, frozen or cut off); the client
    # keeps sending heartbeats into the void.
    now = 0.0
    while True:
        now = client.next_deadline()
        events = client.tick(now)
        if events:
            break
        client.data_to_send(now)
        assert now < 2.0
    [silent] = events
    assert isinstance(silent, ev.PeerSilent)
    assert now == pytest.approx(2.0) and silent.silent_for == pytest.approx(2.0)
    assert silent.bound == pytest.approx(2.0)
    assert client.state is State.CLOSED
    [close] = frames(client, now)
    assert close.close.status.code == 14
    assert "no sign of life from you for 2.000s" in close.close.status.message
    assert client.tick(now + 10) == [] and client.next_deadline() is None


def test_any_frame_resets_the_silence_clock():
    client, server = open_pair()
    assert server.tick(1.0) == []  # the idle server queues a heartbeat
    deliver(server, client, 2.9)  # which arrives late, but within the bound
    assert client.tick(2.95) == []
    client.data_to_send(2.95)
    assert client.tick(5.89) == []  # 2.99 s of silence: not yet
    client.data_to_send(5.89)
    assert [type(e) for e in client.tick(5.9)] == [ev.PeerSilent]


def test_no_liveness_before_the_handshake():
    client = Session(Role.CLIENT, peer_id="c")
    assert client.next_deadline() is None and client.tick(100.0) == []
    client.start(0.0)
    assert client.next_deadline() is None and client.tick(100.0) == []


def test_too_short_intervals_are_refused_both_ways():
    with pytest.raises(ValueError):
        Session(Role.CLIENT, peer_id="c", heartbeat_interval=0.0)
    server = Session(Role.SERVER, peer_id="s")
    env = wire_pb2.Envelope()
    env.hello.version = wire_pb2.PROTOCOL_VERSION_1
    env.hello.heartbeat.interval_ms = 5
    with pytest.raises(RemoteProtocolError, match="heartbeat interval of 5 ms"):
        server.receive_data(framed(env), 0.0)


def test_heartbeat_before_the_handshake_is_a_protocol_error():
    server = Session(Role.SERVER, peer_id="s")
    env = wire_pb2.Envelope()
    env.heartbeat.sent_us = 1
    with pytest.raises(RemoteProtocolError, match="heartbeat frame received while await_hello"):
        server.receive_data(framed(env), 0.0)
