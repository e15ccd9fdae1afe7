#!/usr/bin/env python3
"""Hostile and heavy peers (issue 10): the figures its closing note quotes, measured here.

    python bench/hostile.py [--only announce,fanout,...] [--runs 3] [--json]

Every scenario starts a fresh Echo server in its own OS process (this script
in the hidden `--child serve` mode, default rpc.Limits, TCP on 127.0.0.1)
and runs each attacker, and each bystander, in OS processes of their own
(hidden `--child ROLE` modes). The server's memory is read from /proc
(VmRSS; the peak from VmHWM after resetting it through
/proc/<pid>/clear_refs, together with VmRSS sampled every 10 ms by this
process); its CPU from /proc (schedstat run time, /proc/<pid>/stat ticks
if that is missing). MB = 10^6 bytes, MiB = 2^20.

  announce     32 connections each send only a 4-byte length prefix
               announcing 16 MiB, before any handshake. Figure: the
               server's RSS growth over a 1 s window after the last prefix
               (peak). Promise: < 16 MB.
  fanout       one peer subscribes 10,000 times to every topic (queue_limit
               1, never taking a message: its connection never needs to
               read fast), another publishes 300 small messages (the last
               confirmed); a bystander client calls echo in a loop from
               before the first publish until 0.3 s after the confirmation.
               Figures: the bystander's failed calls (promise 0) and its
               slowest call, failed ones included (promise < 1 s).
  flood        one peer sends Echo.Note notifications as fast as it can;
               once the server has taken 20,000 of them a bystander calls
               echo in a loop for 3 s. Figure: its p50 (promise < 10 ms);
               p99, max and the same bystander's idle p50 (1 s before the
               flood) are shown beside it.
  concurrency  one healthy client (reconnect disabled; heartbeat 0.2 s x 3
               on both sides, far shorter than the calls) starts 1,100, then
               (a fresh client) 5,000 concurrent Echo.Sleep calls of 2 s
               each (timeout 60 s). Figure: completed / failed (promise: all
               complete). Works whether or not the server announces
               max_concurrent_calls and the client queues past it.
  burst        8 processes x 100 simultaneous rpc.connect (all released by
               one "go") against the default limit of 1,024 connections.
               Figure: refused (promise 0).
  rst          1,024 connections that complete the handshake and then reset
               (SO_LINGER 0, close); a client process, imported and waiting
               beforehand, then connects and calls echo, retrying (1 s
               timeouts) until it succeeds. Figure: time from the last reset
               to that success (promise < 1 s).
  heartbeat    100 connections proposing a 10 ms heartbeat (misses 50),
               idle, held by 4 processes of 25. Figure: server CPU, % of
               one core, over a 3 s window after 1 s of warm-up (promise
               < 30 %); the agreed interval is shown beside it.
  fuzz         1,000 short fuzzed sessions, 20 at a time, all closed: even
               ones complete the handshake then send a 32-byte frame header
               and 1-200 random bytes (as the in-suite test: a longer tail
               starts a frame of random length) and an orderly Close; odd
               ones send 1-200 random bytes before any handshake. Figure:
               server RSS growth once it holds no connection, suspended
               sessions included (promise < 40 MB); the growth after a
               gc.collect() in the server is shown beside it. The server's
               cycle collector is on: this is the real server.
  bigcalls     after a proper handshake (raw socket), a client sends 1 MiB
               Echo.Echo calls as fast as it can (at most 2,000, 15 s, a 5 s
               send timeout marks the server as no longer reading us) and
               never reads a reply. Figure: server peak RSS growth (promise
               < 400 MB with every call read: max_call_bytes admits 64 MiB of
               requests, each held with its parsed message and its reply).
  nocredit     a subscriber (a real client: it reads and acknowledges;
               queue_limit 1,024, so its initial credit is 1,024) that
               never takes a message, hence never grants more credit, while
               2,048 x 1 MiB are published, each confirmed: 1,024 go out within the
               initial credit and 1,024 x 1 MiB wait at the server. Twice:
               paced at 200 publishes/s (the subscriber keeps up with its
               acknowledgements, so the figure is the subscription queue),
               and unpaced (the subscriber may be closed as a slow consumer
               and come back; the table says how often). Figure: server peak
               RSS growth (promise < 64 MB: max_subscription_bytes, 8 MiB).
  broadcast20  20 peers (raw sockets) that complete the handshake, send
               heartbeats and never read; another peer broadcasts 100 x 1 MiB
               (Echo.Announce, each confirmed, 10 s timeout). Figure: server
               peak RSS growth (promise < 300 MB: max_server_queued_bytes,
               256 MiB, and 32 MiB per peer).

`--runs N` repeats the timing scenarios (fanout, flood, rst, heartbeat),
each run with fresh processes; the table shows the median and the range.
Every loop is bounded in count and time; every child exits by itself after
`--lifetime` seconds (SIGALRM) and when its stdin closes. `--log LEVEL`
shows the server's own log (refusals, slow consumers) on stderr.
"""
from __future__ import annotations

import argparse
import collections
import json
import logging
import math
import os
import random
import select
import signal
import statistics
import struct
import subprocess
import sys
import time
from typing import Callable, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "rpc", "python"))

import gevent  # noqa: E402
from gevent import socket as gsocket  # noqa: E402

import onedrive_rpc as rpc  # noqa: E402
from onedrive_rpc.core import wire_pb2  # noqa: E402
from onedrive_rpc.core.framing import frame_header  # noqa: E402
from onedrive_rpc.core.session import Role, Session  # noqa: E402
from onedrive_rpc.testing import echo_pb2  # noqa: E402
from onedrive_rpc.testing.echo_service import ECHO, EchoService  # noqa: E402
from onedrive_rpc.testing.helpers import framed, wire  # noqa: E402
# bench/ is on sys.path as the script's folder.
from procstat import cpu_seconds, schedstat_cpu, stop_child  # noqa: E402

HOST = "127.0.0.1"
MB = 1_000_000
MIB = 1024 * 1024
Msg = echo_pb2.Msg
ECHO_PATH = f"/{ECHO.full_name}/Echo"
ANNOUNCE_PATH = f"/{ECHO.full_name}/Announce"
TOPIC = "drive.a.b"

SCENARIOS = ["announce", "fanout", "flood", "concurrency", "burst", "rst", "heartbeat", "fuzz",
             "bigcalls", "nocredit", "broadcast20"]
TIMED = {"fanout", "flood", "rst", "heartbeat"}

START_TIMEOUT = 30.0       # a child must print its first line within this
STATUS_TIMEOUT = 10.0
LIFETIME = 300.0           # a child exits by itself after this (SIGALRM)
SAMPLE_EVERY = 0.01        # RSS sampling period of the parent, seconds

_perf = time.perf_counter


class BenchError(RuntimeError):
    pass


# ================================================================== /proc

def _status_bytes(pid: int, field: str) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss(pid: int) -> int:
    value = _status_bytes(pid, "VmRSS")
    if value is None:
        raise BenchError(f"cannot read the RSS of process {pid} from /proc")
    return value


def process_cpu(pid: int) -> Optional[float]:
    """CPU seconds (user + system) used so far by process `pid`."""
    value = schedstat_cpu(pid)
    return value if value else cpu_seconds(pid)


class Memory:
    """A process's RSS from a baseline: the peak (VmHWM after a reset, and
    this process's own samples) and the latest value."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.base = rss(pid)
        self.hwm_reset = False
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux 4.0+)
            self.hwm_reset = True
        except OSError:
            pass
        self.base = rss(pid)
        self.sampled_max = self.base
        self.last = self.base

    def sample(self) -> None:
        value = _status_bytes(self.pid, "VmRSS")
        if value is not None:
            self.last = value
            self.sampled_max = max(self.sampled_max, value)

    def window(self, seconds: float) -> None:
        """Sample for `seconds` (a measurement window, not a wait for a condition)."""
        end = _perf() + seconds
        while _perf() < end:
            self.sample()
            time.sleep(SAMPLE_EVERY)
        self.sample()

    def peak(self) -> int:
        hwm = _status_bytes(self.pid, "VmHWM") if self.hwm_reset else None
        return max(self.sampled_max, hwm or 0)

    def report(self) -> dict:
        self.sample()
        return {"base_mb": self.base / MB, "peak_growth_mb": (self.peak() - self.base) / MB,
                "growth_mb": (self.last - self.base) / MB, "hwm_reset": self.hwm_reset}


# ================================================================== children (parent side)

class Child:
    """This script in a hidden `--child ROLE` mode: it talks in lines on
    stdin/stdout and dies with its stdin pipe (or after `lifetime`)."""

    def __init__(self, role: str, *args: object, lifetime: float = LIFETIME,
                 first_timeout: float = START_TIMEOUT) -> None:
        cmd = [sys.executable, os.path.abspath(__file__), "--lifetime", str(lifetime),
               "--child", role, *map(str, args)]
        self.role = role
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        _LIVE.append(self)  # stopped by the scenario's Children, even if its start fails
        self._fd = self.proc.stdout.fileno()
        self._pending = b""
        self.first_line = self.readline(first_timeout)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def readline(self, timeout: float, idle: Optional[Callable[[], None]] = None) -> str:
        """The next line ("" after `timeout` or at EOF); `idle()` is called
        about every 10 ms meanwhile (RSS sampling)."""
        end = _perf() + timeout
        while b"\n" not in self._pending:
            left = end - _perf()
            if left <= 0:
                return ""
            ready, _, _ = select.select([self._fd], [], [], min(left, SAMPLE_EVERY) if idle else left)
            if idle is not None:
                idle()
            if ready:
                data = os.read(self._fd, 65536)
                if not data:
                    return ""
                self._pending += data
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode().strip()

    def json(self, timeout: float, idle: Optional[Callable[[], None]] = None) -> dict:
        line = self.readline(timeout, idle)
        try:
            value = json.loads(line)
        except ValueError:
            raise BenchError(f"{self.role} child: expected a JSON line, got {line!r}") from None
        if not isinstance(value, dict):
            raise BenchError(f"{self.role} child: expected a JSON object, got {line!r}")
        return value

    def first_json(self) -> dict:
        """The child's first line, when it is its JSON result."""
        try:
            value = json.loads(self.first_line)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise BenchError(f"{self.role} child: expected a JSON object, got {self.first_line!r}")
        return value

    def send(self, line: str) -> None:
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            pass

    def expect(self, prefix: str) -> str:
        if not self.first_line.startswith(prefix):
            raise BenchError(f"{self.role} child did not start: {self.first_line!r}")
        return self.first_line[len(prefix):].strip()

    def stop(self) -> None:
        stop_child(self.proc)


class ServerChild(Child):
    """The Echo server under attack."""

    def __init__(self, heartbeat: str = "") -> None:
        super().__init__("serve", heartbeat or "-")
        self.url = self.expect("READY ")

    def status(self, command: str = "status") -> dict:
        self.send(command)
        return self.json(STATUS_TIMEOUT)

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float) -> dict:
        """Poll the server's status (another process: no event to wait on)
        until `predicate(status)`; BenchError after `timeout`."""
        end = _perf() + timeout
        while True:
            status = self.status()
            if predicate(status):
                return status
            if _perf() > end:
                raise BenchError(f"server condition not met within {timeout:g} s: {status}")
            time.sleep(0.05)


_LIVE: List[Child] = []


class Children:
    """Every child started inside the block is stopped (the last started
    first) however the block ends."""

    def __enter__(self) -> "Children":
        self.mark = len(_LIVE)
        return self

    def __exit__(self, *exc_info) -> None:
        while len(_LIVE) > self.mark:
            _LIVE.pop().stop()


def start(children: Children, make: Callable[[], Child]) -> Child:
    """Start a child through `make` (inside `children`'s block)."""
    return make()


# ================================================================== children (child side)

class Stdin:
    """Lines from the parent, read cooperatively (gevent)."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno()
        self.hub = gevent.get_hub()
        self.watcher = self.hub.loop.io(self.fd, 1)
        self.pending = b""
        self.eof = False

    def line(self, timeout: Optional[float] = None) -> Optional[str]:
        """The next line; None at EOF or after `timeout`."""
        with gevent.Timeout(timeout, False):
            while b"\n" not in self.pending:
                if self.eof:
                    return None
                self.hub.wait(self.watcher)
                data = os.read(self.fd, 4096)
                if not data:
                    self.eof = True
                self.pending += data
            line, self.pending = self.pending.split(b"\n", 1)
            return line.decode().strip()
        return None

    def until_eof(self) -> None:
        while self.line() is not None:
            pass


def out(value) -> None:
    print(value if isinstance(value, str) else json.dumps(value), flush=True)


def _heartbeat(text: str) -> Optional[rpc.Heartbeat]:
    if not text or text == "-":
        return None
    interval, misses = text.split(",")
    return rpc.Heartbeat(float(interval), int(misses))


def _stats(values: List[float]) -> dict:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def pct(q: float) -> float:
        return ordered[max(1, min(len(ordered), math.ceil(q * len(ordered)))) - 1]
    return {"p50": pct(0.5), "p99": pct(0.99), "max": ordered[-1]}


def _queued(server: rpc.Server) -> Optional[int]:
    """Messages waiting for credit in the server's subscription queues
    (internal state, read only and informative: None if it moved)."""
    try:
        topics = server._broker._topics  # type: ignore[attr-defined]
        return sum(state.queued for pubsub in topics.values() for state in pubsub.subscriptions())
    except (AttributeError, TypeError):
        return None


def child_serve(stdin: Stdin, heartbeat: str) -> None:
    """The Echo server; answers "status" and "gc" with a JSON line."""
    import gc
    server = rpc.Server(f"tcp://{HOST}:0", name="hostile-bench-server",
                        heartbeat=_heartbeat(heartbeat))
    service = EchoService()
    server.add_service(service)
    lost = [0]
    server.on_peer_lost(lambda peer, reason: lost.__setitem__(0, lost[0] + 1))
    server.start()
    out(f"READY {server.url}")

    def status() -> dict:
        conns = server.connections
        intervals = set()
        for conn in conns:
            liveness = getattr(getattr(conn, "session", None), "liveness", None)
            if liveness is not None and getattr(liveness, "interval", None) is not None:
                intervals.add(liveness.interval)
        return {"connections": len(conns),
                "suspended": sum(bool(getattr(c, "suspended", False)) for c in conns),
                "queued_messages": _queued(server), "lost": lost[0], "calls": dict(service.calls),
                "notes": sum(service.notes.values()), "intervals": sorted(intervals),
                "rss": _status_bytes(os.getpid(), "VmRSS")}
    while True:
        line = stdin.line()
        if line is None:
            break
        if line == "gc":
            gc.collect()
        if line in ("status", "gc"):
            out(status())
    os._exit(0)


def _connect(url: str, **kwargs) -> rpc.Peer:
    kwargs.setdefault("timeout", 20.0)
    return rpc.connect(url, **kwargs)


def child_bystander(stdin: Stdin, url: str) -> None:
    """Calls echo in a loop between "go" and "stop"; then prints the figures.
    Repeats for each "go" until EOF."""
    peer = _connect(url, name="bystander")
    client = rpc.Client(peer, ECHO)
    client.echo(Msg(text="warm"), timeout=10)
    out("READY")
    msg = Msg(text="bystander")
    while True:
        line = stdin.line()
        if line is None:
            break
        if line != "go":
            continue
        stop = []
        watcher = gevent.spawn(lambda: stop.append(stdin.line()))
        latencies: List[float] = []
        attempts: List[float] = []
        errors: "collections.Counter[str]" = collections.Counter()
        end = time.monotonic() + 120.0  # bound: the parent stops it far sooner
        while not stop and time.monotonic() < end:
            started = _perf()
            try:
                client.echo(msg, timeout=5.0)
            except rpc.RpcError as exc:
                attempts.append(_perf() - started)
                errors[f"{exc.code.name}: {exc.message}"[:120]] += 1
                gevent.sleep(0.01)  # pacing: no tight loop of instant failures
                continue
            latencies.append(_perf() - started)
            attempts.append(latencies[-1])
        watcher.join(timeout=1)
        result = {"calls": len(attempts), "failures": sum(errors.values()),
                  "errors": errors.most_common(3), **_stats(latencies),
                  "max_any": max(attempts) if attempts else None}
        out(result)
        if stop and stop[0] is None:
            break
    peer.close()
    os._exit(0)


def _raw_connect(url: str, timeout: float = 10.0):
    host, port = url[len("tcp://"):].rsplit(":", 1)
    assert host == HOST, host
    return gsocket.create_connection((host, int(port)), timeout=timeout)


def _raw_handshake(sock, peer_id: str, heartbeat_interval: float = 1.0) -> Session:
    """Hello/Welcome over a raw socket, with a sans-IO Session; RuntimeError
    if the server refuses or hangs up."""
    session = Session(Role.CLIENT, peer_id=peer_id, heartbeat_interval=heartbeat_interval)
    session.start(0.0)
    sock.sendall(wire(session))
    while session.peer is None:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError("the server closed the connection during the handshake")
        session.receive_data(data, 0.0)
    return session


def _heartbeat_frame() -> bytes:
    env = wire_pb2.Envelope()
    env.heartbeat.sent_us = int(time.monotonic() * 1e6)
    return framed(env)


def child_announce(stdin: Stdin, url: str, count: str, announced: str) -> None:
    """`count` connections that send only a length prefix, before any handshake."""
    prefix = frame_header(int(announced))
    held = []
    for _ in range(int(count)):
        sock = _raw_connect(url)
        sock.sendall(prefix)
        held.append(sock)
    out(f"READY {len(held)}")
    stdin.until_eof()
    os._exit(0)


def child_subscribe_many(stdin: Stdin, url: str, count: str) -> None:
    """`count` subscriptions to every topic, queue_limit 1, never taken."""
    changed = rpc.Client(_connect(url, name="fanout-subscriber"), ECHO).changed
    subs, errors = [], collections.Counter()
    total = int(count)

    def subscribe(n: int) -> None:
        for _ in range(n):
            try:
                subs.append(changed.subscribe(">", queue_limit=1, timeout=30))
            except rpc.RpcError as exc:
                errors[f"{exc.code.name}: {exc.message}"[:120]] += 1
                return
    workers = 50
    gevent.joinall([gevent.spawn(subscribe, total // workers + (i < total % workers))
                    for i in range(workers)], timeout=120)
    out({"subscribed": len(subs), "errors": errors.most_common(3)})
    stdin.until_eof()
    os._exit(0)


def child_subscribe_idle(stdin: Stdin, url: str, queue_limit: str) -> None:
    """One subscription to every topic that never takes a message (so never grants credit)."""
    peer = _connect(url, name="nocredit-subscriber")
    events: "collections.Counter[str]" = collections.Counter()
    for kind in ("lost", "resumed", "reconnected", "disconnected"):
        getattr(peer, f"on_{kind}")(lambda *_, kind=kind: events.update([kind]))
    sub = rpc.Client(peer, ECHO).changed.subscribe(">", queue_limit=int(queue_limit), timeout=30)
    out("READY")
    while stdin.line() == "status":
        out({"received": sub.received, "dropped": sub.dropped, "restarts": sub.restarts,
             "waiting": len(sub), "events": dict(events)})
    os._exit(0)


def child_publish(stdin: Stdin, url: str, count: str, size: str, confirm: str,
                  pace: str = "0") -> None:
    """On "go", publishes `count` messages of `size` bytes, confirm "each" or
    "last", starting one at most every `pace` seconds."""
    changed = rpc.Client(_connect(url, name="publisher"), ECHO).changed
    msg = Msg(data=b"p" * int(size))
    out("READY")
    if stdin.line() != "go":
        os._exit(0)
    started, published, errors = _perf(), 0, collections.Counter()
    end = time.monotonic() + 120.0
    n, every = int(count), float(pace)
    for i in range(n):
        if every:
            gevent.sleep(max(0.0, started + i * every - _perf()))  # pacing: the publish rate
        try:
            changed.publish(TOPIC, msg, confirm=confirm == "each" or i == n - 1, timeout=30)
        except rpc.RpcError as exc:
            errors[f"{exc.code.name}: {exc.message}"[:120]] += 1
            break
        published += 1
        if time.monotonic() > end:
            break
    out({"published": published, "elapsed": _perf() - started, "errors": errors.most_common(3)})
    stdin.until_eof()
    os._exit(0)


def child_flood(stdin: Stdin, url: str) -> None:
    """Echo.Note notifications as fast as it can until "stop" (at most 120 s)."""
    note = rpc.Client(_connect(url, name="flooder"), ECHO).note
    msg = Msg(text="flood")
    stop = []
    gevent.spawn(lambda: stop.append(stdin.line()))
    sent, first = 0, True
    end = time.monotonic() + 120.0
    while not stop and time.monotonic() < end:
        for _ in range(100):
            note(msg)
        sent += 100
        gevent.sleep(0)  # a gevent program: its hub writes what it queued
        if first:
            out("flooding")
            first = False
    out({"sent": sent})
    stdin.until_eof()
    os._exit(0)


def child_calls(stdin: Stdin, url: str, count: str, delay: str, heartbeat: str) -> None:
    """`count` concurrent Echo.Sleep calls of `delay` s from one peer, reconnect disabled."""
    peer = _connect(url, name="concurrency", heartbeat=_heartbeat(heartbeat),
                    reconnect=rpc.Reconnect(enabled=False))
    session = getattr(getattr(peer, "_connection", None), "session", None)
    announced = getattr(session, "peer_max_calls", None)  # internal, informative only
    client = rpc.Client(peer, ECHO)
    done, errors = [0], collections.Counter()
    request = Msg(delay=float(delay))

    def one() -> None:
        try:
            client.sleep(request, timeout=60)
            done[0] += 1
        except rpc.RpcError as exc:
            errors[f"{exc.code.name}: {exc.message}"[:120]] += 1
    started = _perf()
    callers = [gevent.spawn(one) for _ in range(int(count))]
    gevent.joinall(callers, timeout=90)
    unfinished = sum(not c.ready() for c in callers)
    out({"completed": done[0], "failed": sum(errors.values()), "unfinished": unfinished,
         "errors": errors.most_common(3), "elapsed": _perf() - started,
         "peer_closed": peer.closed, "announced_max_calls": announced})
    gevent.killall([c for c in callers if not c.ready()], block=False)
    stdin.until_eof()
    os._exit(0)


def child_connect_burst(stdin: Stdin, url: str, count: str) -> None:
    """On "go", `count` rpc.connect at once; prints how many were refused, holds the rest."""
    out("READY")
    if stdin.line() != "go":
        os._exit(0)
    peers, errors = [], collections.Counter()

    def one() -> None:
        try:
            peers.append(_connect(url, reconnect=rpc.Reconnect(enabled=False)))
        except rpc.RpcError as exc:
            errors[f"{exc.code.name}: {exc.message}"[:120]] += 1
    gevent.joinall([gevent.spawn(one) for _ in range(int(count))], timeout=60)
    out({"connected": len(peers), "refused": sum(errors.values()), "errors": errors.most_common(3)})
    stdin.until_eof()
    os._exit(0)


def child_reset(stdin: Stdin, url: str, count: str) -> None:
    """`count` times: handshake, then reset the connection (SO_LINGER 0, close)."""
    started, done, errors = _perf(), 0, collections.Counter()
    end = time.monotonic() + 60.0
    for i in range(int(count)):
        if time.monotonic() > end:
            break
        try:
            sock = _raw_connect(url)
        except OSError as exc:
            errors[f"connect: {exc}"[:120]] += 1
            continue
        try:
            _raw_handshake(sock, f"resetter-{i}")
            done += 1
        except (OSError, RuntimeError) as exc:
            errors[str(exc)[:120]] += 1
        sock.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    out({"handshaken": done, "elapsed": _perf() - started, "errors": errors.most_common(3)})
    stdin.until_eof()
    os._exit(0)


def child_probe(stdin: Stdin, url: str) -> None:
    """On "go": connect and call echo (1 s timeouts), retrying until it works (at most 30 s)."""
    out("READY")
    if stdin.line() != "go":
        os._exit(0)
    started, attempts, errors = _perf(), 0, collections.Counter()
    elapsed = None
    while _perf() - started < 30.0:
        attempts += 1
        peer = None
        try:
            peer = _connect(url, timeout=1.0, reconnect=rpc.Reconnect(enabled=False))
            rpc.Client(peer, ECHO).echo(Msg(text="probe"), timeout=1.0)
            elapsed = _perf() - started
            break
        except rpc.RpcError as exc:
            errors[f"{exc.code.name}: {exc.message}"[:120]] += 1
            gevent.sleep(0.01)  # pacing between attempts
        finally:
            if peer is not None:
                peer.close()
    out({"elapsed": elapsed, "attempts": attempts, "errors": errors.most_common(3)})
    stdin.until_eof()
    os._exit(0)


def child_hold(stdin: Stdin, url: str, count: str, heartbeat: str) -> None:
    """`count` idle peers with `heartbeat`."""
    lost = [0]
    peers = []
    for i in range(int(count)):
        peer = _connect(url, name=f"hold-{i}", heartbeat=_heartbeat(heartbeat))
        peer.on_lost(lambda reason: lost.__setitem__(0, lost[0] + 1))
        peers.append(peer)
    out(f"READY {len(peers)}")
    stdin.until_eof()
    os._exit(0)


def child_fuzz(stdin: Stdin, url: str, count: str, parallel: str) -> None:
    """`count` short fuzzed sessions, `parallel` at a time, each closed."""
    rng = random.Random(7)
    started, handshaken, errors = _perf(), [0], collections.Counter()
    close = wire_pb2.Envelope()
    close.close.status.code = rpc.StatusCode.CANCELLED
    close.close.end_session = True
    end = time.monotonic() + 120.0

    def session(i: int) -> None:
        junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
        try:
            sock = _raw_connect(url, timeout=2.0)
        except OSError as exc:
            errors[f"connect: {exc}"[:120]] += 1
            return
        try:
            if i % 2 == 0:
                # As the in-suite test: a 32-byte frame of junk, whose tail (when
                # there is more junk) starts a frame of a random length; then Close.
                _raw_handshake(sock, f"fuzzer-{i}")
                handshaken[0] += 1
                sock.sendall(frame_header(32) + junk + framed(close))
            else:
                sock.sendall(junk)
            sock.shutdown(gsocket.SHUT_WR)
            while sock.recv(65536):  # until the server hangs up (2 s timeout)
                pass
        except (OSError, RuntimeError) as exc:  # reset by the server, timeout
            errors[type(exc).__name__] += 1
        finally:
            sock.close()

    def worker(indexes: range) -> None:
        for i in indexes:
            if time.monotonic() > end:
                return
            session(i)
    n, par = int(count), int(parallel)
    gevent.joinall([gevent.spawn(worker, range(k, n, par)) for k in range(par)], timeout=150)
    out({"sessions": n, "handshaken": handshaken[0], "elapsed": _perf() - started,
         "errors": errors.most_common(3)})
    stdin.until_eof()
    os._exit(0)


def child_bigcalls(stdin: Stdin, url: str, max_calls: str, seconds: str) -> None:
    """After a handshake, 1 MiB echo calls as fast as it can, never reading a reply."""
    sock = _raw_connect(url)
    session = _raw_handshake(sock, "never-reads", heartbeat_interval=1.0)
    payload = Msg(text="x" * MIB).SerializeToString()
    out("READY")
    if stdin.line() != "go":
        os._exit(0)
    seq = session.reliability.next_seq
    sent, stalled, started = 0, False, _perf()
    sock.settimeout(5.0)  # a server that stops reading us shows as a timeout
    try:
        for call_id in range(1, int(max_calls) + 1):
            env = wire_pb2.Envelope(seq=seq, payload=payload)
            env.request.call_id = call_id
            env.request.method = ECHO_PATH
            sock.sendall(framed(env))
            seq += 1
            sent += 1
            if _perf() - started > float(seconds):
                break
    except gsocket.timeout:
        stalled = True
    except OSError as exc:
        stalled = f"{type(exc).__name__}: {exc}"
    out({"sent": sent, "stalled": stalled, "elapsed": _perf() - started})
    stdin.until_eof()  # holds the connection, still never reading
    os._exit(0)


def child_never_read(stdin: Stdin, url: str, count: str) -> None:
    """`count` handshaken connections that send heartbeats and never read."""
    socks = []
    for i in range(int(count)):
        sock = _raw_connect(url)
        _raw_handshake(sock, f"never-read-{i}", heartbeat_interval=1.0)
        sock.settimeout(1.0)
        socks.append(sock)
    out(f"READY {len(socks)}")
    stop = []
    gevent.spawn(lambda: stop.append(stdin.line()))
    end = time.monotonic() + 300.0
    while not stop and time.monotonic() < end:
        frame = _heartbeat_frame()
        for sock in socks:
            try:
                sock.sendall(frame)
            except OSError:
                pass
        gevent.sleep(0.3)  # heartbeat pacing: the server declares us lost after 3 s of silence
    os._exit(0)


def child_broadcast(stdin: Stdin, url: str, count: str, size: str) -> None:
    """On "go", broadcasts `count` messages of `size` bytes, each confirmed."""
    peer = _connect(url, name="broadcaster")
    payload = Msg(data=b"b" * int(size)).SerializeToString()
    out("READY")
    if stdin.line() != "go":
        os._exit(0)
    started, sent, errors = _perf(), 0, collections.Counter()
    end = time.monotonic() + 60.0
    for _ in range(int(count)):
        try:
            peer.broadcast(ANNOUNCE_PATH, payload, confirm=True, timeout=10)
        except rpc.RpcError as exc:
            errors[f"{exc.code.name}: {exc.message}"[:120]] += 1
            break
        sent += 1
        if time.monotonic() > end:
            break
    out({"sent": sent, "elapsed": _perf() - started, "errors": errors.most_common(3)})
    stdin.until_eof()
    os._exit(0)


CHILDREN = {
    "serve": child_serve, "bystander": child_bystander, "announce": child_announce,
    "subscribe-many": child_subscribe_many, "subscribe-idle": child_subscribe_idle,
    "publish": child_publish, "flood": child_flood, "calls": child_calls,
    "connect-burst": child_connect_burst, "reset": child_reset, "probe": child_probe,
    "hold": child_hold, "fuzz": child_fuzz, "bigcalls": child_bigcalls,
    "never-read": child_never_read, "broadcast": child_broadcast,
}


def run_child(role: str, args: List[str], lifetime: float) -> None:
    signal.alarm(max(1, int(lifetime)))  # default action: the process ends
    logging.basicConfig(level=logging.INFO, format=f"{role} %(levelname)s %(message)s")
    # Refusals and losses are expected here: shown only with --log (passed on in the environment).
    level = os.environ.get("HOSTILE_BENCH_LOG", "critical").upper()
    logging.getLogger("onedrive_rpc").setLevel(level if role == "serve" else logging.CRITICAL)
    CHILDREN[role](Stdin(), *args)
    os._exit(0)


# ================================================================== scenarios

def row(scenario: str, figure: str, measured: str, promise: str, verdict: Optional[bool],
        **details) -> dict:
    return {"scenario": scenario, "figure": figure, "measured": measured, "promise": promise,
            "verdict": "report" if verdict is None else ("holds" if verdict else "misses"),
            "details": details}


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def scenario_announce(args) -> List[dict]:
    with Children() as kids:
        server = start(kids, ServerChild)
        memory = Memory(server.pid)
        attacker = start(kids, lambda: Child("announce", server.url, 32, 16 * MIB))
        opened = int(attacker.expect("READY "))
        memory.window(1.0)
        status = server.status()
        mem = memory.report()
    note(f"announce: {opened} connections, server RSS peak {mem['peak_growth_mb']:+.1f} MB, "
         f"now {mem['growth_mb']:+.1f} MB; {status['connections']} connections held")
    return [row("announce", "server RSS growth, 32 x 16 MiB announced",
                f"{mem['peak_growth_mb']:+.1f} MB", "< 16 MB", mem["peak_growth_mb"] < 16,
                connections=opened, memory=mem, server=status)]


def _fanout_once(args) -> dict:
    with Children() as kids:
        server = start(kids, ServerChild)
        subscriber = start(kids, lambda: Child("subscribe-many", server.url, 10_000,
                                               first_timeout=180))
        subscribed = subscriber.first_json()
        bystander = start(kids, lambda: Child("bystander", server.url))
        bystander.expect("READY")
        publisher = start(kids, lambda: Child("publish", server.url, 300, 16, "last"))
        publisher.expect("READY")
        bystander.send("go")
        time.sleep(0.3)  # the bystander's window opens before the first publish
        publisher.send("go")
        published = publisher.json(120)
        time.sleep(0.3)
        bystander.send("stop")
        latency = bystander.json(30)
    res = {"subscribed": subscribed.get("subscribed"), "published": published, "bystander": latency}
    note(f"fanout: {res['subscribed']} subscriptions, {published.get('published')} published in "
         f"{published.get('elapsed', float('nan')):.2f} s; bystander {latency['calls']} calls, "
         f"{latency['failures']} failed, max {_ms(latency['max_any'])}")
    return res


def scenario_fanout(args) -> List[dict]:
    runs = [_fanout_once(args) for _ in range(args.runs)]
    failures = [r["bystander"]["failures"] for r in runs]
    worst = [r["bystander"]["max_any"] for r in runs]
    short = [r for r in runs if r["subscribed"] != 10_000 or r["published"].get("published") != 300]
    extra = f" ({len(short)} run(s) short of 10,000 subs / 300 publishes)" if short else ""
    return [row("fanout", "bystander failed calls, 10,000 subs x 300 publishes",
                _spread(failures, "{:.0f}") + extra, "0", max(failures) == 0 and not short, runs=runs),
            row("fanout", "bystander max call latency", _spread(worst, "{:.3f}", " s"), "< 1 s",
                max(worst) < 1.0 and not short)]


def _flood_once(args) -> dict:
    with Children() as kids:
        server = start(kids, ServerChild)
        bystander = start(kids, lambda: Child("bystander", server.url))
        bystander.expect("READY")
        bystander.send("go")
        time.sleep(1.0)  # the idle measurement window
        bystander.send("stop")
        idle = bystander.json(30)
        flooder = start(kids, lambda: Child("flood", server.url))
        flooder.expect("flooding")
        before = server.wait_for(lambda s: s["notes"] >= 20_000, 30)
        t0 = _perf()
        bystander.send("go")
        time.sleep(3.0)  # the measurement window
        bystander.send("stop")
        flooded = bystander.json(30)
        after = server.status()
        rate = (after["notes"] - before["notes"]) / (_perf() - t0)
        flooder.send("stop")
        sent = flooder.json(30)
    note(f"flood: {rate:,.0f} notes/s taken by the server; bystander p50 {_ms(flooded['p50'])} "
         f"p99 {_ms(flooded['p99'])} ({flooded['calls']} calls, {flooded['failures']} failed); "
         f"idle p50 {_ms(idle['p50'])}")
    return {"idle": idle, "flooded": flooded, "notes_per_s": rate, "flooder": sent}


def scenario_flood(args) -> List[dict]:
    runs = [_flood_once(args) for _ in range(args.runs)]
    p50 = [r["flooded"]["p50"] for r in runs]
    p99 = [r["flooded"]["p99"] for r in runs]
    worst = [r["flooded"]["max"] for r in runs]
    idle = [r["idle"]["p50"] for r in runs]
    failed = sum(r["flooded"]["failures"] for r in runs)
    ok = all(v is not None for v in p50)
    return [row("flood", "bystander p50 during a notification flood",
                _spread(p50, "{:.2f}", " ms", 1000) + f" (medians: p99 {_median_ms(p99, 1)}, "
                f"max {_median_ms(worst, 0)}, idle p50 {_median_ms(idle, 2)}; {failed} failed)",
                "< 10 ms", ok and max(p50) < 0.010 and failed == 0, runs=runs)]


def scenario_concurrency(args) -> List[dict]:
    rows = []
    with Children() as kids:
        server = start(kids, lambda: ServerChild("0.2,3"))
        for count in (1100, 5000):
            client = start(kids, lambda: Child("calls", server.url, count, 2.0, "0.2,3",
                                               first_timeout=120))
            res = client.first_json()
            client.stop()
            note(f"concurrency {count}: {res['completed']} completed, {res['failed']} failed, "
                 f"{res['unfinished']} unfinished in {res['elapsed']:.1f} s; peer closed "
                 f"{res['peer_closed']}; server announced max_concurrent_calls "
                 f"{res['announced_max_calls']}; {res['errors']}")
            rows.append(row("concurrency", f"{count:,} concurrent 2 s calls: completed / failed",
                            f"{res['completed']:,} / {res['failed']:,}"
                            + (f" ({res['unfinished']} unfinished)" if res["unfinished"] else ""),
                            "all complete", res["completed"] == count, result=res))
    return rows


def scenario_burst(args) -> List[dict]:
    with Children() as kids:
        server = start(kids, ServerChild)
        burst = [start(kids, lambda: Child("connect-burst", server.url, 100)) for _ in range(8)]
        for child in burst:
            child.expect("READY")
        for child in burst:
            child.send("go")
        results = [child.json(90) for child in burst]
        status = server.status()
    refused = sum(r["refused"] for r in results)
    connected = sum(r["connected"] for r in results)
    reasons: "collections.Counter[str]" = collections.Counter()
    for r in results:
        for reason, n in r["errors"]:
            reasons[reason] += n
    note(f"burst: {connected} connected, {refused} refused ({reasons.most_common(2)}); "
         f"server holds {status['connections']}")
    return [row("burst", "refused of 8 x 100 simultaneous connects (limit 1,024)",
                f"{refused} (connected {connected}, server holds {status['connections']})", "0",
                refused == 0 and connected == 800, results=results, reasons=reasons.most_common(5))]


def _rst_once(args) -> dict:
    with Children() as kids:
        server = start(kids, ServerChild)
        probe = start(kids, lambda: Child("probe", server.url))
        probe.expect("READY")
        resetter = start(kids, lambda: Child("reset", server.url, 1024, first_timeout=90))
        reset = resetter.first_json()
        probe.send("go")
        res = probe.json(60)
        status = server.status()
    note(f"rst: {reset.get('handshaken')} handshakes reset in {reset.get('elapsed', float('nan')):.2f} s "
         f"({reset.get('errors')}); a new client called after {_s(res['elapsed'])} "
         f"({res['attempts']} attempts, {res['errors']}); server: {status['connections']} "
         f"connections, {status['suspended']} suspended")
    return {"reset": reset, "probe": res, "server": status}


def scenario_rst(args) -> List[dict]:
    runs = [_rst_once(args) for _ in range(args.runs)]
    times = [r["probe"]["elapsed"] for r in runs]
    short = [r for r in runs if r["reset"].get("handshaken") != 1024]
    if any(t is None for t in times):
        measured = f"not within 30 s in {sum(t is None for t in times)} of {len(times)} run(s)"
        holds = False
    else:
        measured = _spread(times, "{:.3f}", " s")
        holds = max(times) < 1.0
    if short:
        measured += f" ({len(short)} run(s) short of 1,024 handshakes)"
        holds = False
    return [row("rst", "a new client's first call after 1,024 handshake+RST", measured, "< 1 s",
                holds, runs=runs)]


def _heartbeat_once(args) -> dict:
    with Children() as kids:
        server = start(kids, ServerChild)
        holders = [start(kids, lambda: Child("hold", server.url, 25, "0.01,50", first_timeout=60))
                   for _ in range(4)]
        held = sum(int(holder.expect("READY ")) for holder in holders)
        pids = [server.pid] + [holder.pid for holder in holders]
        time.sleep(1.0)  # warm-up
        c0, t0 = [process_cpu(pid) for pid in pids], _perf()
        time.sleep(3.0)  # the measurement window
        c1, t1 = [process_cpu(pid) for pid in pids], _perf()
        status = server.status()
    if None in c0 or None in c1:
        raise BenchError("cannot read the CPU time of the children from /proc")
    pct, *holder_pct = [(b - a) / (t1 - t0) * 100 for a, b in zip(c0, c1)]
    note(f"heartbeat: {held} peers asking 10 ms; server {pct:.1f} % of a core (the 4 holders "
         f"{', '.join(f'{p:.1f}' for p in holder_pct)} %); agreed intervals {status['intervals']}; "
         f"{status['lost']} lost")
    return {"peers": held, "server_pct": pct, "holders_pct": holder_pct, "server": status}


def scenario_heartbeat(args) -> List[dict]:
    runs = [_heartbeat_once(args) for _ in range(args.runs)]
    pct = [r["server_pct"] for r in runs]
    intervals = sorted({i for r in runs for i in r["server"]["intervals"]})
    agreed = ", ".join(f"{i * 1000:g}" for i in intervals) or "?"
    return [row("heartbeat", "server CPU, 100 peers asking a 10 ms heartbeat",
                _spread(pct, "{:.1f}", " %") + f" (agreed interval {agreed} ms)", "< 30 %",
                max(pct) < 30 and all(r["peers"] == 100 for r in runs), runs=runs)]


def scenario_fuzz(args) -> List[dict]:
    with Children() as kids:
        server = start(kids, ServerChild)
        server.status()
        memory = Memory(server.pid)
        fuzzer = start(kids, lambda: Child("fuzz", server.url, 1000, 20, first_timeout=180))
        res = fuzzer.first_json()
        t0 = _perf()
        status = server.wait_for(lambda s: s["connections"] == 0, 30)
        drained = _perf() - t0
        mem = memory.report()
        after_gc = server.status("gc")
    gc_growth = (after_gc["rss"] - memory.base) / MB
    note(f"fuzz: {res['sessions']} sessions ({res['handshaken']} handshaken) in {res['elapsed']:.1f} s, "
         f"{res['errors']}; server empty {drained:.2f} s later; RSS {mem['growth_mb']:+.1f} MB "
         f"(peak {mem['peak_growth_mb']:+.1f}), after gc.collect() {gc_growth:+.1f} MB")
    return [row("fuzz", "server RSS growth after 1,000 fuzzed sessions closed",
                f"{mem['growth_mb']:+.1f} MB (after gc.collect() {gc_growth:+.1f} MB)", "< 40 MB",
                mem["growth_mb"] < 40, fuzz=res, memory=mem, server=status)]


def scenario_bigcalls(args) -> List[dict]:
    with Children() as kids:
        server = start(kids, ServerChild)
        attacker = start(kids, lambda: Child("bigcalls", server.url, 2000, 15))
        attacker.expect("READY")
        memory = Memory(server.pid)
        attacker.send("go")
        res = attacker.json(60, idle=memory.sample)
        memory.window(1.0)  # the server finishes what it read
        status = server.status()
        mem = memory.report()
    stalled = res["stalled"]
    how = ("the server stopped reading" if stalled is True else
           f"send failed: {stalled}" if stalled else "all read")
    note(f"bigcalls: {res['sent']} x 1 MiB sent in {res['elapsed']:.1f} s ({how}); server RSS peak "
         f"{mem['peak_growth_mb']:+,.0f} MB, now {mem['growth_mb']:+,.0f} MB; "
         f"{status['connections']} connections, echo handled {status['calls'].get('echo', 0)}")
    return [row("bigcalls", "server peak RSS growth, 1 MiB calls never read",
                f"{mem['peak_growth_mb']:+,.0f} MB ({res['sent']:,} calls sent, {how})",
                "< 400 MB, all read (max_call_bytes 64 MiB admitted)",
                mem["peak_growth_mb"] < 400 and not stalled, attacker=res, memory=mem, server=status)]


def _nocredit_once(pace: float) -> dict:
    with Children() as kids:
        server = start(kids, ServerChild)
        subscriber = start(kids, lambda: Child("subscribe-idle", server.url, 1024))
        subscriber.expect("READY")
        publisher = start(kids, lambda: Child("publish", server.url, 2048, MIB, "each", pace))
        publisher.expect("READY")
        memory = Memory(server.pid)
        publisher.send("go")
        res = publisher.json(150, idle=memory.sample)
        memory.window(1.0)
        status = server.status()
        subscriber.send("status")
        sub = subscriber.json(STATUS_TIMEOUT)
        mem = memory.report()
    cut = sub["events"].get("reconnected", 0) + sub["events"].get("resumed", 0)
    note(f"nocredit (a publish every {pace * 1000:g} ms): {res['published']} x 1 MiB published in "
         f"{res['elapsed']:.1f} s {res['errors']}; server RSS peak {mem['peak_growth_mb']:+,.0f} MB, "
         f"now {mem['growth_mb']:+,.0f} MB, {status['queued_messages']} messages queued; the "
         f"subscriber received {sub['received']}, its connection came back {cut} times {sub['events']}")
    return {"pace": pace, "publisher": res, "memory": mem, "server": status, "subscriber": sub,
            "cut": cut}


def scenario_nocredit(args) -> List[dict]:
    rows = []
    for pace, label in ((0.005, "paced 200/s"), (0.0, "unpaced")):
        res = _nocredit_once(pace)
        mem, queued = res["memory"], res["server"]["queued_messages"]
        rows.append(row("nocredit", f"server peak RSS growth, 2,048 x 1 MiB published ({label})",
                        f"{mem['peak_growth_mb']:+,.0f} MB ({'?' if queued is None else queued} "
                        f"queued at the server; subscriber got {res['subscriber']['received']}, "
                        f"cut {res['cut']} times)",
                        "< 64 MB (max_subscription_bytes 8 MiB)", mem["peak_growth_mb"] < 64,
                        **res))
    return rows


def scenario_broadcast20(args) -> List[dict]:
    with Children() as kids:
        server = start(kids, ServerChild)
        readers = start(kids, lambda: Child("never-read", server.url, 20))
        held = int(readers.expect("READY "))
        caster = start(kids, lambda: Child("broadcast", server.url, 100, MIB))
        caster.expect("READY")
        memory = Memory(server.pid)
        caster.send("go")
        res = caster.json(90, idle=memory.sample)
        memory.window(1.0)
        status = server.status()
        mem = memory.report()
    note(f"broadcast20: {res['sent']} x 1 MiB broadcast to {held} never-reading peers in "
         f"{res['elapsed']:.1f} s {res['errors']}; server RSS peak {mem['peak_growth_mb']:+,.0f} MB, "
         f"now {mem['growth_mb']:+,.0f} MB; {status['connections']} connections, {status['lost']} lost")
    closed = held - max(0, status["connections"] - 1)  # the broadcaster is the one left
    return [row("broadcast20", "server peak RSS growth, 1 MiB broadcasts, 20 never read",
                f"{mem['peak_growth_mb']:+,.0f} MB ({res['sent']} of 100 confirmed; {closed} of "
                f"{held} readers closed)",
                "< 300 MB (max_server_queued_bytes 256 MiB)", mem["peak_growth_mb"] < 300,
                broadcast=res, memory=mem, server=status)]


# ================================================================== report

def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


def _s(value: Optional[float]) -> str:
    return "never" if value is None else f"{value:.3f} s"


def _spread(values: List[float], fmt: str, unit: str = "", scale: float = 1.0) -> str:
    """The median, and [min..max] when there are several values."""
    if not values or any(v is None for v in values):
        return "-"
    scaled = [v * scale for v in values]
    text = fmt.format(statistics.median(scaled)) + unit
    if len(scaled) > 1:
        text += f" [{fmt.format(min(scaled))}..{fmt.format(max(scaled))}]"
    return text


def _median_ms(values: List[Optional[float]], digits: int) -> str:
    known = [v for v in values if v is not None]
    return f"{statistics.median(known) * 1000:.{digits}f} ms" if known else "-"


def print_table(rows: List[dict], runs: int) -> None:
    headers = ("scenario", "figure", "measured", "promise", "verdict")
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in headers]
    print(f"\nHostile peers (issue 10), server and attackers in separate processes, TCP {HOST}; "
          f"timing scenarios: median [min..max] of {runs} run(s)")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(r[h]).ljust(w) for h, w in zip(headers, widths)).rstrip())


SCENARIO_FUNCS = {
    "announce": scenario_announce, "fanout": scenario_fanout, "flood": scenario_flood,
    "concurrency": scenario_concurrency, "burst": scenario_burst, "rst": scenario_rst,
    "heartbeat": scenario_heartbeat, "fuzz": scenario_fuzz, "bigcalls": scenario_bigcalls,
    "nocredit": scenario_nocredit, "broadcast20": scenario_broadcast20,
}


def run(args) -> int:
    parts = [p.strip().lower() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in parts if p not in SCENARIOS]
    if not parts or unknown:
        raise SystemExit(f"--only takes a comma-separated subset of {','.join(SCENARIOS)}")
    if not 1 <= args.runs <= 10:
        raise SystemExit("--runs must be in 1..10")
    started = _perf()
    rows: List[dict] = []
    for name in SCENARIOS:
        if name not in parts:
            continue
        t0 = _perf()
        try:
            rows.extend(SCENARIO_FUNCS[name](args))
        except BenchError as exc:
            rows.append(row(name, "(scenario failed)", str(exc)[:100], "-", False))
        note(f"  ({name}: {_perf() - t0:.0f} s)")
    print_table(rows, args.runs)
    elapsed = _perf() - started
    print(f"\ntotal {elapsed:.0f} s")
    if args.json:
        print(json.dumps({"rows": rows, "runs": args.runs, "elapsed_s": elapsed}, indent=1,
                         default=str))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma-separated scenarios (default all: {','.join(SCENARIOS)})")
    parser.add_argument("--runs", type=int, default=3,
                        help=f"runs of the timing scenarios ({', '.join(sorted(TIMED))}); default 3")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    parser.add_argument("--log", choices=["critical", "error", "warning", "info"],
                        help="show the server's onedrive_rpc log at this level (stderr)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--lifetime", type=float, default=LIFETIME, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.log:
        os.environ["HOSTILE_BENCH_LOG"] = args.log  # inherited by the children
    if args.child:
        role, *rest = args.child
        if role not in CHILDREN:
            raise SystemExit(f"unknown child role {role!r}")
        run_child(role, rest, args.lifetime)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
