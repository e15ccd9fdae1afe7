"""Sequence numbers, acknowledgements, duplicates and the resend buffer, on a
fake clock: what makes "nothing acknowledged is lost, nothing delivered
twice" possible."""
from __future__ import annotations

import pytest

from onedrive_rpc.core import wire_pb2
from onedrive_rpc.core import events as ev
from onedrive_rpc.core.framing import FrameDecoder
from onedrive_rpc.core.reliability import ACK_DELAY, Reliability
from onedrive_rpc.core.session import Role, Session
from onedrive_rpc.errors import RemoteProtocolError
from onedrive_rpc.testing.helpers import envelopes, framed, open_session_pair, wire

METHOD = "/a.B/C"


def test_reliability_bookkeeping():
    rel = Reliability()
    assert [rel.stamp() for _ in range(3)] == [1, 2, 3]
    for seq in (1, 2, 3):
        rel.keep(seq, [b"x" * seq], seq)
    assert rel.unacked_bytes == 6
    rel.on_ack(2)
    assert [entry[0] for entry in rel.unacked] == [3] and rel.unacked_bytes == 3
    rel.on_ack(1)  # stale: nothing changes
    assert rel.peer_acked == 2 and rel.unacked_bytes == 3
    with pytest.raises(RemoteProtocolError, match="acknowledged seq 4, but the last frame sent was 3"):
        rel.on_ack(4)
    assert rel.on_sequenced(1, now=5.0) and rel.received == 1
    assert rel.ack_owed_since == 5.0 and rel.ack_deadline() == 5.0 + ACK_DELAY
    assert not rel.on_sequenced(1, now=6.0)  # a copy
    with pytest.raises(RemoteProtocolError, match="seq 3 skips ahead: expected 2"):
        rel.on_sequenced(3, now=6.0)
    assert rel.acking() == 1 and rel.ack_owed_since is None


def test_a_held_frame_can_be_replaced_in_its_place():
    rel = Reliability()
    for size in (10, 20, 30):
        seq = rel.stamp()
        rel.keep(seq, [b"x" * size], size)
    rel.on_ack(1)
    assert rel.replace(3, b"beat") and rel.unacked_bytes == 20 + 4
    assert [entry[0] for entry in rel.unacked] == [2, 3] and rel.unacked[1][1] == [b"beat"]
    assert not rel.replace(1, b"beat")  # acknowledged: gone
    assert not rel.replace(4, b"beat")  # never sent
    assert rel.unacked_bytes == 24


def test_calls_are_sequenced_and_acks_ride_on_the_answers():
    client, server = open_session_pair()
    client.send_request(1, METHOD, b"req-1")
    client.send_request(2, METHOD, b"req-2")
    sent = envelopes(wire(client))
    assert [e.seq for e in sent] == [1, 2] and [e.ack for e in sent] == [0, 0]
    assert client.unacked_bytes > 0
    server.receive_data(b"".join(framed(e) for e in sent), 1.0)
    server.send_response(1, 0, payload=b"resp-1")
    [resp] = envelopes(wire(server))
    assert (resp.seq, resp.ack) == (1, 2)  # both requests acknowledged at once
    client.receive_data(framed(resp), 1.0)
    assert client.unacked_bytes == 0 and client.reliability.peer_acked == 2


def test_an_ack_nothing_carried_goes_alone_after_the_delay():
    client, server = open_session_pair()
    client.send_request(1, METHOD, b"x")
    server.receive_data(wire(client), 0.5)
    assert server.next_deadline() == pytest.approx(0.5 + ACK_DELAY)
    assert server.tick(0.5 + ACK_DELAY / 2) == [] and wire(server) == b""
    assert server.tick(0.5 + ACK_DELAY) == []
    [bare] = envelopes(wire(server, now=0.5 + ACK_DELAY))
    assert bare.WhichOneof("kind") == "heartbeat" and bare.ack == 1 and bare.seq == 0
    client.receive_data(framed(bare), 0.6)
    assert client.unacked_bytes == 0
    # Back to the heartbeat clock, counted from the bare ack.
    assert server.next_deadline() == pytest.approx(1.5 + ACK_DELAY)


def test_ack_now_is_answered_at_the_next_tick():
    client, server = open_session_pair()
    env = wire_pb2.Envelope(seq=1, ack_now=True)
    env.request.call_id = 1
    env.request.method = METHOD
    server.receive_data(framed(env), 3.0)
    assert server.next_deadline() == float("-inf")  # now
    server.tick(3.0)
    [bare] = envelopes(wire(server))
    assert bare.ack == 1


def test_copies_of_delivered_frames_are_dropped():
    client, server = open_session_pair()
    client.send_request(1, METHOD, b"once")
    data = wire(client)
    [first] = server.receive_data(data, 0.0)
    assert isinstance(first, ev.RequestReceived)
    assert server.receive_data(data, 0.0) == []  # the same frame again: resent after a reconnect
    assert server.calls_in_flight == 1


def test_a_gap_in_sequence_numbers_is_a_protocol_error():
    client, server = open_session_pair()
    client.send_request(1, METHOD, b"lost")
    wire(client)  # never delivered
    client.send_request(2, METHOD, b"arrives")
    with pytest.raises(RemoteProtocolError, match="seq 2 skips ahead: expected 1"):
        server.receive_data(wire(client), 0.0)


def test_unsequenced_frames_need_no_sequence_numbers():
    client, server = open_session_pair()
    env = wire_pb2.Envelope()
    env.request.call_id = 9
    env.request.method = METHOD
    [request] = server.receive_data(framed(env), 0.0)
    assert request.call_id == 9 and server.reliability.received == 0


def test_resend_buffer_gives_back_what_the_peer_lacks_in_order():
    client, server = open_session_pair()
    for call_id in (1, 2, 3):
        client.send_request(call_id, METHOD, f"req-{call_id}".encode())
    original = wire(client)
    # The peer got the first frame only, then the connection broke.
    server.receive_data(envelopes_bytes(original, 1), 0.0)
    resend = b"".join(bytes(b) for b in client.reliability.resend_after(server.reliability.received))
    assert [e.seq for e in envelopes(resend)] == [2, 3]
    events = server.receive_data(resend, 0.0)
    assert [e.call_id for e in events] == [2, 3]
    assert client.unacked_bytes == len(resend)


def envelopes_bytes(data, count):
    frames = FrameDecoder().feed(data)[:count]
    return b"".join(len(f).to_bytes(4, "big") + bytes(f) for f in frames)


def test_a_refused_message_does_not_burn_a_sequence_number():
    client = Session(Role.CLIENT, peer_id="c")
    server = Session(Role.SERVER, peer_id="s", max_frame_size=1024)
    client.start(0.0)
    server.receive_data(wire(client), 0.0)
    client.receive_data(wire(server), 0.0)
    with pytest.raises(Exception):
        client.send_request(1, METHOD, b"x" * 2000)
    client.send_request(2, METHOD, b"fits")
    [request] = server.receive_data(wire(client), 0.0)  # seq 1, no gap
    assert request.call_id == 2


def test_a_refused_message_does_not_swallow_an_owed_ack():
    client = Session(Role.CLIENT, peer_id="c")
    server = Session(Role.SERVER, peer_id="s", max_frame_size=1024)
    client.start(0.0)
    server.receive_data(wire(client), 0.0)
    client.receive_data(wire(server), 0.0)
    server.send_request(1, METHOD, b"from the server")  # calls go both ways
    client.receive_data(wire(server), 0.5)
    assert client.reliability.ack_owed_since == 0.5
    with pytest.raises(Exception):
        client.send_request(1, METHOD, b"x" * 2000)
    assert client.reliability.ack_owed_since == 0.5 and client.reliability.ack_sent == 0
    client.send_request(2, METHOD, b"fits")
    [env] = envelopes(wire(client))
    assert (env.seq, env.ack) == (1, 1)
