#!/usr/bin/env python3
"""What brokers.bridge costs: gevent and an asyncio loop in another thread.

    python bench/bridge.py [--calls 20000] [--items 200000] [--burst 64]
                           [--rounds 3] [--duration 2] [--json]

No NATS, no sockets: the coroutines do nothing, so what is measured is the
hand-over between the two threads alone. Every measurement is bounded by
a count and by `--duration` seconds; the rounds interleave the rows and
the table gives medians over rounds.

Round trip (a no-op coroutine run over there, its result back here),
p50/p99 in µs of single sequential calls:
  bridge.call          Bridge.call(noop) from a greenlet (grouped mailboxes,
                       the hub woken by one async watcher).
  textbook, gevent     asyncio.run_coroutine_threadsafe per call; its done
                       callback wakes the hub with loop.run_callback_threadsafe
                       into an AsyncResult (the greenlet waits).
  plain thread         run_coroutine_threadsafe(...).result() from a plain
                       OS thread, no gevent at all: what any threaded
                       program pays for the same hop (the baseline).

One way (items handed to the loop, each awaited there in order), items/s
until the last has run:
  bridge.submit        Bridge.submit(sink, i) from a greenlet, in bursts of
                       `--burst`; a refusal (the bound) waits with a call.
  submit + to_hub      the same, where each item hands a callback back to the
                       hub with to_hub (both mailboxes: the spike's figure).
  textbook             asyncio.run_coroutine_threadsafe(sink(i)) per item
                       (a task each, its own wake-up; order is not kept).
  in the loop          `await sink(i)` inside the loop itself: the work
                       with no crossing at all, the ceiling.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from typing import Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "rpc", "python"))

import gevent  # noqa: E402
from gevent.event import AsyncResult  # noqa: E402

from onedrive_rpc.brokers.bridge import Bridge, BridgeFull  # noqa: E402

#: Upper bounds on what one measurement may be asked for.
MAX_CALLS = 1_000_000
MAX_ITEMS = 10_000_000
WARM_UP = 500

_clock = time.perf_counter_ns


async def noop() -> None:
    pass


async def sink(i: int) -> None:
    pass


def percentile(sorted_ns: List[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000.0


def latencies(one: Callable[[], None], calls: int, duration: float) -> Dict[str, float]:
    for _ in range(WARM_UP):
        one()
    took: List[int] = []
    deadline = _clock() + int(duration * 1e9)
    for _ in range(calls):
        start = _clock()
        one()
        end = _clock()
        took.append(end - start)
        if end > deadline:
            break
    took.sort()
    return {"p50_us": percentile(took, 0.50), "p99_us": percentile(took, 0.99),
            "calls": len(took)}


def rt_bridge(bridge: Bridge, calls: int, duration: float) -> Dict[str, float]:
    def one() -> None:
        bridge.call(noop, timeout=10)
    return latencies(one, calls, duration)


def rt_textbook(bridge: Bridge, calls: int, duration: float) -> Dict[str, float]:
    loop = bridge.loop
    assert loop is not None
    run = gevent.get_hub().loop.run_callback_threadsafe

    def one() -> None:
        reply: AsyncResult = AsyncResult()

        def done(future: "asyncio.Future[None]") -> None:  # the loop's thread
            run(reply.set, future.result())
        asyncio.run_coroutine_threadsafe(noop(), loop).add_done_callback(done)
        reply.get(timeout=10)
    return latencies(one, calls, duration)


def rt_plain_thread(bridge: Bridge, calls: int, duration: float) -> Dict[str, float]:
    loop = bridge.loop
    assert loop is not None
    result: Dict[str, float] = {}

    def one() -> None:
        asyncio.run_coroutine_threadsafe(noop(), loop).result(10)

    def run() -> None:
        result.update(latencies(one, calls, duration))
    thread = threading.Thread(target=run, name="bench-plain-thread")
    thread.start()
    thread.join()  # blocks the hub: nothing else runs in gevent meanwhile
    return result


def rate(items: int, start: int, end: int) -> Dict[str, float]:
    return {"items_per_s": items / ((end - start) / 1e9), "items": items}


def ow_bridge(bridge: Bridge, items: int, burst: int, duration: float,
              item: Callable[[int], object] = sink) -> Dict[str, float]:
    submit, call = bridge.submit, bridge.call
    wakeups = bridge.loop_wakeups
    refused = 0
    deadline = _clock() + int(duration * 1e9)
    start = _clock()
    sent = 0
    while sent < items and _clock() < deadline:
        for i in range(sent, min(items, sent + burst)):
            try:
                submit(item, i)
            except BridgeFull:
                refused += 1
                call(noop, timeout=10)  # waits until the queue has room again
                submit(item, i)
        sent = min(items, sent + burst)
    call(noop, timeout=10)  # after every item has run (and its to_hub callbacks)
    end = _clock()
    out = rate(sent, start, end)
    out["loop_wakeups_per_item"] = (bridge.loop_wakeups - wakeups) / max(1, sent)
    out["refused"] = refused
    return out


def ow_both_ways(bridge: Bridge, items: int, burst: int, duration: float) -> Dict[str, float]:
    arrived = [0]

    def back() -> None:  # in the hub
        arrived[0] += 1

    def there(i: int) -> None:  # in the loop
        bridge.to_hub(back)
    out = ow_bridge(bridge, items, burst, duration, there)
    assert arrived[0] == out["items"], (arrived[0], out["items"])
    return out


def ow_textbook(bridge: Bridge, items: int, burst: int, duration: float) -> Dict[str, float]:
    loop = bridge.loop
    assert loop is not None
    deadline = _clock() + int(duration * 1e9)
    start = _clock()
    sent = 0
    last = None
    while sent < items and _clock() < deadline:
        for i in range(sent, min(items, sent + burst)):
            last = asyncio.run_coroutine_threadsafe(sink(i), loop)
        sent = min(items, sent + burst)
    bridge.call(noop, timeout=10)
    if last is not None:
        last.result(10)
    end = _clock()
    return rate(sent, start, end)


def ow_in_loop(bridge: Bridge, items: int, burst: int, duration: float) -> Dict[str, float]:
    async def run() -> Dict[str, float]:
        deadline = _clock() + int(duration * 1e9)
        start = _clock()
        sent = 0
        while sent < items and _clock() < deadline:
            for i in range(sent, min(items, sent + burst)):
                await sink(i)
            sent = min(items, sent + burst)
        return rate(sent, start, _clock())
    return bridge.call(run, timeout=60 + duration)


def measure(calls: int, items: int, burst: int, rounds: int,
            duration: float) -> Dict[str, Dict[str, float]]:
    bridge = Bridge(name="bench-bridge")
    bridge.start()
    bridge.call(noop, timeout=10)
    rows: Dict[str, List[Dict[str, float]]] = {}
    round_trip = [("rt bridge.call", rt_bridge), ("rt textbook, gevent", rt_textbook),
                  ("rt plain thread", rt_plain_thread)]
    one_way = [("ow bridge.submit", ow_bridge), ("ow submit + to_hub", ow_both_ways),
               ("ow textbook", ow_textbook),
               ("ow in the loop", ow_in_loop)]
    try:
        for n in range(rounds):
            k = n % len(round_trip)  # rotate who goes first
            for name, fn in round_trip[k:] + round_trip[:k]:
                rows.setdefault(name, []).append(fn(bridge, calls, duration))
            for name, ow in one_way[k:] + one_way[:k]:
                rows.setdefault(name, []).append(ow(bridge, items, burst, duration))
    finally:
        bridge.close()
    return {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            for name, runs in rows.items()}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="round trips per measurement")
    parser.add_argument("--items", type=int, default=200_000, help="one-way items per measurement")
    parser.add_argument("--burst", type=int, default=64, help="one-way items per burst")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=2.0,
                        help="seconds, at most, per measurement")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args(argv)
    if not (0 < args.calls <= MAX_CALLS and 0 < args.items <= MAX_ITEMS and args.burst > 0
            and args.rounds > 0 and 0 < args.duration <= 60):
        parser.error(f"--calls 1..{MAX_CALLS}, --items 1..{MAX_ITEMS}, --burst and --rounds "
                     f"at least 1, --duration 0..60")
    results = measure(args.calls, args.items, args.burst, args.rounds, args.duration)
    print(f"Python {sys.version.split()[0]}, gevent {gevent.__version__}, {os.cpu_count()} CPUs; "
          f"medians of {args.rounds} rounds")
    print(f"{'round trip (no-op)':<24}{'p50 µs':>10}{'p99 µs':>10}{'calls':>10}")
    for name, row in results.items():
        if name.startswith("rt "):
            print(f"{name[3:]:<24}{row['p50_us']:>10.1f}{row['p99_us']:>10.1f}"
                  f"{row['calls']:>10.0f}")
    print(f"{'one way':<24}{'items/s':>12}{'items':>10}")
    for name, row in results.items():
        if name.startswith("ow "):
            extra = ""
            if "loop_wakeups_per_item" in row:
                extra = (f"   wake-ups/item {row['loop_wakeups_per_item']:.4f}, "
                         f"refused {row['refused']:.0f}")
            print(f"{name[3:]:<24}{row['items_per_s']:>12,.0f}{row['items']:>10.0f}{extra}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
