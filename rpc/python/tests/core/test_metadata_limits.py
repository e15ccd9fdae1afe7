"""Metadata is limited in entries and bytes, both ways (issue 10: 14 MiB of
Hello metadata were accepted before the handshake; 12 MB of metadata cost
165 ms of server CPU per request).

Received: a Hello or a Notify over the limits is refused with a Close, a
Request with a RESOURCE_EXHAUSTED Response and no event (its handler never
runs). Sent: refused locally (MetadataTooLarge, RESOURCE_EXHAUSTED),
nothing queued.
"""
from __future__ import annotations

import pytest

from onedrive_rpc.core import events as ev
from onedrive_rpc.core import wire_pb2
from onedrive_rpc.core.metadata import DEFAULT_MAX_METADATA_ENTRIES, DEFAULT_MAX_METADATA_SIZE
from onedrive_rpc.core.pattern_frames import Notify
from onedrive_rpc.core.session import Role, Session, State
from onedrive_rpc.errors import (LocalProtocolError, MessageTooLarge, MetadataTooLarge, PeerMetadataTooLarge,
                                 RemoteProtocolError, StatusCode)
from onedrive_rpc.testing.helpers import envelopes, framed, wire

METHOD = "/test.Echo/Echo"
MAX_ENTRIES = DEFAULT_MAX_METADATA_ENTRIES
MAX_SIZE = DEFAULT_MAX_METADATA_SIZE


def entries(n):
    return {f"k{i}": "v" for i in range(n)}


def sized(n_bytes, char="x"):
    """One entry of exactly n_bytes (key "k" included), in `char`s."""
    width = len(char.encode())
    assert (n_bytes - 1) % width == 0
    return {"k": char * ((n_bytes - 1) // width)}


assert MAX_SIZE % 2 == 0  # for the two-byte "é" cases below
TOO_MANY = entries(MAX_ENTRIES + 1)
TOO_BIG = sized(MAX_SIZE + 1)
# More bytes than the limit in fewer characters than the limit.
TOO_BIG_IN_UTF8 = sized(MAX_SIZE + 1, "é")
OVER_LIMITS = [
    pytest.param(TOO_MANY,
                 f"metadata of {MAX_ENTRIES + 1} entries exceeds the limit of {MAX_ENTRIES} entries",
                 id="entries"),
    pytest.param(TOO_BIG, f"metadata of {MAX_SIZE + 1} bytes exceeds the limit of {MAX_SIZE} bytes",
                 id="bytes"),
    pytest.param(TOO_BIG_IN_UTF8, f"metadata of {MAX_SIZE + 1} bytes exceeds the limit of {MAX_SIZE} bytes",
                 id="utf8-bytes"),
]
AT_LIMITS = [entries(MAX_ENTRIES), sized(MAX_SIZE), {"kk": "é" * ((MAX_SIZE - 2) // 2)}]


def make_client(**kwargs):
    return Session(Role.CLIENT, **{"peer_id": "client-id", **kwargs})


def make_server(**kwargs):
    return Session(Role.SERVER, **{"peer_id": "server-id", "session_id": "session-1", **kwargs})


def open_pair(**kwargs):
    client, server = make_client(**kwargs), make_server(**kwargs)
    client.start(0.0)
    server.receive_data(wire(client), 0.0)
    client.receive_data(wire(server), 0.0)
    assert client.state is State.OPEN and server.state is State.OPEN
    return client, server


def hello_with(metadata):
    env = wire_pb2.Envelope()
    env.hello.version = wire_pb2.PROTOCOL_VERSION_1
    env.hello.identity.peer_id = "crafted"
    env.hello.metadata.update(metadata)
    return framed(env)


def request_with(call_id, metadata, payload=b"in"):
    env = wire_pb2.Envelope()
    env.payload = payload
    env.request.call_id = call_id
    env.request.method = METHOD
    env.request.metadata.update(metadata)
    return framed(env)


def notify_with(metadata):
    env = wire_pb2.Envelope()
    env.payload = b"note"
    env.notify.method = METHOD
    env.notify.metadata.update(metadata)
    return framed(env)


def test_the_utf8_case_is_over_in_bytes_but_not_in_characters():
    [(key, value)] = TOO_BIG_IN_UTF8.items()
    assert len(key) + len(value) <= MAX_SIZE < len(key.encode()) + len(value.encode())


# ------------------------------------------------------------- receiving

@pytest.mark.parametrize("metadata,text", OVER_LIMITS)
def test_a_hello_over_the_limits_is_closed_with_resource_exhausted(metadata, text):
    server = make_server()
    with pytest.raises(PeerMetadataTooLarge) as info:
        server.receive_data(hello_with(metadata), 0.0)
    assert isinstance(info.value, RemoteProtocolError)
    assert info.value.status is StatusCode.RESOURCE_EXHAUSTED
    assert server.state is State.CLOSED
    [close] = envelopes(wire(server))
    assert close.close.status.code == StatusCode.RESOURCE_EXHAUSTED
    assert close.close.status.message == "hello " + text == str(info.value)


@pytest.mark.parametrize("metadata", AT_LIMITS)
def test_a_hello_at_the_limits_is_welcome(metadata):
    server = make_server()
    [handshaken] = server.receive_data(hello_with(metadata), 0.0)
    assert isinstance(handshaken, ev.Handshaken) and handshaken.metadata == metadata


def test_a_resuming_hello_is_held_to_the_limits_too():
    env = wire_pb2.Envelope()
    env.hello.version = wire_pb2.PROTOCOL_VERSION_1
    env.hello.resume_session_id = "old"
    env.hello.metadata.update(TOO_MANY)
    server = make_server()
    with pytest.raises(PeerMetadataTooLarge):
        server.receive_data(framed(env), 0.0)


@pytest.mark.parametrize("metadata,text", OVER_LIMITS)
def test_a_request_over_the_limits_is_answered_resource_exhausted_without_a_handler(metadata, text):
    client, server = open_pair()
    # Reported (for the log) as refused, not as a request to serve.
    assert server.receive_data(request_with(1, metadata), 1.0) == [
        ev.RequestRefused(1, METHOD, StatusCode.RESOURCE_EXHAUSTED, "request " + text)]
    answer_bytes = wire(server)
    [answer] = envelopes(answer_bytes)
    assert answer.response.call_id == 1
    assert answer.response.status.code == StatusCode.RESOURCE_EXHAUSTED
    assert answer.response.status.message == "request " + text
    assert server.state is State.OPEN and server.calls_in_flight == 0
    # The caller sees the refusal as its call's outcome.
    [response] = client.receive_data(answer_bytes, 2.0)
    assert (response.call_id, response.code) == (1, StatusCode.RESOURCE_EXHAUSTED)
    # The connection goes on: the next call arrives as usual.
    [request] = server.receive_data(request_with(2, {"ok": "yes"}), 3.0)
    assert isinstance(request, ev.RequestReceived) and request.metadata == {"ok": "yes"}


@pytest.mark.parametrize("metadata", AT_LIMITS)
def test_a_request_at_the_limits_arrives(metadata):
    client, server = open_pair()
    [request] = server.receive_data(request_with(1, metadata), 1.0)
    assert request.metadata == metadata


def test_the_call_id_of_a_refused_request_is_free_again_and_a_cancel_for_it_is_ignored():
    client, server = open_pair()
    server.receive_data(request_with(5, TOO_MANY), 1.0)
    cancel = wire_pb2.Envelope()
    cancel.cancel.call_id = 5
    assert server.receive_data(framed(cancel), 1.0) == []
    [request] = server.receive_data(request_with(5, {}), 1.0)
    assert request.call_id == 5


@pytest.mark.parametrize("metadata,text", OVER_LIMITS)
def test_a_notify_over_the_limits_closes_with_resource_exhausted(metadata, text):
    # A notification has no answer: dropping it would be a silent loss (and
    # a confirmed one would be reported delivered), so the peer is told.
    client, server = open_pair()
    with pytest.raises(PeerMetadataTooLarge):
        server.receive_data(notify_with(metadata), 1.0)
    [close] = envelopes(wire(server))
    assert close.close.status.code == StatusCode.RESOURCE_EXHAUSTED
    assert close.close.status.message == "notify " + text
    assert server.state is State.CLOSED


def test_a_notify_at_the_limits_arrives():
    client, server = open_pair()
    [note] = server.receive_data(notify_with(entries(MAX_ENTRIES)), 1.0)
    assert isinstance(note, ev.NotifyReceived) and note.metadata == entries(MAX_ENTRIES)


def test_our_own_lower_limits_apply_to_what_we_receive():
    client, server = open_pair()
    server.max_metadata_entries = 2
    [refused] = server.receive_data(request_with(1, entries(3)), 1.0)
    assert type(refused) is ev.RequestRefused
    [answer] = envelopes(wire(server))
    assert "of 3 entries exceeds the limit of 2 entries" in answer.response.status.message


# --------------------------------------------------------------- sending

@pytest.mark.parametrize("metadata,text", OVER_LIMITS)
def test_a_request_over_the_limits_is_refused_locally_and_nothing_is_queued(metadata, text):
    client, server = open_pair()
    seq = client.reliability.next_seq
    with pytest.raises(MetadataTooLarge) as info:
        client.send_request(1, METHOD, b"x", metadata=metadata)
    assert isinstance(info.value, LocalProtocolError) and isinstance(info.value, MessageTooLarge)
    assert info.value.status is StatusCode.RESOURCE_EXHAUSTED
    assert str(info.value) == "request " + text
    assert client.data_to_send() == [] and client.reliability.next_seq == seq
    assert client.state is State.OPEN
    client.send_request(1, METHOD, b"x", metadata=entries(MAX_ENTRIES))  # the call id is still free


@pytest.mark.parametrize("metadata,text", OVER_LIMITS)
def test_a_notify_over_the_limits_is_refused_locally(metadata, text):
    client, server = open_pair()
    seq = client.reliability.next_seq
    with pytest.raises(MetadataTooLarge) as info:
        client.send(Notify(METHOD, b"x", metadata))
    assert str(info.value) == "notify " + text
    assert client.data_to_send() == [] and client.reliability.next_seq == seq


@pytest.mark.parametrize("metadata,text", OVER_LIMITS)
def test_hello_metadata_over_the_limits_is_refused_when_the_session_is_made(metadata, text):
    with pytest.raises(MetadataTooLarge) as info:
        make_client(metadata=metadata)
    assert str(info.value) == "hello " + text


def test_the_limits_are_the_sessions_own():
    with pytest.raises(MetadataTooLarge):
        make_client(metadata=entries(3), max_metadata_entries=2)
    client, server = open_pair(max_metadata_entries=100, max_metadata_size=100_000)
    many = entries(100)
    client.send_request(1, METHOD, b"x", metadata=many)
    [request] = server.receive_data(wire(client), 1.0)
    assert request.metadata == many


@pytest.mark.parametrize("field,value", [("max_metadata_size", -1), ("max_metadata_entries", -1),
                                         ("max_metadata_size", 1.5)])
def test_limits_are_validated(field, value):
    with pytest.raises(ValueError, match=field):
        make_client(**{field: value})


def test_no_metadata_at_all_is_the_fast_path():
    client, server = open_pair(max_metadata_entries=0, max_metadata_size=0)
    client.send_request(1, METHOD, b"x")
    [request] = server.receive_data(wire(client), 1.0)
    assert request.metadata == {}
