"""The calls a side serves at once are announced in the handshake and
counted the same way on both sides (issue 10: a healthy client with 1,100
concurrent calls was declared dead by a server that stopped reading at
1,024).

Like HTTP/2's MAX_CONCURRENT_STREAMS: a Request counts from the moment it
is sent (received) until its answer is received (sent) or the caller
cancels it. A caller keeps no more than the peer announced; a callee
answers a Request past its own limit RESOURCE_EXHAUSTED without an event,
and goes on reading.
"""
from __future__ import annotations

import pytest

from onedrive_rpc.core import events as ev
from onedrive_rpc.core.budget import ByteBudget
from onedrive_rpc.core.pattern_frames import StreamEnd, Subscribe
from onedrive_rpc.core.session import Role, Session
from onedrive_rpc.errors import LocalProtocolError, StatusCode
from onedrive_rpc.testing.helpers import envelopes, wire

METHOD = "/test.Echo/Echo"


def pair(client_limit=0, server_limit=0):
    client = Session(Role.CLIENT, peer_id="c", max_concurrent_calls=client_limit)
    server = Session(Role.SERVER, peer_id="s", session_id="S", max_concurrent_calls=server_limit)
    client.start(0.0)
    hello = wire(client)
    server.receive_data(hello, 0.0)
    welcome = wire(server)
    client.receive_data(welcome, 0.0)
    return client, server, envelopes(hello)[0].hello, envelopes(welcome)[0].welcome


def test_each_side_announces_its_limit_and_learns_the_peers():
    client, server, hello, welcome = pair(client_limit=7, server_limit=3)
    assert hello.max_concurrent_calls == 7
    assert welcome.max_concurrent_calls == 3
    assert client.peer_max_calls == 3
    assert server.peer_max_calls == 7


def test_no_limit_announced_means_none_kept():
    client, server, hello, welcome = pair()
    assert hello.max_concurrent_calls == welcome.max_concurrent_calls == 0
    for call_id in range(1, 100):
        assert client.may_request
        client.send_request(call_id, METHOD, b"")
    assert len(server.receive_data(wire(client), 0.0)) == 99


def test_limit_out_of_range_is_refused():
    with pytest.raises(ValueError, match="max_concurrent_calls"):
        Session(Role.SERVER, peer_id="s", max_concurrent_calls=-1)


def test_a_caller_keeps_no_more_than_announced_and_answers_free_a_place():
    client, server, _, _ = pair(server_limit=2)
    client.send_request(1, METHOD, b"")
    client.send_request(2, METHOD, b"")
    assert not client.may_request
    with pytest.raises(LocalProtocolError, match="at most 2 calls at once"):
        client.send_request(3, METHOD, b"")
    received = server.receive_data(wire(client), 0.0)
    assert [type(e) for e in received] == [ev.RequestReceived, ev.RequestReceived]
    server.send_response(1, StatusCode.OK, payload=b"x")
    client.receive_data(wire(server), 0.0)
    assert client.may_request
    client.send_request(3, METHOD, b"")
    assert not client.may_request


def test_a_stream_counts_until_its_end():
    client, server, _, _ = pair(server_limit=1)
    client.send_request(1, METHOD, b"", initial_credit=4)
    server.receive_data(wire(client), 0.0)
    assert not client.may_request
    server.send(StreamEnd(1, StatusCode.OK))
    client.receive_data(wire(server), 0.0)
    assert client.may_request


def test_cancelling_frees_the_place_on_both_sides_at_once():
    """The caller counts a cancelled call gone when it sends the Cancel,
    the callee when it reads it, though its handler may still be ending:
    a Request sent after the Cancel is never refused."""
    client, server, _, _ = pair(server_limit=1)
    client.send_request(1, METHOD, b"")
    client.send_cancel(1, "deadline exceeded")
    assert client.may_request
    client.send_request(2, METHOD, b"")
    events = server.receive_data(wire(client), 0.0)
    assert [type(e) for e in events] == [ev.RequestReceived, ev.CancelReceived, ev.RequestReceived]
    assert server.data_to_send() == []  # nothing refused
    # The cancelled call is still answered (CANCELLED), once.
    server.send_response(1, StatusCode.CANCELLED, "cancelled")
    server.send_response(2, StatusCode.OK)


def test_a_request_past_the_limit_is_refused_and_reading_goes_on():
    """A peer that ignores the announced limit: the excess is answered
    RESOURCE_EXHAUSTED without an event; frames behind it still arrive."""
    # The client handshakes with a server that announces no limit; its
    # Hello and calls also go to one that serves 2 at once.
    client = Session(Role.CLIENT, peer_id="c")
    unlimited = Session(Role.SERVER, peer_id="s", session_id="S")
    limited = Session(Role.SERVER, peer_id="s", session_id="S", max_concurrent_calls=2)
    client.start(0.0)
    hello = wire(client)
    unlimited.receive_data(hello, 0.0)
    limited.receive_data(hello, 0.0)
    client.receive_data(wire(unlimited), 0.0)
    wire(limited)
    for call_id in (1, 2, 3):
        client.send_request(call_id, METHOD, b"")
    client.send_cancel(1)
    client.send_request(4, METHOD, b"")
    events = limited.receive_data(wire(client), 0.0)
    assert [(type(e).__name__, e.call_id) for e in events] == [
        ("RequestReceived", 1), ("RequestReceived", 2), ("RequestRefused", 3),
        ("CancelReceived", 1), ("RequestReceived", 4)]
    [refusal] = envelopes(wire(limited))
    assert refusal.response.call_id == 3
    assert refusal.response.status.code == StatusCode.RESOURCE_EXHAUSTED
    assert "serves at most 2 at once" in refusal.response.status.message


def test_pattern_calls_do_not_count():
    client, server, _, _ = pair(server_limit=1)
    client.send_request(1, METHOD, b"")
    client.send(Subscribe(1, "/t.S/Sub", "a.*", 0, 0, call_id=2))
    events = server.receive_data(wire(client), 0.0)
    assert len(events) == 2
    assert server.data_to_send() == []


def test_counts_survive_a_resume():
    """The counts are the session's (its Reliability), not the connection's."""
    client, server, _, _ = pair(server_limit=1)
    client.send_request(1, METHOD, b"")
    server.receive_data(wire(client), 0.0)
    resumed = Session(Role.CLIENT, peer_id="c", reliability=client.reliability,
                      resume_session_id="S")
    resumed.start(0.0)
    server2 = Session(Role.SERVER, peer_id="s", session_id="S", max_concurrent_calls=1)
    server2.receive_data(wire(resumed), 0.0)
    server2.accept_resume(server.reliability)
    resumed.receive_data(wire(server2), 0.0)
    assert resumed.peer_max_calls == 1
    assert not resumed.may_request


# ------------------------------------------------------------ bytes in flight

def _served(server, client):
    """The calls `server` takes of what `client` sent, and those it refused (why)."""
    events = server.receive_data(wire(client), 0.0)
    refusals = {env.response.call_id: env.response.status.message
                for env in envelopes(wire(server))
                if env.HasField("response") and env.response.status.code}
    return [e.call_id for e in events if type(e) is ev.RequestReceived], refusals


def test_request_bytes_in_flight_are_bounded_per_session():
    client, server, _, _ = pair()
    server.call_limits.max_bytes = 100
    client.send_request(1, METHOD, b"x" * 60)
    client.send_request(2, METHOD, b"x" * 60)  # 120 > 100: refused
    client.send_request(3, METHOD, b"x" * 40)  # 100: fits
    served, refused = _served(server, client)
    assert served == [1, 3] and list(refused) == [2]
    assert "calls in flight on this connection hold 60 bytes; 60 more would exceed its limit " \
           "of 100 bytes (max_call_bytes)" in refused[2]
    server.send_response(1, StatusCode.OK)
    client.send_cancel(3)
    client.send_request(4, METHOD, b"x" * 100)  # both gone: it fits again
    assert _served(server, client) == ([4], {})
    assert server.reliability.requests_in_bytes == 100


def test_one_call_alone_always_fits():
    client, server, _, _ = pair()
    server.call_limits.max_bytes = 10
    client.send_request(1, METHOD, b"x" * 1000)
    assert _served(server, client) == ([1], {})


def test_sessions_sharing_a_budget_are_bounded_together_and_give_back_what_they_held():
    budget = ByteBudget(100)
    sessions = []
    for name in ("a", "b"):
        client = Session(Role.CLIENT, peer_id=name)
        server = Session(Role.SERVER, peer_id="s", session_id=name, call_budget=budget)
        client.start(0.0)
        server.receive_data(wire(client), 0.0)
        client.receive_data(wire(server), 0.0)
        sessions.append((client, server))
    (a, a_server), (b, b_server) = sessions
    a.send_request(1, METHOD, b"x" * 70)
    assert _served(a_server, a) == ([1], {})
    b.send_request(1, METHOD, b"x" * 70)
    served, refused = _served(b_server, b)
    assert served == []
    assert ("calls in flight on this server hold 70 bytes; 70 more would exceed its limit of "
            "100 bytes (max_server_call_bytes)") in refused[1]
    a_server.release()  # a's connection ended with its call in flight
    assert budget.used == 0
    b.send_request(2, METHOD, b"x" * 70)
    assert _served(b_server, b) == ([2], {})
    assert budget.used == 70
