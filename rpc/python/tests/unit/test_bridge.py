"""brokers.bridge: gevent and an asyncio loop in its own thread, with
plain asyncio coroutines (no NATS). Every wait is bounded and waits on an
event; nothing sleeps in place of a condition."""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Iterator, List, Tuple

import gevent
import pytest
from gevent.event import Event

from onedrive_rpc.brokers.bridge import (HUB_BATCH, Bridge, BridgeClosed, BridgeError,
                                         BridgeForked, BridgeFull, BridgeTimeout)
from onedrive_rpc.testing.helpers import in_forked_child

WAIT = 10.0  # seconds: a bound on every wait, never reached when all is well


@pytest.fixture
def bridge() -> Iterator[Bridge]:
    made = Bridge(name="test-bridge")
    yield made
    made.close()


def bridge_threads() -> List[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("test-bridge")]


async def add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


async def noop() -> None:
    pass


class Refused(Exception):
    pass


async def refuse(why: str) -> None:
    await asyncio.sleep(0)
    raise Refused(why)


def test_the_thread_starts_on_first_use_named_and_daemon(bridge: Bridge) -> None:
    assert bridge_threads() == [] and bridge.loop is None
    assert bridge.call(add, 1, 2, timeout=WAIT) == 3
    [thread] = bridge_threads()
    assert thread.daemon and thread is not threading.current_thread()


def test_call_returns_the_result_and_raises_the_exception_in_the_greenlet(bridge: Bridge
                                                                          ) -> None:
    assert bridge.call(add, 20, 22, timeout=WAIT) == 42
    with pytest.raises(Refused, match="no thanks"):
        bridge.call(refuse, "no thanks", timeout=WAIT)
    assert bridge.call(asyncio.sleep, 0, "plain", timeout=WAIT) == "plain"
    assert bridge.call(len, b"not a coroutine function", timeout=WAIT) == 24
    assert bridge.queued_items == 0 and bridge.queued_bytes == 0


def test_submits_run_in_submission_order_under_bursts_from_several_greenlets(
        bridge: Bridge) -> None:
    submitted: List[Tuple[int, int]] = []
    ran: List[Tuple[int, int]] = []  # appended in the loop thread only

    async def record(who: int, n: int) -> None:
        if n % 7 == 0:
            await asyncio.sleep(0)  # later items must still wait for this one
        ran.append((who, n))

    def publisher(who: int) -> None:
        for burst in range(20):
            for i in range(25):
                n = burst * 25 + i
                submitted.append((who, n))
                bridge.submit(record, who, n, nbytes=64)
            gevent.sleep(0)  # let the other publishers in between bursts

    gevent.joinall([gevent.spawn(publisher, who) for who in range(4)], timeout=WAIT,
                   raise_error=True)
    bridge.call(noop, timeout=WAIT)  # starts after every earlier submit finished
    assert len(ran) == 4 * 500
    assert ran == submitted
    for who in range(4):
        assert [n for w, n in ran if w == who] == list(range(500))
    assert bridge.loop_wakeups < len(ran) / 10  # bursts share their wake-ups


def test_a_failing_submit_is_logged_and_the_next_ones_run(bridge: Bridge,
                                                          caplog: Any) -> None:
    ran: List[int] = []

    async def one(n: int) -> None:
        ran.append(n)

    with caplog.at_level(logging.ERROR, logger="onedrive_rpc.brokers.bridge"):
        bridge.submit(one, 1)
        bridge.submit(refuse, "bad item")
        bridge.submit(one, 2)
        bridge.call(noop, timeout=WAIT)
    assert ran == [1, 2]
    assert any("refuse" in record.getMessage() and record.exc_info for record in caplog.records)


def test_a_call_past_its_timeout_raises_and_its_coroutine_is_cancelled(bridge: Bridge) -> None:
    cancelled = Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            bridge.to_hub(cancelled.set)
            raise

    with pytest.raises(BridgeTimeout, match="forever did not finish within 0.05s") as info:
        bridge.call(forever, timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert cancelled.wait(WAIT)
    assert bridge.call(add, 1, 1, timeout=WAIT) == 2  # the bridge goes on
    assert bridge.queued_items == 0


def test_to_hub_callbacks_run_in_the_hub_thread_in_order(bridge: Bridge, caplog: Any) -> None:
    hub_thread = threading.get_ident()
    count = 3 * HUB_BATCH + 5  # more than one hub turn
    seen: List[Tuple[int, int]] = []
    finished = Event()

    def on_hub(n: int) -> None:
        seen.append((n, threading.get_ident()))
        if n == 10:
            raise Refused("a receiver's bug")
        if n == count - 1:
            finished.set()  # a gevent Event: set in the hub, as it must be

    async def hand_over() -> int:
        for n in range(count):
            bridge.to_hub(on_hub, n)
        return threading.get_ident()

    with caplog.at_level(logging.ERROR, logger="onedrive_rpc.brokers.bridge"):
        loop_thread = bridge.call(hand_over, timeout=WAIT)
        assert finished.wait(WAIT)
    assert loop_thread != hub_thread
    assert [n for n, _ in seen] == list(range(count))
    assert {thread for _, thread in seen} == {hub_thread}
    assert any("on_hub" in record.getMessage() for record in caplog.records)
    assert bridge.hub_wakeups < count / 100


def test_the_hub_serves_other_greenlets_while_a_call_waits(bridge: Bridge) -> None:
    ticks = 0
    gate: "asyncio.Future[str]"

    async def wait_for_the_ticker() -> str:
        nonlocal gate
        gate = asyncio.get_running_loop().create_future()
        return await gate

    def open_gate() -> None:  # in the loop
        gate.set_result(f"ticks={ticks}")

    def ticker() -> None:
        nonlocal ticks
        for _ in range(20):
            gevent.sleep(0.001)  # the tick itself, not a wait for a condition
            ticks += 1
        bridge.submit(open_gate)

    bridge.start()
    waiting = gevent.spawn(bridge.call, wait_for_the_ticker, timeout=WAIT)
    tick = gevent.spawn(ticker)
    assert waiting.get(timeout=WAIT) == "ticks=20"  # it returned only once the ticker ran
    tick.get(timeout=WAIT)


def blocked_bridge(**bounds: int) -> Tuple[Bridge, "asyncio.Event"]:
    """A bridge whose pump waits on `gate` (the first item, 10 bytes)."""
    made = Bridge(name="test-bridge-bounded", **bounds)
    gate = asyncio.Event()
    made.submit(gate.wait, nbytes=10)
    return made, gate


def open_gate(bridge: Bridge, gate: "asyncio.Event") -> None:
    assert bridge.loop is not None
    bridge.loop.call_soon_threadsafe(gate.set)


def test_the_item_bound() -> None:
    bridge, gate = blocked_bridge(max_items=3)
    try:
        bridge.submit(noop)
        bridge.submit(noop)
        with pytest.raises(BridgeFull, match="3 items .* the bound is 3 items") as info:
            bridge.submit(noop)
        assert info.value.queued_items == 3
        with pytest.raises(BridgeFull):
            bridge.call(noop, timeout=WAIT)
        open_gate(bridge, gate)
    finally:
        bridge.close()


def test_the_item_bound_frees_as_the_loop_works() -> None:
    bridge, gate = blocked_bridge(max_items=2)
    try:
        bridge.submit(noop)
        with pytest.raises(BridgeFull):
            bridge.submit(noop)
        open_gate(bridge, gate)
        done = Event()
        # From the loop, once both queued items have finished: hand it to the hub.
        assert bridge.loop is not None
        asyncio.run_coroutine_threadsafe(_when_empty(bridge, done), bridge.loop)
        assert done.wait(WAIT)
        assert bridge.call(add, 2, 3, timeout=WAIT) == 5
    finally:
        bridge.close()


async def _when_empty(bridge: Bridge, done: Event) -> None:
    while bridge.queued_items > 0:  # this coroutine is not a queued item
        await asyncio.sleep(0.001)
    bridge.to_hub(done.set)


def test_the_byte_bound() -> None:
    bridge, gate = blocked_bridge(max_bytes=100)
    try:
        bridge.submit(noop, nbytes=60)
        with pytest.raises(BridgeFull, match=r"\(70 bytes\) .* 100 bytes") as info:
            bridge.submit(noop, nbytes=40)
        assert (info.value.queued_items, info.value.queued_bytes) == (2, 70)
        bridge.submit(noop, nbytes=30)  # exactly at the bound
        assert bridge.queued_bytes == 100
        open_gate(bridge, gate)
        assert bridge.call(noop, timeout=WAIT) is None
        assert bridge.queued_bytes == 0
        # Alone, an item larger than the bound still goes (and nothing with it).
        assert bridge.call(add, 1, 2, nbytes=1000, timeout=WAIT) == 3
    finally:
        bridge.close()


def test_close_fails_the_calls_that_wait_and_stops_the_thread() -> None:
    bridge = Bridge(name="test-bridge-close")
    started = 0
    all_started = Event()
    cancelled: List[bool] = []

    def one_started() -> None:
        nonlocal started
        started += 1
        if started == 3:
            all_started.set()

    async def hang() -> None:
        bridge.to_hub(one_started)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    def caller() -> Exception:
        with pytest.raises(BridgeClosed) as info:
            bridge.call(hang, timeout=WAIT)
        return info.value

    callers = [gevent.spawn(caller) for _ in range(3)]
    assert all_started.wait(WAIT)
    bridge.close()
    for waited in callers:
        assert "closed while this call waited" in str(waited.get(timeout=WAIT))
    assert cancelled == [True] * 3  # close() returns after the loop let them finish
    assert [t for t in threading.enumerate() if t.name == "test-bridge-close"] == []


def test_use_after_close_raises() -> None:
    bridge = Bridge(name="test-bridge-closed")
    bridge.call(noop, timeout=WAIT)
    bridge.close()
    bridge.close()  # again: nothing to do
    assert bridge.closed
    with pytest.raises(BridgeClosed, match="test-bridge-closed is closed"):
        bridge.submit(noop)
    with pytest.raises(BridgeClosed):
        bridge.call(noop, timeout=WAIT)
    with pytest.raises(BridgeClosed):
        bridge.start()
    bridge.to_hub(pytest.fail, "ran after close")  # ignored: nothing to serve it


def test_closing_a_bridge_never_started_starts_nothing() -> None:
    before = set(threading.enumerate())
    bridge = Bridge(name="test-bridge-unused")
    bridge.close()
    with pytest.raises(BridgeClosed):
        bridge.submit(noop)
    assert set(threading.enumerate()) == before


def test_no_thread_is_left_after_close() -> None:
    before = set(threading.enumerate())
    bridges = [Bridge(name=f"test-bridge-{n}") for n in range(3)]
    for made in bridges:
        made.call(noop, timeout=WAIT)
    assert len(set(threading.enumerate()) - before) == 3
    for made in bridges:
        made.close()
    assert set(threading.enumerate()) == before


def test_in_a_forked_child_the_bridge_is_dead(bridge: Bridge) -> None:
    bridge.call(noop, timeout=WAIT)  # the loop thread runs in this process

    def in_child() -> List[str]:
        said = []
        for use in (lambda: bridge.submit(noop), lambda: bridge.call(noop, timeout=1)):
            try:
                use()
            except BridgeForked as exc:
                said.append(str(exc))
        fresh = Bridge(name="test-bridge-child")  # as the error says: a new one works
        said.append(str(fresh.call(add, 3, 4, timeout=WAIT)))
        fresh.close()
        return said

    result = in_forked_child(in_child)
    assert "ok" in result, result
    assert len(result["ok"]) == 3 and result["ok"].pop() == "7"
    assert all("this process forked" in said and "stays with the parent" in said
               for said in result["ok"])
    assert bridge.call(add, 1, 2, timeout=WAIT) == 3  # the parent's bridge is untouched


def test_a_caller_killed_while_it_waits_cancels_its_coroutine(bridge: Bridge) -> None:
    started, cancelled = Event(), Event()

    async def long_request() -> None:
        bridge.to_hub(started.set)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            bridge.to_hub(cancelled.set)
            raise

    caller = gevent.spawn(bridge.call, long_request, timeout=WAIT)
    assert started.wait(WAIT)
    caller.kill(timeout=WAIT)
    assert cancelled.wait(WAIT)
    assert bridge.call(add, 2, 2, timeout=WAIT) == 4


def test_a_bridge_refuses_callers_of_another_thread(bridge: Bridge) -> None:
    assert bridge.call(add, 1, 2, timeout=WAIT) == 3
    refused: List[BaseException] = []

    def other_thread() -> None:
        try:
            bridge.submit(noop)
        except BaseException as exc:  # what it raises is the test
            refused.append(exc)
    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(WAIT)
    assert len(refused) == 1 and isinstance(refused[0], BridgeError)
    assert "another thread" in str(refused[0])
    assert bridge.call(add, 2, 3, timeout=WAIT) == 5  # still serving its own thread
