"""FanOut: a broker's deliveries go out in the order handed in, however
many greenlets hand them in, while the pushing takes turns with the loop."""
from __future__ import annotations

import time

import gevent
import pytest
from gevent.event import Event

from onedrive_rpc.fan_out import FanOut


def slow_push(pushed, seconds=0.0001):
    def push(item):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:  # CPU work, as encoding a frame is
            pass
        pushed.append(item)
    return push


def test_a_long_fan_out_lets_the_loop_run_meanwhile_and_returns_once_all_is_out():
    pushed, ticks = [], []
    fan_out = FanOut(slow_push(pushed))
    stop = Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            gevent.sleep(0.001)

    clock = gevent.spawn(ticker)
    gevent.sleep(0.005)
    try:
        fan_out.send(list(range(3000)))  # about 0.3 s of pushing
        assert pushed == list(range(3000))
    finally:
        stop.set()
        clock.join(5)
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    # In one go the ticker would have waited the whole 0.3 s.
    assert len(ticks) > 20 and max(gaps) < 0.1, f"{len(ticks)} ticks, max gap {max(gaps):.3f}s"


def test_deliveries_handed_in_meanwhile_go_out_after_the_earlier_ones():
    pushed = []
    fan_out = FanOut(slow_push(pushed))
    returned = []

    def hand_in(items, name):
        fan_out.send(items)
        returned.append((name, len(pushed)))

    first = gevent.spawn(hand_in, list(range(2000)), "first")
    gevent.sleep(0.01)  # the first is pushing, taking turns
    assert 0 < len(pushed) < 2000
    second = gevent.spawn(hand_in, list(range(2000, 2100)), "second")
    gevent.joinall([first, second], timeout=10, raise_error=True)
    assert pushed == list(range(2100))
    # Each returned only once its own were out.
    assert dict(returned)["first"] >= 2000 and dict(returned)["second"] == 2100


def test_from_the_hub_it_pushes_at_once_or_leaves_them_to_the_pusher():
    pushed = []
    fan_out = FanOut(slow_push(pushed, 0))
    hub = gevent.get_hub()
    done = Event()
    hub.loop.run_callback(lambda: (fan_out.send([1, 2, 3]), done.set()))
    assert done.wait(5) and pushed == [1, 2, 3]

    slow = FanOut(slow_push(pushed, 0.0002))
    pushed.clear()
    pusher = gevent.spawn(slow.send, list(range(1000)))
    gevent.sleep(0.01)
    assert 0 < len(pushed) < 1000
    done.clear()
    hub.loop.run_callback(lambda: (slow.send(["late"]), done.set()))
    assert done.wait(5)  # returned at once, in the hub
    pusher.join(10)
    assert pushed == list(range(1000)) + ["late"]


def test_a_pusher_killed_midway_leaves_the_rest_to_go_on():
    pushed = []
    fan_out = FanOut(slow_push(pushed))
    pusher = gevent.spawn(fan_out.send, list(range(2000)))
    gevent.sleep(0.01)
    pusher.kill()
    assert 0 < len(pushed) < 2000
    deadline = time.monotonic() + 10
    while len(pushed) < 2000 and time.monotonic() < deadline:
        gevent.sleep(0.01)
    assert pushed == list(range(2000))


def test_a_push_that_raises_fails_its_sender_and_loses_nothing_else():
    pushed = []

    def push(item):
        if item == 5:
            raise RuntimeError("a bug")
        pushed.append(item)

    fan_out = FanOut(push)
    with pytest.raises(RuntimeError):
        fan_out.send(list(range(10)))
    fan_out.send([10])
    assert pushed == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]


def test_deliveries_handed_in_from_inside_a_push_follow_without_a_deadlock():
    pushed = []
    fan_out = FanOut(lambda item: (pushed.append(item), item == 1 and fan_out.send(["echo"])))
    with gevent.Timeout(5):
        fan_out.send([1, 2])
    assert pushed == [1, 2, "echo"]
