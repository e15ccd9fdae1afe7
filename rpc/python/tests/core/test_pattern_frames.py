"""The frames of streams, notifications, publish/subscribe, work queues and
broadcasts through two sans-IO sessions: what goes in comes out as the
right event, sequenced and acknowledged like calls, and a peer that sends
nonsense gets a protocol error naming it."""
from __future__ import annotations

import re

import pytest

from onedrive_rpc.core import wire_pb2
from onedrive_rpc.core import events as ev
from onedrive_rpc.core import pattern_frames as pf
from onedrive_rpc.core.session import Role, Session, State
from onedrive_rpc.errors import LocalProtocolError, RemoteProtocolError
from onedrive_rpc.testing.helpers import envelopes, framed, open_session_pair, wire

METHOD = "/a.B/C"


ROUND_TRIPS = [
    (pf.Notify(METHOD, b"n", {"k": "v"}), ev.NotifyReceived(METHOD, b"n", {"k": "v"})),
    (pf.Subscribe(3, METHOD, "a.*", 10, wire_pb2.DROP_NEWEST, call_id=7),
     ev.SubscribeReceived(7, 3, METHOD, "a.*", 10, wire_pb2.DROP_NEWEST)),
    (pf.Unsubscribe(3), ev.UnsubscribeReceived(3)),
    (pf.Publish(METHOD, "a.b", b"m"), ev.PublishReceived(0, METHOD, "a.b", b"m")),
    (pf.Publish(METHOD, "a.b", b"m", call_id=9), ev.PublishReceived(9, METHOD, "a.b", b"m")),
    (pf.Deliver(3, 2, pf.deliver_shared("a.b", "p", 4), b"d"),
     ev.DeliverReceived(3, "a.b", "p", 4, 2, b"d")),
    (pf.Broadcast(METHOD, b"x", "o"), ev.BroadcastReceived(0, METHOD, "o", b"x")),
    (pf.Produce(METHOD, b"t", call_id=8), ev.ProduceReceived(8, METHOD, b"t")),
    (pf.Consume(2, METHOD, 4, call_id=5), ev.ConsumeReceived(5, 2, METHOD, 4, False)),
    (pf.Task(2, 11, 3, b"t"), ev.TaskReceived(2, 11, 3, b"t")),
    (pf.Credit(5, subscription_id=3), ev.CreditReceived(0, 3, 0, 5)),
    (pf.TaskDone(2, 5, 13, "boom"), ev.TaskDoneReceived(2, 5, 13, "boom")),
]


@pytest.mark.parametrize("frame,expected", ROUND_TRIPS,
                         ids=[f"{type(r[0]).__name__}-{i}" for i, r in enumerate(ROUND_TRIPS)])
def test_each_frame_arrives_as_its_event_both_ways(frame, expected):
    server_only = type(frame).__name__.lower() in pf.SENT_BY_SERVERS
    for sender_index in (1,) if server_only else (0, 1):  # open_session_pair: (client, server)
        pair = open_session_pair()
        sender, receiver = pair[sender_index], pair[1 - sender_index]
        seq = sender.send(frame)
        assert seq == 1
        [event] = receiver.receive_data(wire(sender), 1.0)
        assert event == expected
        assert receiver.reliability.received == 1  # sequenced like calls


@pytest.mark.parametrize("frame, what", [
    (pf.Deliver(3, 0, pf.deliver_shared("a.b", "p", 1), b"d"), "deliver"),
    (pf.Task(2, 11, 1, b"t"), "task"),
    (pf.Credit(64, publish=True), "credit{publish}"),
])
def test_a_frame_only_servers_send_is_a_protocol_error_at_a_server(frame, what):
    """Spec §8: the server hosts the topics and queues; a Deliver, Task or
    publish window Credit sent to it is a peer's bug, not something to drop."""
    client, server = open_session_pair()
    client.send(frame)
    with pytest.raises(RemoteProtocolError,
                       match=rf"{re.escape(what)} frame received by a server: only a server sends it"):
        server.receive_data(wire(client), 1.0)
    assert [e.WhichOneof("kind") for e in envelopes(wire(server))] == ["close"]


@pytest.mark.parametrize("frame", [
    pf.Subscribe(3, METHOD, "a.*", 10, wire_pb2.DROP_NEWEST),
    pf.Produce(METHOD, b"t"),
    pf.Consume(2, METHOD, 4),
], ids=["subscribe", "produce", "consume"])
def test_a_frame_answered_with_a_response_must_carry_a_call_id(frame):
    client, server = open_session_pair()
    client.send(frame)
    kind = type(frame).__name__.lower()
    with pytest.raises(RemoteProtocolError, match=f"{kind} frame has no call_id"):
        server.receive_data(wire(client), 1.0)


def test_a_withdrawing_consume_may_go_one_way():
    """The Python peer withdraws a consumer while disconnected with a
    one-way Consume{stop} into its resend buffer."""
    client, server = open_session_pair()
    client.send(pf.Consume(2, METHOD, stop=True))
    assert server.receive_data(wire(client), 1.0) == [ev.ConsumeReceived(0, 2, METHOD, 0, True)]


def test_stream_items_and_end_answer_a_request_and_end_the_call():
    client, server = open_session_pair()
    client.send_request(1, METHOD, b"q", initial_credit=4)
    [request] = server.receive_data(wire(client), 0.0)
    assert request.initial_credit == 4
    server.send(pf.StreamItem(1, b"i1"))
    server.send(pf.StreamItem(1, b"i2"))
    server.send(pf.StreamEnd(1, 0))
    assert server.calls_in_flight == 0
    assert client.receive_data(wire(server), 0.0) == [
        ev.StreamItemReceived(1, b"i1"), ev.StreamItemReceived(1, b"i2"),
        ev.StreamEndReceived(1, 0, "", "")]
    with pytest.raises(LocalProtocolError, match="call 1 is not in flight"):
        server.send(pf.StreamItem(1, b"late"))


def test_task_done_carries_its_status():
    client, server = open_session_pair()
    client.send(pf.TaskDone(2, 5, 13, "boom"))
    assert server.receive_data(wire(client), 0.0) == [ev.TaskDoneReceived(2, 5, 13, "boom")]


def test_a_frame_that_opens_a_call_is_answered_with_a_response():
    client, server = open_session_pair()
    client.send(pf.Produce(METHOD, b"task", call_id=3))
    server.receive_data(wire(client), 0.0)
    assert server.calls_in_flight == 1
    server.send_response(3, 0)
    [response] = client.receive_data(wire(server), 0.0)
    assert response.call_id == 3 and server.calls_in_flight == 0


def test_confirming_ack_now_is_acknowledged_at_once():
    client, server = open_session_pair()
    seq = client.send(pf.Notify(METHOD, b"n"), ack_now=True)
    [sent] = envelopes(wire(client))
    assert sent.ack_now and sent.seq == seq
    server.receive_data(framed(sent), 5.0)
    assert server.reliability.ack_due(5.0)  # no delayed-ack wait
    server.tick(5.0)
    client.receive_data(wire(server), 5.0)
    assert client.reliability.peer_acked >= seq


def test_send_refuses_what_is_not_a_pattern_frame_and_before_open():
    client, _ = open_session_pair()
    with pytest.raises(TypeError, match="is not a pattern frame"):
        client.send(("hello",))
    fresh = Session(Role.CLIENT, peer_id="x")
    with pytest.raises(LocalProtocolError, match="cannot send while connecting"):
        fresh.send(pf.Notify(METHOD, b""))


BAD_FRAMES = [
    (wire_pb2.Envelope(notify=wire_pb2.Notify()), "notify frame names no method"),
    (wire_pb2.Envelope(publish=wire_pb2.Publish(topic="a")), "publish frame names no method"),
    (wire_pb2.Envelope(credit=wire_pb2.Credit(call_id=1)), "credit frame grants no items"),
    (wire_pb2.Envelope(credit=wire_pb2.Credit(call_id=1, consumer_id=2, items=1)),
     "must name exactly one of call_id, subscription_id and consumer_id"),
    (wire_pb2.Envelope(subscribe=wire_pb2.Subscribe(method=METHOD, pattern="a")),
     "subscribe frame has no subscription_id"),
    (wire_pb2.Envelope(consume=wire_pb2.Consume(method=METHOD)), "consume frame has no consumer_id"),
]


@pytest.mark.parametrize("env,text", BAD_FRAMES, ids=[b[1][:30] for b in BAD_FRAMES])
def test_malformed_pattern_frames_are_protocol_errors(env, text):
    _, server = open_session_pair()
    with pytest.raises(RemoteProtocolError, match=text):
        server.receive_data(framed(env), 0.0)
    assert server.state is State.CLOSED


def test_a_call_id_already_in_flight_is_a_protocol_error():
    client, server = open_session_pair()
    client.send_request(4, METHOD, b"")
    server.receive_data(wire(client), 0.0)
    client.send(pf.Produce(METHOD, b"t", call_id=4))
    with pytest.raises(RemoteProtocolError, match="call id 4 is already in flight"):
        server.receive_data(wire(client), 0.0)


def test_pattern_frames_before_the_handshake_are_refused():
    server = Session(Role.SERVER, peer_id="s", session_id="S")
    with pytest.raises(RemoteProtocolError, match="notify frame received while await_hello"):
        server.receive_data(framed(wire_pb2.Envelope(notify=wire_pb2.Notify(method=METHOD))), 0.0)


def test_a_withdrawn_frame_keeps_its_place_but_arrives_as_a_heartbeat():
    client, server = open_session_pair()
    keep = client.send(pf.Notify(METHOD, b"kept"))
    gone = client.send(pf.Notify(METHOD, b"withdrawn"))
    assert not client.withdraw(gone)  # only while suspended: the bytes may be on the wire
    client.data_to_send()  # ...lost with the connection
    client.suspend()
    assert client.withdraw(gone) and not client.withdraw(gone + 1) and not client.withdraw(0)
    # A resumed session resends both seqs; the receiver delivers the first only.
    resumed = Session(Role.CLIENT, peer_id="c", reliability=client.reliability,
                      resume_session_id="S")
    server_side = Session(Role.SERVER, peer_id="s", session_id="S2")
    resumed.start(0.0)
    [request] = server_side.receive_data(wire(resumed), 0.0)
    server_side.accept_resume(server.reliability)
    resumed.receive_data(wire(server_side), 0.0)
    events = server_side.receive_data(wire(resumed), 0.0)
    assert events == [ev.NotifyReceived(METHOD, b"kept", {})]
    assert server_side.reliability.received == gone == keep + 1


def test_a_delivery_encoded_by_parts_is_the_same_message_as_one_built_whole():
    for sid, dropped, seq in [(1, 0, 1), (300, 5, 70000), (2 ** 40, 2 ** 21, 2 ** 35)]:
        frame = pf.Deliver(sid, dropped, pf.deliver_shared("a.b", "pub", seq), b"msg")
        whole = wire_pb2.Envelope(deliver=wire_pb2.Deliver(
            subscription_id=sid, topic="a.b", publisher="pub", publisher_seq=seq, dropped=dropped))
        assert wire_pb2.Envelope.FromString(pf.encode(frame)) == whole


def test_varint_matches_protobuf_for_every_width():
    from onedrive_rpc.core.framing import varint
    assert varint(0) == b"\x00"
    for value in [1, 127, 128, 16383, 16384, 2 ** 21 - 1, 2 ** 21, 2 ** 28, 2 ** 63]:
        assert varint(value) == wire_pb2.Envelope(seq=value).SerializeToString()[1:]


@pytest.mark.parametrize("code,message", [(0, ""), (13, ""), (0, "odd"), (13, "RuntimeError: é")])
def test_frames_encoded_by_hand_are_the_bytes_protobuf_builds(code, message):
    cases = [
        (pf.Task(7, 70000, 3, b"t"),
         wire_pb2.Envelope(task=wire_pb2.Task(consumer_id=7, task_id=70000, attempt=3))),
        (pf.TaskDone(7, 70000, code, message),
         wire_pb2.Envelope(task_done=wire_pb2.TaskDone(
             consumer_id=7, task_id=70000,
             # An OK status with no message is left out, as protobuf leaves an unset one.
             status=wire_pb2.Status(code=code, message=message) if code or message else None))),
        (pf.StreamItem(2 ** 33, b"i"), wire_pb2.Envelope(stream_item=wire_pb2.StreamItem(call_id=2 ** 33))),
        (pf.StreamEnd(5, code, message, "tb"),
         wire_pb2.Envelope(stream_end=wire_pb2.StreamEnd(
             call_id=5, status=wire_pb2.Status(code=code, message=message, details="tb")))),
    ]
    for frame, envelope in cases:
        assert pf.encode(frame) == envelope.SerializeToString(), frame
