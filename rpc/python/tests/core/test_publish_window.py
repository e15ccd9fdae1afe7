"""The publish window (spec §8.3), both sides, with no I/O: when a client
may publish, when the server gives cost back, and (hypothesis) that a
client held back always gets room once nothing holds its messages, while
the server never holds more than the window plus one message."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from onedrive_rpc.core.publish_window import (PUBLISH_OVERHEAD, PublishCredit, PublishWindow,
                                              publish_cost)


def test_a_publish_costs_its_payload_and_an_overhead():
    assert publish_cost(0) == PUBLISH_OVERHEAD == 64
    assert publish_cost(1000) == 1064


def test_a_client_sends_within_its_window_or_while_half_of_it_is_free():
    credit = PublishCredit(1000)
    assert credit.may_send(1000)
    credit.sent(400)
    assert credit.may_send(600) and credit.may_send(5000)  # 400 <= 500: even a big one
    credit.sent(200)
    assert credit.may_send(400) and not credit.may_send(401)
    credit.granted(100)
    assert credit.may_send(500)
    credit.granted(10_000)  # more than outstanding: capped
    assert credit.outstanding == 0


def test_no_window_means_nothing_holds_a_client_back():
    credit = PublishCredit(0)
    credit.sent(10**9)
    assert credit.may_send(10**9) and credit.outstanding == 0


def test_the_server_refuses_past_the_window_and_grants_by_halves():
    window = PublishWindow(1000)
    assert window.receive(600) and window.receive(400)
    assert not window.receive(1)  # past the window: not counted
    assert window.outstanding == 1000
    assert window.release(400) == 0  # under half: not yet
    assert window.release(200) == 600
    assert window.outstanding == 400 and window.released == 0


@settings(max_examples=300, deadline=None)
@given(window=st.integers(1, 5000),
       steps=st.lists(st.tuples(st.integers(0, 3000), st.booleans()), min_size=1, max_size=200))
def test_a_held_client_gets_room_once_nothing_holds_its_messages(window, steps):
    """The client publishes messages of the given sizes; the server holds
    those marked True until the end. Whenever the client cannot send, the
    server, once it releases everything it holds, has granted enough."""
    credit, server = PublishCredit(window), PublishWindow(window)
    held = []
    for size, hold in steps:
        cost = publish_cost(size)
        if not credit.may_send(cost):
            for waiting in held:  # the blocker caught up
                credit.granted(server.release(waiting))
            held.clear()
            assert credit.may_send(cost), (credit.outstanding, server.outstanding)
        credit.sent(cost)
        assert server.receive(cost), "the server refused what the client may send"
        assert server.outstanding <= window + cost
        if hold:
            held.append(cost)
        else:
            credit.granted(server.release(cost))
        assert credit.outstanding == server.outstanding
