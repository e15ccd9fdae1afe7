"""Session: a CLIENT and a SERVER state machine driven against each other.

Bytes move from one side's data_to_send() to the other's receive_data(); no
sockets, no greenlets, no clocks (time is a number the test passes in).
"""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onedrive_rpc.core import wire_pb2
from onedrive_rpc.core import events as ev
from onedrive_rpc.core.framing import DEFAULT_MAX_FRAME_SIZE, LARGE_FRAME, FrameDecoder, frame_header
from onedrive_rpc.core.session import PROTOCOL_VERSION, MessageTooLarge, Role, Session, State
from onedrive_rpc.errors import (FrameTooLarge, LocalProtocolError, ProtocolError, RemoteProtocolError,
                                 StatusCode)
from onedrive_rpc.testing.helpers import receive_via_buffer

KIB = 1024
MIB = 1024 * KIB
METHOD = "/test.Echo/Echo"


# ------------------------------------------------------------------ helpers

def wire(session):
    """Everything the session queued, as one bytes object."""
    return b"".join(bytes(piece) for piece in session.data_to_send())


def pump(src, dst, now=0.0):
    """Move src's queued bytes into dst; return dst's events."""
    return dst.receive_data(wire(src), now)


def envelopes(data):
    """The Envelopes framed in `data` (which must hold whole frames)."""
    decoder = FrameDecoder()
    frames = decoder.feed(data)
    assert decoder.buffered == 0
    result = []
    for frame in frames:
        env = wire_pb2.Envelope()
        env.ParseFromString(bytes(frame))
        result.append(env)
    return result


def only_close(session):
    """The single queued frame, which must be a Close; its Close message."""
    [env] = envelopes(wire(session))
    assert env.WhichOneof("kind") == "close"
    return env.close


def framed(env_or_body):
    body = env_or_body if isinstance(env_or_body, bytes) else env_or_body.SerializeToString()
    return frame_header(len(body)) + body


def request_env(call_id=1, method=METHOD, payload=None, **fields):
    env = wire_pb2.Envelope()
    if payload is not None:  # payload has presence: b"" would still be written
        env.payload = payload
    env.request.call_id = call_id
    env.request.method = method
    for key, value in fields.items():
        setattr(env.request, key, value)
    return env


def hello_env(version=PROTOCOL_VERSION, max_frame_size=0):
    env = wire_pb2.Envelope()
    env.hello.version = version
    env.hello.identity.peer_id = "crafted"
    env.hello.max_frame_size = max_frame_size
    return env


def welcome_env(version=PROTOCOL_VERSION, session_id="S"):
    env = wire_pb2.Envelope()
    env.welcome.version = version
    env.welcome.session_id = session_id
    return env


def make_client(**kwargs):
    kwargs.setdefault("peer_id", "client-id")
    kwargs.setdefault("name", "onedrive-tray")
    kwargs.setdefault("pid", 1234)
    return Session(Role.CLIENT, **kwargs)


def make_server(**kwargs):
    kwargs.setdefault("peer_id", "server-id")
    kwargs.setdefault("name", "onedrive-daemon")
    kwargs.setdefault("pid", 4321)
    kwargs.setdefault("session_id", "session-1")
    return Session(Role.SERVER, **kwargs)


def open_pair(client_kwargs=None, server_kwargs=None):
    client = make_client(**(client_kwargs or {}))
    server = make_server(**(server_kwargs or {}))
    client.start(0.0)
    [server_hs] = pump(client, server)
    [client_hs] = pump(server, client)
    assert isinstance(server_hs, ev.Handshaken) and isinstance(client_hs, ev.Handshaken)
    return client, server


def open_server():
    """A server that got a valid Hello and whose Welcome was drained."""
    server = make_server()
    server.receive_data(framed(hello_env()), 0.0)
    assert server.state is State.OPEN
    server.data_to_send()
    return server


def call(client, server, call_id, payload, **kwargs):
    client.send_request(call_id, METHOD, payload, **kwargs)
    [request] = pump(client, server)
    assert isinstance(request, ev.RequestReceived)
    return request


def assert_failed(session, exc_info, text):
    """The session hit a protocol error: CLOSED, a Close saying why queued."""
    assert text in str(exc_info.value)
    assert session.state is State.CLOSED
    close = only_close(session)
    assert close.status.code == StatusCode.INTERNAL
    assert text in close.status.message
    assert close.status.message == f"protocol error: {exc_info.value}"
    assert close.end_session is True
    return close


# ---------------------------------------------------------------- handshake

def test_handshake_exchanges_identities_and_opens_both_sides():
    client = make_client(metadata={"user": "alice", "lang": "en"}, max_frame_size=2 * MIB)
    server = make_server(max_frame_size=3 * MIB)
    assert client.state is State.CONNECTING
    assert server.state is State.AWAIT_HELLO
    assert client.data_to_send() == []

    client.start(10.0)
    hello_bytes = wire(client)
    [hello] = envelopes(hello_bytes)
    assert hello.WhichOneof("kind") == "hello"
    assert hello.hello.version == PROTOCOL_VERSION == 1
    assert (hello.hello.identity.peer_id, hello.hello.identity.name, hello.hello.identity.pid) == \
        ("client-id", "onedrive-tray", 1234)
    assert hello.hello.max_frame_size == 2 * MIB
    assert dict(hello.hello.metadata) == {"user": "alice", "lang": "en"}
    assert hello.payload == b""

    server_events = server.receive_data(hello_bytes, 11.0)
    assert server_events == [ev.Handshaken(ev.PeerInfo("client-id", "onedrive-tray", 1234),
                                           "session-1", {"user": "alice", "lang": "en"})]
    assert server.state is State.OPEN
    assert server.peer == ev.PeerInfo("client-id", "onedrive-tray", 1234)
    assert server.peer_max_frame_size == 2 * MIB
    assert server.last_received == 11.0

    welcome_bytes = wire(server)
    [welcome] = envelopes(welcome_bytes)
    assert welcome.WhichOneof("kind") == "welcome"
    assert welcome.welcome.version == PROTOCOL_VERSION
    assert welcome.welcome.session_id == "session-1"
    assert welcome.welcome.max_frame_size == 3 * MIB
    assert welcome.welcome.identity.peer_id == "server-id"

    client_events = client.receive_data(welcome_bytes, 12.0)
    assert client_events == [ev.Handshaken(ev.PeerInfo("server-id", "onedrive-daemon", 4321),
                                           "session-1", {})]
    assert client.state is State.OPEN
    assert client.session_id == "session-1"
    assert client.peer == ev.PeerInfo("server-id", "onedrive-daemon", 4321)
    assert client.peer_max_frame_size == 3 * MIB
    assert client.last_received == 12.0
    assert client.data_to_send() == [] and server.data_to_send() == []


def test_handshake_byte_by_byte():
    client, server = make_client(), make_server()
    client.start(0.0)
    data = wire(client)
    for i in range(len(data) - 1):
        assert server.receive_data(data[i:i + 1], 0.0) == []
        assert server.state is State.AWAIT_HELLO
        assert server.data_to_send() == []
    [event] = server.receive_data(data[-1:], 0.0)
    assert isinstance(event, ev.Handshaken)
    assert server.state is State.OPEN


def test_default_peer_limit_and_empty_metadata():
    client, server = open_pair()
    assert client.peer_max_frame_size == server.peer_max_frame_size == DEFAULT_MAX_FRAME_SIZE


def test_start_only_on_a_client():
    server = make_server()
    with pytest.raises(LocalProtocolError):
        server.start(0.0)
    assert server.data_to_send() == []
    client, server = open_pair()
    with pytest.raises(LocalProtocolError):
        client.start(0.0)
    client.send_close(StatusCode.UNAVAILABLE)
    with pytest.raises(LocalProtocolError):
        client.start(0.0)


def test_start_twice_is_a_local_error():
    client = make_client()
    client.start(0.0)
    with pytest.raises(LocalProtocolError):
        client.start(0.0)
    assert len(envelopes(wire(client))) == 1


# ---------------------------------------------------------- request/response

@pytest.mark.parametrize("size", [0, 1, 100, LARGE_FRAME - 10, LARGE_FRAME, 40 * KIB, MIB, MIB + 3])
def test_request_response_round_trip(size):
    client, server = open_pair()
    payload = random.Random(size).randbytes(size)
    request = call(client, server, 7, payload)
    assert request.call_id == 7
    assert request.method == METHOD
    assert bytes(request.payload) == payload
    assert request.timeout is None
    assert request.metadata == {}
    assert server.calls_in_flight == 1

    answer = payload[::-1]
    server.send_response(7, StatusCode.OK, payload=answer)
    assert server.calls_in_flight == 0
    [response] = pump(server, client)
    assert isinstance(response, ev.ResponseReceived)
    assert (response.call_id, response.code, response.message, response.details) == (7, 0, "", "")
    assert bytes(response.payload) == answer


def test_large_payload_is_queued_without_copying():
    client, server = open_pair()
    payload = bytearray(b"p" * (2 * LARGE_FRAME))
    client.send_request(1, METHOD, payload)
    out = client.data_to_send()
    assert any(piece is payload for piece in out)
    data = b"".join(bytes(piece) for piece in out)
    [request] = server.receive_data(data, 0.0)
    assert bytes(request.payload) == payload


def test_queued_bytes_counts_everything_data_to_send_returns():
    client, server = open_pair()
    client.send_request(1, METHOD, b"small")
    client.send_request(2, METHOD, b"L" * (LARGE_FRAME + 5))
    client.send_request(3, METHOD, b"")
    client.send_cancel(1)
    queued = client.queued_bytes
    data = wire(client)
    assert queued == len(data)
    assert client.queued_bytes == 0
    assert client.data_to_send() == []
    events = server.receive_data(data, 0.0)
    assert [type(e) for e in events] == [ev.RequestReceived] * 3 + [ev.CancelReceived]
    assert [bytes(e.payload) for e in events[:3]] == [b"small", b"L" * (LARGE_FRAME + 5), b""]


@pytest.mark.parametrize("timeout, timeout_us, seconds", [
    (None, 0, None),
    (1.5, 1_500_000, 1.5),
    (0.25, 250_000, 0.25),
    (3600, 3_600_000_000, 3600.0),
    (0, 1, 1e-6),            # 0 on the wire would mean "no deadline"
    (0.0000001, 1, 1e-6),
])
def test_timeout_travels_in_microseconds(timeout, timeout_us, seconds):
    client, server = open_pair()
    client.send_request(1, METHOD, b"x", timeout=timeout)
    data = wire(client)
    [env] = envelopes(data)
    assert env.request.timeout_us == timeout_us
    [request] = server.receive_data(data, 0.0)
    assert request.timeout == seconds


def test_request_metadata_arrives():
    client, server = open_pair()
    request = call(client, server, 3, b"x", metadata={"trace": "abc", "empty": ""})
    assert request.metadata == {"trace": "abc", "empty": ""}


def test_error_response_carries_code_message_details():
    client, server = open_pair()
    call(client, server, 9, b"question")
    server.send_response(9, StatusCode.NOT_FOUND, "no such drive", "Traceback: ...")
    [response] = pump(server, client)
    assert response == ev.ResponseReceived(9, StatusCode.NOT_FOUND, "no such drive", "Traceback: ...", b"")
    assert response.code == 5


def test_responses_in_any_order_and_interleaved_calls():
    client, server = open_pair()
    for call_id in (1, 2, 3):
        client.send_request(call_id, METHOD, str(call_id).encode())
    requests = pump(client, server)
    assert [(r.call_id, bytes(r.payload)) for r in requests] == [(1, b"1"), (2, b"2"), (3, b"3")]
    assert server.calls_in_flight == 3
    server.send_response(3, StatusCode.OK, payload=b"three")
    server.send_response(1, StatusCode.CANCELLED, "late")
    server.send_response(2, StatusCode.OK, payload=b"two")
    responses = pump(server, client)
    assert [(r.call_id, r.code, bytes(r.payload)) for r in responses] == \
        [(3, 0, b"three"), (1, 1, b""), (2, 0, b"two")]
    assert server.calls_in_flight == 0


def test_events_are_frozen():
    client, server = open_pair()
    request = call(client, server, 1, b"x")
    with pytest.raises(AttributeError):
        request.call_id = 2


# ----------------------------------------------------------------- call ids

def test_duplicate_in_flight_call_id_is_a_protocol_error():
    client, server = open_pair()
    call(client, server, 7, b"first")
    client.send_request(7, METHOD, b"second")
    with pytest.raises(RemoteProtocolError) as info:
        pump(client, server)
    close = assert_failed(server, info, "call id 7 is already in flight")
    assert close.status.message == "protocol error: call id 7 is already in flight"

    # The client learns why.
    data = framed(wire_pb2.Envelope(close=close))
    [closed] = client.receive_data(data, 1.0)
    assert closed == ev.CloseReceived(StatusCode.INTERNAL, close.status.message, True)
    assert client.state is State.CLOSED


def test_call_id_can_be_reused_after_the_response():
    client, server = open_pair()
    for round_ in range(3):
        request = call(client, server, 7, b"again %d" % round_)
        assert bytes(request.payload) == b"again %d" % round_
        server.send_response(7, StatusCode.OK, payload=b"ok")
        [response] = pump(server, client)
        assert response.call_id == 7
    assert server.state is State.OPEN


def test_request_without_method_is_a_protocol_error():
    server = open_server()
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(framed(request_env(4, method="")), 0.0)
    assert_failed(server, info, "request 4 names no method")


# ------------------------------------------------------------------ cancel

def test_cancel_of_an_in_flight_call():
    client, server = open_pair()
    call(client, server, 5, b"slow")
    client.send_cancel(5, "user gave up")
    assert pump(client, server) == [ev.CancelReceived(5, "user gave up", False)]
    # The call is still the server's to answer.
    assert server.calls_in_flight == 1
    server.send_response(5, StatusCode.CANCELLED, "cancelled")
    [response] = pump(server, client)
    assert (response.call_id, response.code) == (5, StatusCode.CANCELLED)


def test_a_cancel_says_whether_the_callers_deadline_passed():
    client, server = open_pair()
    call(client, server, 5, b"slow", timeout=10)
    client.send_cancel(5, "deadline exceeded", StatusCode.DEADLINE_EXCEEDED)
    assert pump(client, server) == [ev.CancelReceived(5, "deadline exceeded", True)]
    call(client, server, 6, b"slow")
    client.send_cancel(6, "odd", 77)  # any other code is a plain cancel
    assert pump(client, server) == [ev.CancelReceived(6, "odd", False)]


def test_cancel_of_an_unknown_or_answered_call_yields_nothing():
    client, server = open_pair()
    client.send_cancel(99, "never sent")
    assert pump(client, server) == []
    call(client, server, 5, b"x")
    server.send_response(5, StatusCode.OK, payload=b"y")
    client.send_cancel(5, "crossed the response")
    assert pump(client, server) == []
    assert server.state is State.OPEN
    assert server.data_to_send() != []  # the response, nothing about the cancel


# --------------------------------------------------- errors before handshake

def test_server_receiving_a_request_before_hello():
    server = make_server()
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(framed(request_env(1, payload=b"early")), 0.0)
    assert_failed(server, info, "request frame received while await_hello")
    assert server.peer is None


@pytest.mark.parametrize("kind", ["response", "cancel"])
def test_server_receiving_other_frames_before_hello(kind):
    server = make_server()
    env = wire_pb2.Envelope()
    getattr(env, kind).call_id = 1
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(framed(env), 0.0)
    assert_failed(server, info, f"{kind} frame received while await_hello")


def test_client_receiving_hello():
    client = make_client()
    client.start(0.0)
    client.data_to_send()
    with pytest.raises(RemoteProtocolError) as info:
        client.receive_data(framed(hello_env()), 0.0)
    assert_failed(client, info, "hello frame received by a client while connecting")


def test_client_receiving_a_request_before_welcome():
    client = make_client()
    client.start(0.0)
    client.data_to_send()
    with pytest.raises(RemoteProtocolError) as info:
        client.receive_data(framed(request_env()), 0.0)
    assert_failed(client, info, "request frame received while connecting")


def test_second_hello_is_a_protocol_error():
    server = open_server()
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(framed(hello_env()), 0.0)
    assert_failed(server, info, "hello frame received by a server while open")


def test_server_receiving_welcome():
    server = make_server()
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(framed(welcome_env()), 0.0)
    assert_failed(server, info, "welcome frame received by a server while await_hello")


def test_second_welcome_is_a_protocol_error():
    client, server = open_pair()
    with pytest.raises(RemoteProtocolError) as info:
        client.receive_data(framed(welcome_env()), 0.0)
    assert_failed(client, info, "welcome frame received by a client while open")


@pytest.mark.parametrize("version", [2, 0, 77])
def test_hello_with_another_version(version):
    server = make_server()
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(framed(hello_env(version=version)), 0.0)
    message = (f"protocol version mismatch: the client speaks version {version}, "
               f"this server speaks version 1")
    assert str(info.value) == message
    assert server.state is State.CLOSED
    assert server.peer is None
    close = only_close(server)  # one Close, no Welcome, no second Close
    assert close.status.code == StatusCode.FAILED_PRECONDITION
    assert close.status.message == message
    assert f"version {version}" in close.status.message and "version 1" in close.status.message


@pytest.mark.parametrize("version", [2, 0])
def test_welcome_with_another_version(version):
    client = make_client()
    client.start(0.0)
    client.data_to_send()
    with pytest.raises(RemoteProtocolError) as info:
        client.receive_data(framed(welcome_env(version=version)), 0.0)
    message = (f"protocol version mismatch: the server speaks version {version}, "
               f"this client speaks version 1")
    assert str(info.value) == message
    assert client.state is State.CLOSED
    assert client.peer is None and client.session_id == ""
    close = only_close(client)
    assert close.status.code == StatusCode.FAILED_PRECONDITION
    assert close.status.message == message


# ------------------------------------------------------ malformed frames

def _fresh(which):
    if which == "server-await-hello":
        return make_server()
    if which == "server-open":
        return open_server()
    client, _ = open_pair()
    return client


SESSIONS = ["server-await-hello", "server-open", "client-open"]


@pytest.mark.parametrize("which", SESSIONS)
def test_garbage_envelope(which):
    session = _fresh(which)
    with pytest.raises(RemoteProtocolError) as info:
        session.receive_data(frame_header(10) + b"\xff" * 10, 0.0)
    assert_failed(session, info, "malformed envelope")


@pytest.mark.parametrize("which", SESSIONS)
@pytest.mark.parametrize("body", [b"", wire_pb2.Envelope(ack_now=True).SerializeToString()],
                         ids=["zero-length", "no-kind"])
def test_envelope_without_kind(which, body):
    session = _fresh(which)
    with pytest.raises(RemoteProtocolError) as info:
        session.receive_data(framed(body), 0.0)
    assert_failed(session, info, "unexpected empty frame: not supported by protocol version 1")


# The shared-secret handshake frames are reserved (spec §4.2).
UNSUPPORTED_KINDS = ["challenge", "proof"]


@pytest.mark.parametrize("kind", UNSUPPORTED_KINDS)
def test_unsupported_frame_kind(kind):
    server = open_server()
    env = wire_pb2.Envelope(payload=b"item")
    getattr(env, kind).SetInParent()
    assert env.WhichOneof("kind") == kind
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(framed(env), 0.0)
    assert_failed(server, info, f"unexpected {kind} frame: not supported by protocol version 1")


def test_unsupported_kind_on_the_client_too():
    client, _ = open_pair()
    env = wire_pb2.Envelope()
    env.challenge.nonce = b"n" * 16
    with pytest.raises(RemoteProtocolError) as info:
        client.receive_data(framed(env), 0.0)
    assert_failed(client, info, "unexpected challenge frame")


def test_nothing_is_processed_after_a_protocol_error():
    server = open_server()
    with pytest.raises(RemoteProtocolError):
        server.receive_data(framed(b"\xff" * 10) + framed(request_env(1)), 0.0)
    assert server.calls_in_flight == 0
    server.data_to_send()
    assert server.receive_data(framed(request_env(2)), 1.0) == []
    assert server.calls_in_flight == 0
    assert server.data_to_send() == []
    with pytest.raises(LocalProtocolError):
        server.send_response(2, StatusCode.OK)


# ------------------------------------------------------- payload encoding

def test_payload_is_written_first():
    client, server = open_pair()
    client.send_request(1, METHOD, b"abc")
    data = wire(client)
    assert data[4] == 0x0A  # field 1, length-delimited
    assert data[5:8] == bytes([3]) + b"ab"
    assert envelopes(data)[0].payload == b"abc"


def test_large_payload_is_written_first():
    client, server = open_pair()
    payload = b"Q" * (LARGE_FRAME + 1)
    client.send_request(1, METHOD, payload)
    data = wire(client)
    assert data[4] == 0x0A
    assert data[5:8] == bytes([0x81, 0x80, 0x02])  # varint(32769)
    assert data[8:8 + len(payload)] == payload


def test_response_payload_is_written_first():
    client, server = open_pair()
    call(client, server, 2, b"")
    server.send_response(2, StatusCode.OK, payload=b"answer")
    data = wire(server)
    assert data[4] == 0x0A
    assert envelopes(data)[0].payload == b"answer"


def test_no_payload_field_when_payload_is_empty():
    client, server = open_pair()
    client.send_request(1, METHOD, b"")
    data = wire(client)
    assert data[4] == 0x10  # seq (field 2): no payload field (1) before it
    [request] = server.receive_data(data, 0.0)
    assert bytes(request.payload) == b""


@pytest.mark.parametrize("size", [1, 127, 128, LARGE_FRAME, 70 * KIB])
def test_peer_may_put_the_payload_after_the_other_fields(size):
    server = open_server()
    payload = random.Random(size).randbytes(size)
    request_part = request_env(11).SerializeToString()
    payload_part = wire_pb2.Envelope(payload=payload).SerializeToString()
    body = request_part + payload_part
    assert body[0] != 0x0A
    [request] = server.receive_data(framed(body), 0.0)
    assert (request.call_id, request.method) == (11, METHOD)
    assert bytes(request.payload) == payload


@pytest.mark.parametrize("size", [0, 5, LARGE_FRAME + 3])
def test_standard_protobuf_encoding_is_understood(size):
    server = open_server()
    payload = b"s" * size
    env = request_env(12, payload=payload, timeout_us=2_000_000)
    env.request.metadata["k"] = "v"
    [request] = server.receive_data(framed(env), 0.0)
    assert request == ev.RequestReceived(12, METHOD, request.payload, 2.0, {"k": "v"}, 2.0)
    assert bytes(request.payload) == payload


def test_payload_given_twice_the_last_one_wins():
    server = open_server()
    body = (wire_pb2.Envelope(payload=b"first").SerializeToString()
            + request_env(1).SerializeToString()
            + wire_pb2.Envelope(payload=b"second").SerializeToString())
    reference = wire_pb2.Envelope()
    reference.ParseFromString(body)
    assert reference.payload == b"second"
    [request] = server.receive_data(framed(body), 0.0)
    assert bytes(request.payload) == b"second"


def test_payload_given_twice_the_last_one_wins_even_when_empty():
    server = open_server()
    body = (wire_pb2.Envelope(payload=b"first").SerializeToString()
            + request_env(1).SerializeToString()
            + b"\x0a\x00")
    reference = wire_pb2.Envelope()
    reference.ParseFromString(body)
    assert reference.payload == b""
    [request] = server.receive_data(framed(body), 0.0)
    assert bytes(request.payload) == b""


@pytest.mark.parametrize("body, text", [
    (b"\x0a\x64abc", "payload runs past the frame"),
    (b"\x0a\x80\x80\x04" + b"x" * 10, "payload runs past the frame"),
    (b"\x0a" + b"\xff" * 9 + b"\x01", "bad payload length"),
    (b"\x0a\x80", "malformed envelope"),
    (b"\x0a\x03abc\xff\xff", "malformed envelope"),
])
def test_truncated_or_bad_payload_length(body, text):
    server = open_server()
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(framed(body), 0.0)
    assert_failed(server, info, text)


def test_single_byte_payload_tag_is_malformed():
    server = open_server()
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(framed(b"\x0a"), 0.0)
    assert_failed(server, info, "malformed envelope")


# ---------------------------------------------------------- message size

def _largest_payload_that_fits(limit, call_id=1):
    """The payload size whose request frame body is exactly `limit` bytes."""
    env = request_env(call_id)
    env.seq = 1  # the first sequenced frame of the session
    tail = len(env.SerializeToString())
    for size in range(limit, 0, -1):
        varint_len = len(wire_pb2.Envelope(payload=b"x" * size).SerializeToString()) - size - 1
        if 1 + varint_len + size + tail == limit:
            return size
    raise AssertionError("no size fits")


def test_request_larger_than_the_peer_accepts_is_refused():
    client, server = open_pair(server_kwargs={"max_frame_size": 1024})
    assert client.peer_max_frame_size == 1024
    assert server.peer_max_frame_size == DEFAULT_MAX_FRAME_SIZE

    fits = _largest_payload_that_fits(1024)
    with pytest.raises(MessageTooLarge) as info:
        client.send_request(1, METHOD, b"x" * (fits + 1))
    assert (info.value.size, info.value.limit) == (1025, 1024)
    assert isinstance(info.value, LocalProtocolError)
    assert client.queued_bytes == 0
    assert client.data_to_send() == []
    assert client.state is State.OPEN

    client.send_request(1, METHOD, b"x" * fits)
    data = wire(client)
    assert len(data) == 4 + 1024
    [request] = server.receive_data(data, 0.0)
    assert len(request.payload) == fits


def test_large_payload_refused_whole():
    client, server = open_pair(server_kwargs={"max_frame_size": 1024})
    with pytest.raises(MessageTooLarge) as info:
        client.send_request(1, METHOD, b"x" * MIB)
    assert info.value.limit == 1024 and info.value.size > MIB
    assert client.data_to_send() == []


def test_oversized_control_frame_is_refused():
    client, server = open_pair(server_kwargs={"max_frame_size": 1024})
    with pytest.raises(MessageTooLarge):
        client.send_request(1, METHOD, b"", metadata={"big": "m" * 2000})
    with pytest.raises(MessageTooLarge):
        client.send_cancel(1, "r" * 2000)
    assert client.data_to_send() == []


def test_response_too_large_keeps_the_call_open():
    client, server = open_pair(client_kwargs={"max_frame_size": 1024})
    assert server.peer_max_frame_size == 1024
    call(client, server, 3, b"q")
    with pytest.raises(MessageTooLarge):
        server.send_response(3, StatusCode.OK, payload=b"r" * 2000)
    assert server.data_to_send() == []
    assert server.calls_in_flight == 1
    server.send_response(3, StatusCode.RESOURCE_EXHAUSTED, "response too large")
    [response] = pump(server, client)
    assert (response.call_id, response.code) == (3, StatusCode.RESOURCE_EXHAUSTED)


def test_frame_larger_than_we_accept_closes_the_session():
    server = make_server(max_frame_size=1024)
    server.receive_data(framed(hello_env()), 0.0)
    server.data_to_send()
    with pytest.raises(FrameTooLarge) as info:
        server.receive_data(frame_header(1025), 0.0)
    assert (info.value.size, info.value.limit) == (1025, 1024)
    assert_failed(server, info, "frame of 1025 bytes exceeds the maximum frame size of 1024 bytes")


def test_events_before_an_oversized_frame_are_delivered_first():
    server = make_server(max_frame_size=1024)
    server.receive_data(framed(hello_env()), 0.0)
    server.data_to_send()
    data = framed(request_env(1, payload=b"ok")) + frame_header(5000) + b"junk"
    [request] = server.receive_data(data, 2.0)
    assert request.call_id == 1
    assert server.last_received == 2.0
    with pytest.raises(FrameTooLarge) as info:
        server.receive_data(b"", 3.0)
    assert_failed(server, info, "frame of 5000 bytes")


def test_events_before_an_oversized_frame_are_delivered_first_via_buffer():
    server = make_server(max_frame_size=1024)
    data = framed(hello_env()) + frame_header(5000)
    space = server.get_buffer()
    space[:len(data)] = data
    [handshaken] = server.buffer_updated(len(data), 1.0)
    assert isinstance(handshaken, ev.Handshaken)
    server.data_to_send()
    with pytest.raises(FrameTooLarge) as info:
        server.get_buffer()
    assert_failed(server, info, "frame of 5000 bytes")


def test_session_rejects_invalid_max_frame_size():
    with pytest.raises(ValueError):
        make_server(max_frame_size=0)
    with pytest.raises(ValueError):
        make_client(max_frame_size=2**32)


# ------------------------------------------------------- local misuse

def test_sending_before_open_is_a_local_error():
    client = make_client()
    server = make_server()
    for session in (client, server):
        with pytest.raises(LocalProtocolError):
            session.send_request(1, METHOD, b"")
        with pytest.raises(LocalProtocolError):
            session.send_cancel(1)
    client.start(0.0)
    client.data_to_send()
    with pytest.raises(LocalProtocolError, match="connecting"):
        client.send_request(1, METHOD, b"")
    with pytest.raises(LocalProtocolError, match="await_hello"):
        server.send_response(1, StatusCode.OK)
    assert client.data_to_send() == [] and server.data_to_send() == []


def test_sending_after_close_is_a_local_error():
    client, server = open_pair()
    call(client, server, 1, b"")
    client.send_close(StatusCode.OK, "done")
    client.data_to_send()
    server.send_close(StatusCode.OK, "done")
    server.data_to_send()
    for session in (client, server):
        with pytest.raises(LocalProtocolError, match="closed"):
            session.send_request(2, METHOD, b"")
        with pytest.raises(LocalProtocolError):
            session.send_cancel(1)
    with pytest.raises(LocalProtocolError):
        server.send_response(1, StatusCode.OK)
    # A second close is a no-op.
    client.send_close(StatusCode.INTERNAL, "again")
    assert client.data_to_send() == []


def test_response_to_a_call_not_in_flight_is_a_local_error():
    client, server = open_pair()
    with pytest.raises(LocalProtocolError, match="call 4 is not in flight"):
        server.send_response(4, StatusCode.OK)
    call(client, server, 4, b"")
    server.send_response(4, StatusCode.OK)
    with pytest.raises(LocalProtocolError, match="call 4 is not in flight"):
        server.send_response(4, StatusCode.OK)
    assert len(envelopes(wire(server))) == 1
    assert server.state is State.OPEN


def test_protocol_errors_are_named_by_whose_fault():
    assert issubclass(LocalProtocolError, ProtocolError)
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert issubclass(MessageTooLarge, LocalProtocolError)
    assert issubclass(FrameTooLarge, RemoteProtocolError)


# ------------------------------------------------------------------ close

@pytest.mark.parametrize("end_session", [True, False])
def test_close_reaches_the_other_side(end_session):
    client, server = open_pair()
    client.send_close(StatusCode.UNAVAILABLE, "going away", end_session=end_session)
    assert client.state is State.CLOSED
    data = wire(client)
    [env] = envelopes(data)
    assert env.WhichOneof("kind") == "close"
    assert (env.close.status.code, env.close.status.message, env.close.end_session) == \
        (StatusCode.UNAVAILABLE, "going away", end_session)

    events = server.receive_data(data, 5.0)
    assert events == [ev.CloseReceived(StatusCode.UNAVAILABLE, "going away", end_session)]
    assert server.state is State.CLOSED
    assert server.last_received == 5.0
    assert server.data_to_send() == []  # no Close echoed back


def test_server_closes_before_the_handshake():
    client = make_client()
    server = make_server()
    client.start(0.0)
    client.data_to_send()
    server.send_close(StatusCode.UNAVAILABLE, "shutting down")
    assert server.state is State.CLOSED
    assert pump(server, client) == [ev.CloseReceived(StatusCode.UNAVAILABLE, "shutting down", True)]
    assert client.state is State.CLOSED
    assert client.peer is None


def test_close_received_before_hello():
    server = make_server()
    env = wire_pb2.Envelope()
    env.close.status.code = StatusCode.CANCELLED
    [closed] = server.receive_data(framed(env), 0.0)
    assert closed == ev.CloseReceived(StatusCode.CANCELLED, "", False)
    assert server.state is State.CLOSED


def test_frames_after_close_are_ignored():
    client, server = open_pair()
    client.send_request(1, METHOD, b"before")
    client.send_close(StatusCode.OK, "bye")
    data = wire(client)
    data += framed(request_env(2)) + framed(b"\xff" * 10) + framed(hello_env())
    events = server.receive_data(data, 0.0)
    assert [type(e) for e in events] == [ev.RequestReceived, ev.CloseReceived]
    assert events[0].call_id == 1
    assert server.calls_in_flight == 1
    assert server.receive_data(framed(request_env(3)) + framed(b"\xff"), 1.0) == []
    assert server.calls_in_flight == 1
    assert server.data_to_send() == []
    assert server.state is State.CLOSED


def test_frames_after_our_own_close_are_ignored():
    client, server = open_pair()
    server.send_close(StatusCode.OK)
    client.send_request(1, METHOD, b"crossing")
    assert pump(client, server) == []
    assert server.calls_in_flight == 0


# --------------------------------------------------- get_buffer / buffer_updated

@pytest.mark.parametrize("step", [1, 3, 1000, None])
def test_receive_via_buffer_like_receive_data(step):
    client = make_client(metadata={"m": "1"})
    server = make_server()
    client.start(0.0)
    [handshaken] = receive_via_buffer(server, wire(client), 1.5, step)
    assert handshaken.peer.peer_id == "client-id" and handshaken.metadata == {"m": "1"}
    assert server.last_received == 1.5
    [welcome] = receive_via_buffer(client, wire(server), 2.5, step)
    assert welcome.session_id == "session-1"
    assert client.last_received == 2.5

    big = random.Random(4).randbytes(MIB // 4 + 1)
    client.send_request(1, METHOD, b"small", timeout=2.0, metadata={"a": "b"})
    client.send_request(2, METHOD, big)
    client.send_cancel(1, "why not")
    events = receive_via_buffer(server, wire(client), 3.5, step if step != 1 else 997)
    assert events[0] == ev.RequestReceived(1, METHOD, events[0].payload, 2.0, {"a": "b"}, 5.5)
    assert bytes(events[0].payload) == b"small"
    assert (events[1].call_id, bytes(events[1].payload)) == (2, big)
    assert events[2] == ev.CancelReceived(1, "why not")
    assert server.last_received == 3.5


def test_last_received_moves_only_when_a_frame_completes():
    client, server = open_pair()
    assert server.last_received == 0.0
    client.send_request(1, METHOD, b"payload")
    data = wire(client)
    assert server.receive_data(data[:3], 5.0) == []
    assert server.last_received == 0.0
    space = server.get_buffer()
    space[:4] = data[3:7]
    assert server.buffer_updated(4, 6.0) == []
    assert server.last_received == 0.0
    [request] = server.receive_data(data[7:], 7.0)
    assert request.call_id == 1
    assert server.last_received == 7.0


def test_last_received_starts_unset():
    assert make_client().last_received is None
    assert make_server().last_received is None


# ------------------------------------------- protocol spec (rpc/protos/README.md)

def _hex(text):
    return bytes.fromhex(" ".join(text.split()))


SPEC_HELLO = _hex("""00 00 00 22 b2 01 1f 08 01 12 0c 0a 02 63 31 12 04 74 72 61 79 18 2a
                     1a 05 08 e8 07 10 03 20 80 80 80 08 48 80 08""")
SPEC_WELCOME = _hex("""00 00 00 3b ba 01 38 08 01 12 0e 0a 02 73 31 12 06 64 61 65 6d 6f 6e 18 07
                       1a 05 08 e8 07 10 03 20 80 80 80 08 2a 03 61 62 63 40 80 08
                       4a 10 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f""")
SPEC_REQUEST = _hex("""00 00 00 31 0a 04 0a 02 68 69 10 01 2a 27 08 01 12 1f 2f 6f 6e 65 64 72 69 76 65
                       5f 72 70 63 2e 74 65 73 74 69 6e 67 2e 45 63 68 6f 2f 45 63 68 6f 18 80 89 7a""")
SPEC_RESPONSE = _hex("00 00 00 0e 0a 04 0a 02 68 69 10 01 18 01 32 02 08 01")
SPEC_CLOSE = _hex("""00 00 00 19 d2 01 16 0a 12 08 0e 12 0e 73 65 72 76 65 72 20 73 74 6f 70 70 65 64
                     10 01""")


def test_worked_example_bytes():
    """Spec 5.7: the exact bytes of Hello, Welcome, Request, Response and Close."""
    client = Session(Role.CLIENT, peer_id="c1", name="tray", pid=42, max_concurrent_calls=1024)
    server = Session(Role.SERVER, peer_id="s1", name="daemon", pid=7, session_id="abc",
                     max_concurrent_calls=1024, resume_token=bytes(range(16)))
    client.start(0.0)
    assert wire(client) == SPEC_HELLO
    assert server.receive_data(SPEC_HELLO, 0.0)[0].peer == ev.PeerInfo("c1", "tray", 42)
    assert wire(server) == SPEC_WELCOME
    assert client.receive_data(SPEC_WELCOME, 0.0)[0].session_id == "abc"
    hi = _hex("0a 02 68 69")
    client.send_request(1, "/onedrive_rpc.testing.Echo/Echo", hi, timeout=2.0)
    assert wire(client) == SPEC_REQUEST
    [request] = server.receive_data(SPEC_REQUEST, 10.0)
    assert request == ev.RequestReceived(1, "/onedrive_rpc.testing.Echo/Echo", hi, 2.0, {}, 12.0)
    server.send_response(1, StatusCode.OK, payload=hi)
    assert wire(server) == SPEC_RESPONSE
    assert client.receive_data(SPEC_RESPONSE, 0.0) == [ev.ResponseReceived(1, 0, "", "", hi)]
    server.send_close(StatusCode.UNAVAILABLE, "server stopped")
    assert wire(server) == SPEC_CLOSE
    assert client.receive_data(SPEC_CLOSE, 0.0) == [
        ev.CloseReceived(StatusCode.UNAVAILABLE, "server stopped", True)]


def test_ok_response_omits_status():
    client, server = open_pair()
    call(client, server, 1, b"")
    server.send_response(1, StatusCode.OK)
    [env] = envelopes(wire(server))
    assert env.WhichOneof("kind") == "response"
    assert not env.response.HasField("status")
    assert not env.HasField("payload")


@pytest.mark.parametrize("timeout_us, now, deadline", [
    (0, 100.0, None),
    (250_000, 100.0, 100.25),
    (1, 7.0, 7.000001),
    (3_000_000, 0.0, 3.0),
])
def test_deadline_is_arrival_time_plus_timeout(timeout_us, now, deadline):
    server = open_server()
    [request] = server.receive_data(framed(request_env(1, timeout_us=timeout_us)), now)
    if deadline is None:
        assert request.deadline is None
    else:
        assert request.deadline == pytest.approx(deadline, abs=1e-9)
    assert request.timeout == (timeout_us / 1e6 if timeout_us else None)


def test_deadline_uses_the_time_the_frame_completed():
    server = open_server()
    data = framed(request_env(1, timeout_us=1_000_000))
    assert server.receive_data(data[:5], 50.0) == []
    [request] = server.receive_data(data[5:], 60.0)
    assert request.deadline == 61.0


@pytest.mark.parametrize("announced", [1, 512, 1023])
def test_peer_announcing_a_frame_limit_below_1024_in_hello(announced):
    server = make_server()
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(framed(hello_env(max_frame_size=announced)), 0.0)
    assert_failed(server, info, f"peer announced a maximum frame size of {announced} bytes; "
                                f"the protocol requires at least 1024")


def test_peer_announcing_a_frame_limit_below_1024_in_welcome():
    client = make_client()
    client.start(0.0)
    client.data_to_send()
    env = welcome_env()
    env.welcome.max_frame_size = 1000
    with pytest.raises(RemoteProtocolError) as info:
        client.receive_data(framed(env), 0.0)
    assert_failed(client, info, "peer announced a maximum frame size of 1000 bytes")
    assert client.peer_max_frame_size == DEFAULT_MAX_FRAME_SIZE


@pytest.mark.parametrize("announced, expected", [(0, 5000), (1024, 1024), (2**32 - 1, 2**32 - 1)])
def test_peer_frame_limit_floor_and_absent(announced, expected):
    server = make_server(max_frame_size=5000)
    server.receive_data(framed(hello_env(max_frame_size=announced)), 0.0)
    assert server.state is State.OPEN
    # 0 (absent): assume the peer takes what we take.
    assert server.peer_max_frame_size == expected


def test_session_refuses_its_own_frame_limit_below_1024():
    with pytest.raises(ValueError):
        make_client(max_frame_size=512)


def test_frame_whose_only_kind_is_unknown_is_empty():
    server = open_server()
    body = b"\xf2\x01\x00"  # field 30, length-delimited, empty: not a kind version 1 knows
    probe = wire_pb2.Envelope()
    probe.ParseFromString(body)
    assert probe.WhichOneof("kind") is None
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(framed(body), 0.0)
    assert_failed(server, info, "unexpected empty frame")


def test_unknown_fields_inside_known_messages_are_ignored():
    server = open_server()
    body = request_env(4).SerializeToString() + b"\xf8\x07\x01"  # field 127 varint
    [request] = server.receive_data(framed(body), 0.0)
    assert request.call_id == 4


def test_a_hello_naming_an_unknown_session_gets_a_new_one():
    server = make_server()
    env = hello_env()
    env.hello.resume_session_id = "old"
    env.hello.resume_received_seq = 9
    env.hello.auth_nonce = b"n" * 16  # reserved: ignored
    [request] = server.receive_data(framed(env), 0.0)
    assert isinstance(request, ev.ResumeRequested)
    assert (request.session_id, request.received_seq) == ("old", 9)
    assert server.state is State.AWAIT_HELLO and wire(server) == b""
    handshaken = server.refuse_resume()
    assert handshaken.session_id == "session-1" and handshaken.resumed is False
    [welcome] = envelopes(wire(server))
    assert welcome.welcome.resumed is False and welcome.welcome.session_id == "session-1"
    assert welcome.welcome.resume_received_seq == 0


def test_server_accepts_a_request_right_behind_hello():
    server = make_server()
    events = server.receive_data(framed(hello_env()) + framed(request_env(1, payload=b"eager")), 0.0)
    assert [type(e) for e in events] == [ev.Handshaken, ev.RequestReceived]
    assert bytes(events[1].payload) == b"eager"


def test_close_with_status_absent():
    client, server = open_pair()
    env = wire_pb2.Envelope()
    env.close.SetInParent()
    assert client.receive_data(framed(env), 0.0) == [ev.CloseReceived(0, "", False)]
    assert client.state is State.CLOSED


def test_events_before_a_malformed_frame_in_the_same_read_are_delivered():
    server = open_server()
    data = framed(request_env(1, payload=b"good")) + framed(b"\xff" * 10)
    events = []
    try:
        events += server.receive_data(data, 0.0)
        events += server.receive_data(b"", 0.0)
    except RemoteProtocolError as exc:
        events += getattr(exc, "events", [])
        error = exc
    else:
        error = None
    assert [(e.call_id, bytes(e.payload)) for e in events] == [(1, b"good")]
    assert error is not None and "malformed envelope" in str(error)
    assert server.state is State.CLOSED


# ------------------------------------------------------------ property test

@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(sizes=st.lists(st.one_of(st.integers(0, 300), st.integers(LARGE_FRAME - 8, 100 * KIB)),
                      min_size=1, max_size=6),
       chunks=st.lists(st.integers(1, 70 * KIB), min_size=1, max_size=6),
       seed=st.integers(0, 2**32 - 1))
def test_any_calls_split_anywhere_arrive_intact(sizes, chunks, seed):
    client, server = open_pair()
    rng = random.Random(seed)
    payloads = [rng.randbytes(size) for size in sizes]
    for call_id, payload in enumerate(payloads, start=1):
        client.send_request(call_id, METHOD, payload)
    data = wire(client)
    events = []
    offset = 0
    i = 0
    while offset < len(data):
        size = chunks[i % len(chunks)]
        events.extend(server.receive_data(data[offset:offset + size], float(i)))
        offset += size
        i += 1
    # Checked after everything arrived: earlier payloads were not overwritten.
    assert [(e.call_id, bytes(e.payload)) for e in events] == list(enumerate(payloads, start=1))
    for call_id, payload in enumerate(payloads, start=1):
        server.send_response(call_id, StatusCode.OK, payload=payload[::-1])
    responses = pump(server, client)
    assert [(r.call_id, bytes(r.payload)) for r in responses] == \
        [(call_id, p[::-1]) for call_id, p in enumerate(payloads, start=1)]
