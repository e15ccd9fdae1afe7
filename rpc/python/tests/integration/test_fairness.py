"""No single peer can stall the loop: a peer flooding the server with
notifications (in its own process, as fast as it can) does not slow down
another client's calls beyond a few milliseconds."""
from __future__ import annotations

import gc
import json
import statistics
import sys

import gevent
import pytest
from gevent import subprocess

import onedrive_rpc as rpc
from onedrive_rpc.testing.echo_service import EchoService
from onedrive_rpc.testing.helpers import child_env, wait_until

_CHILD_ENV = child_env()


@pytest.fixture(autouse=True)
def own_heap():
    """The servers here run in the test process, whose heap holds what a
    thousand tests before left: its full garbage collections (50-200 ms on
    a slow machine) are not what these tests measure. Set aside, the heap
    is a server's own."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


_FLOOD = """
import sys, time, gevent, onedrive_rpc as rpc
from onedrive_rpc.testing.echo_pb2 import Msg
from onedrive_rpc.testing.echo_service import ECHO
peer = rpc.connect(sys.argv[1], timeout=10)
note = rpc.Client(peer, ECHO).note
msg = Msg(text="flood")
print("flooding", flush=True)
end = time.monotonic() + float(sys.argv[2])
sent = 0
while time.monotonic() < end:
    for _ in range(100):
        note(msg)
    sent += 100
    gevent.sleep(0)  # a gevent program: its hub writes what it queued
print(sent, flush=True)
"""

# Calls echo for `seconds`, then prints the latencies (a client of its own).
_BYSTANDER = """
import json, sys, time, onedrive_rpc as rpc
from onedrive_rpc.testing.echo_pb2 import Msg
from onedrive_rpc.testing.echo_service import ECHO
echo = rpc.Client(rpc.connect(sys.argv[1], timeout=10), ECHO).echo
latencies = []
until = time.monotonic() + float(sys.argv[2])
while time.monotonic() < until:
    start = time.perf_counter()
    echo(Msg(text="me"), timeout=5)
    latencies.append(time.perf_counter() - start)
print(json.dumps(latencies), flush=True)
"""


def test_a_notification_flood_does_not_slow_down_another_client():
    service = EchoService()
    server = rpc.Server("tcp://127.0.0.1:0")
    server.add_service(service)
    server.start()
    bystander = None
    flooder = subprocess.Popen([sys.executable, "-c", _FLOOD, server.url, "4"],
                               stdout=subprocess.PIPE, env=_CHILD_ENV, text=True)
    try:
        with gevent.Timeout(20):
            assert flooder.stdout.readline().strip() == "flooding"
        wait_until(lambda: service.calls["note"] >= 20_000, timeout=20)  # the flood is on
        bystander = subprocess.Popen([sys.executable, "-c", _BYSTANDER, server.url, "1.5"],
                                     stdout=subprocess.PIPE, env=_CHILD_ENV, text=True)
        with gevent.Timeout(30):
            latencies = json.loads(bystander.stdout.readline())
        notes = service.calls["note"]
        with gevent.Timeout(20):
            sent = int(flooder.stdout.readline())
    finally:
        for child in (flooder, bystander):
            if child is not None:
                child.kill()
                child.wait()
        server.stop()
    p50, worst = statistics.median(latencies), max(latencies)
    assert notes > 20_000 and sent > notes // 2  # it really was flooding meanwhile
    # The reader of the flood yields every FAIR_SLICE (1 ms): no stall of
    # hundreds of milliseconds (as before) however fast it floods.
    assert p50 < 0.010 and worst < 0.150, f"p50 {p50 * 1000:.1f} ms, max {worst * 1000:.1f} ms"


# Subscribes `count` times to every topic (queue_limit 1: what it cannot
# take waits at the server), then publishes `publishes` small messages.
_FAN_OUT = """
import sys, gevent, onedrive_rpc as rpc
from onedrive_rpc.testing.echo_pb2 import Msg
from onedrive_rpc.testing.echo_service import ECHO
count, publishes = int(sys.argv[2]), int(sys.argv[3])
changed = rpc.Client(rpc.connect(sys.argv[1], timeout=10), ECHO).changed
subs = []
def subscribe(n):
    for _ in range(n):
        subs.append(changed.subscribe(">", queue_limit=1, timeout=30))
gevent.joinall([gevent.spawn(subscribe, count // 50) for _ in range(50)], raise_error=True)
print(len(subs), flush=True)
sys.stdin.readline()
for i in range(publishes):
    changed.publish("drive.a.b", Msg(text=str(i)))
changed.publish("drive.a.b", Msg(text="last"), confirm=True, timeout=60)
print("published", flush=True)
sys.stdin.readline()
"""


def test_a_fan_out_to_ten_thousand_subscriptions_stalls_nobody():
    server = rpc.Server("tcp://127.0.0.1:0")
    server.add_service(EchoService())
    server.start()
    bystander = None
    attacker = subprocess.Popen([sys.executable, "-c", _FAN_OUT, server.url, "10000", "300"],
                                stdout=subprocess.PIPE, stdin=subprocess.PIPE, env=_CHILD_ENV,
                                text=True)
    try:
        with gevent.Timeout(60):
            assert int(attacker.stdout.readline()) == 10_000
        bystander = subprocess.Popen([sys.executable, "-c", _BYSTANDER, server.url, "3"],
                                     stdout=subprocess.PIPE, env=_CHILD_ENV, text=True)
        wait_until(lambda: len(server.connections) == 2, timeout=20)  # the bystander is in
        attacker.stdin.write("go\n")
        attacker.stdin.flush()
        with gevent.Timeout(60):
            assert attacker.stdout.readline().strip() == "published"
            latencies = json.loads(bystander.stdout.readline())
    finally:
        for child in (attacker, bystander):
            if child is not None:
                child.kill()
                child.wait()
        server.stop()
    worst = max(latencies)
    # Before readers took turns, the bystander waited 0.5-0.9 s here (4.7 s
    # in the measurement); now about 80 ms at worst on a quiet
    # machine. On a host three times slower, with the attacker, the
    # bystander and the server sharing 2 cores, up to 265 ms was seen
    # although no greenlet held the loop for 80 ms (gevent's blocking
    # monitor): the OS scheduling the three processes, not our loop.
    # (The count only shows the bystander kept calling throughout: on a
    # machine shared with other work it makes fewer calls, none slow.)
    assert len(latencies) > 20 and worst < 0.45, f"{len(latencies)} calls, max {worst * 1000:.0f} ms"
