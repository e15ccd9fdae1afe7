"""Until the handshake is done, frames are held to HANDSHAKE_MAX_FRAME_SIZE
(issue 10: a 4-byte prefix announcing 16 MiB, sent before any Hello, made
the server set 16 MiB aside). The frame that opens the session is the last
one held to it: what follows in the same read gets max_frame_size.
"""
from __future__ import annotations

import pytest

from onedrive_rpc.core import events as ev
from onedrive_rpc.core import wire_pb2
from onedrive_rpc.core.framing import (DEFAULT_MAX_FRAME_SIZE, HANDSHAKE_MAX_FRAME_SIZE, READ_BUFFER_SIZE,
                                       frame_header)
from onedrive_rpc.core.metadata import DEFAULT_MAX_METADATA_ENTRIES, DEFAULT_MAX_METADATA_SIZE
from onedrive_rpc.core.session import Role, Session, State
from onedrive_rpc.errors import FrameTooLarge, LocalProtocolError, RemoteProtocolError, StatusCode

from onedrive_rpc.testing.helpers import envelopes, framed, receive_via_buffer, wire

KIB = 1024
MIB = 1024 * KIB
HEADER = 4


METHOD = "/test.Echo/Echo"


def make_client(**kwargs):
    return Session(Role.CLIENT, **{"peer_id": "client-id", **kwargs})


def make_server(**kwargs):
    return Session(Role.SERVER, **{"peer_id": "server-id", "session_id": "session-1", **kwargs})


def pump(src, dst, now=0.0):
    return dst.receive_data(wire(src), now)


def open_pair():
    client, server = make_client(), make_server()
    client.start(0.0)
    pump(client, server)
    pump(server, client)
    assert client.state is State.OPEN and server.state is State.OPEN
    return client, server


def hello_env():
    env = wire_pb2.Envelope()
    env.hello.version = wire_pb2.PROTOCOL_VERSION_1
    env.hello.identity.peer_id = "crafted"
    return env


def welcome_env():
    env = wire_pb2.Envelope()
    env.welcome.version = wire_pb2.PROTOCOL_VERSION_1
    env.welcome.session_id = "S"
    return env


def request_env(call_id, payload):
    env = wire_pb2.Envelope()
    env.payload = payload
    env.request.call_id = call_id
    env.request.method = METHOD
    return env


def closed_with(session, exc_info, text):
    """The session raised, is CLOSED, and queued a Close saying `text`."""
    assert session.state is State.CLOSED
    [env] = envelopes(wire(session))
    assert env.WhichOneof("kind") == "close"
    assert env.close.status.code == StatusCode.INTERNAL
    assert text in env.close.status.message and text in str(exc_info.value)


@pytest.mark.parametrize("announced", [HANDSHAKE_MAX_FRAME_SIZE + 1, DEFAULT_MAX_FRAME_SIZE])
def test_a_server_refuses_a_frame_over_the_handshake_limit_before_hello(announced):
    server = make_server()
    with pytest.raises(FrameTooLarge) as info:
        server.receive_data(frame_header(announced), 0.0)
    closed_with(server, info, f"frame of {announced} bytes exceeds the maximum frame size of "
                              f"{HANDSHAKE_MAX_FRAME_SIZE} bytes before the handshake")
    assert (info.value.size, info.value.limit) == (announced, HANDSHAKE_MAX_FRAME_SIZE)
    assert len(server._decoder._buf) == READ_BUFFER_SIZE


def test_a_server_refuses_it_through_get_buffer_too():
    server = make_server()
    space = server.get_buffer()
    space[:HEADER] = frame_header(DEFAULT_MAX_FRAME_SIZE)
    with pytest.raises(FrameTooLarge):
        server.buffer_updated(HEADER, 0.0)
    assert server.state is State.CLOSED
    with pytest.raises(FrameTooLarge):
        server.get_buffer()  # and it stays refused


def test_a_client_refuses_a_frame_over_the_handshake_limit_before_welcome():
    client = make_client()
    client.start(0.0)
    client.data_to_send()
    with pytest.raises(FrameTooLarge) as info:
        client.receive_data(frame_header(HANDSHAKE_MAX_FRAME_SIZE + 1), 0.0)
    closed_with(client, info, "before the handshake")


def test_exactly_the_handshake_limit_is_accepted_as_a_frame():
    # A frame of exactly the limit gets through framing (then fails as the
    # garbage it is, not as too large).
    server = make_server()
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(frame_header(HANDSHAKE_MAX_FRAME_SIZE) + b"\xff" * HANDSHAKE_MAX_FRAME_SIZE, 0.0)
    assert not isinstance(info.value, FrameTooLarge)
    assert "malformed envelope" in str(info.value)


def test_a_smaller_own_limit_applies_before_the_handshake_too():
    server = make_server(max_frame_size=2048)
    with pytest.raises(FrameTooLarge) as info:
        server.receive_data(frame_header(2049), 0.0)
    assert info.value.limit == 2048


def test_the_largest_legitimate_hello_fits_with_room_to_spare():
    # Metadata at both limits, with multi-byte characters, and a long identity.
    per_entry = DEFAULT_MAX_METADATA_SIZE // DEFAULT_MAX_METADATA_ENTRIES  # 128 bytes
    metadata = {f"key-{i:03d}": "é" * ((per_entry - 7) // 2) + "x" * ((per_entry - 7) % 2)
                for i in range(DEFAULT_MAX_METADATA_ENTRIES)}
    assert sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items()) == DEFAULT_MAX_METADATA_SIZE
    client = make_client(peer_id="p" * 1000, name="n" * 1000, metadata=metadata, resume_session_id="r" * 64)
    client.start(0.0)
    hello = wire(client)
    assert len(hello) < HANDSHAKE_MAX_FRAME_SIZE // 4
    server = make_server()
    [handshaken] = server.receive_data(hello, 0.0)
    assert handshaken.metadata == metadata


def test_a_hello_that_would_not_fit_is_refused_before_it_is_sent():
    client = make_client(name="n" * HANDSHAKE_MAX_FRAME_SIZE)
    with pytest.raises(LocalProtocolError, match="before the handshake"):
        client.start(0.0)
    assert client.data_to_send() == []
    assert client.state is State.CONNECTING


def test_once_open_the_limit_is_max_frame_size():
    client, server = open_pair()
    payload = b"p" * MIB
    client.send_request(1, METHOD, payload)
    [request] = receive_via_buffer(server, wire(client), 1.0, step=100 * KIB)
    assert bytes(request.payload) == payload
    # And the other way.
    server.send_response(1, 0, payload=payload)
    [response] = pump(server, client)
    assert bytes(response.payload) == payload


@pytest.mark.parametrize("via_buffer", [False, True])
def test_a_large_request_right_behind_hello_in_the_same_read_is_taken(via_buffer):
    server = make_server()
    data = framed(hello_env()) + framed(request_env(7, payload=b"r" * (200 * KIB)))
    if via_buffer:
        events = receive_via_buffer(server, data, 1.0, step=len(data))
    else:
        events = server.receive_data(data, 1.0)
    handshaken, request = events
    assert isinstance(handshaken, ev.Handshaken)
    assert request.call_id == 7 and len(request.payload) == 200 * KIB


@pytest.mark.parametrize("step", [None, 1000, 70 * KIB])
def test_a_resumed_sessions_large_frames_right_behind_welcome_are_taken(step):
    # The server resends what the client lacks right behind its Welcome,
    # often in one read: the Welcome opens the client, which takes the rest
    # at its full limit.
    client, server = open_pair()
    client.send_request(1, METHOD, b"q")
    pump(client, server)
    server.send_response(1, 0, payload=b"a" * (300 * KIB))
    server.data_to_send()  # lost with the connection
    server.suspend()
    client.suspend()
    kept = server.reliability
    again = Session(Role.CLIENT, peer_id="c", reliability=client.reliability,
                    resume_session_id=server.session_id)
    fresh = make_server(session_id="other")
    again.start(0.0)
    [resume] = pump(again, fresh)
    assert isinstance(resume, ev.ResumeRequested)
    fresh.accept_resume(kept)
    data = wire(fresh)
    assert len(data) > HANDSHAKE_MAX_FRAME_SIZE
    handshaken, response = receive_via_buffer(again, data, 1.0, step=step)
    assert handshaken.resumed and response.call_id == 1 and len(response.payload) == 300 * KIB


def test_a_frame_over_the_handshake_limit_right_behind_a_close_does_not_lose_the_close():
    client = make_client()
    client.start(0.0)
    client.data_to_send()
    close = wire_pb2.Envelope()
    close.close.status.code = StatusCode.RESOURCE_EXHAUSTED
    close.close.status.message = "too many connections"
    [closed] = client.receive_data(framed(close) + frame_header(DEFAULT_MAX_FRAME_SIZE), 0.0)
    assert isinstance(closed, ev.CloseReceived) and closed.message == "too many connections"


def test_a_welcome_opens_the_client_and_frames_behind_it_use_the_full_limit_byte_by_byte():
    client = make_client()
    client.start(0.0)
    client.data_to_send()
    welcome = welcome_env()
    welcome.welcome.max_frame_size = DEFAULT_MAX_FRAME_SIZE
    big = request_env(1, payload=b"b" * (100 * KIB))
    data = framed(welcome) + framed(big)
    events = []
    for i in range(0, len(data), 997):
        events.extend(client.receive_data(data[i:i + 997], 0.0))
    assert [type(e) for e in events] == [ev.Handshaken, ev.RequestReceived]
