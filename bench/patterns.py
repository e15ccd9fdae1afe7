#!/usr/bin/env python3
"""Pattern benchmark: onedrive-rpc fan-out, work queue and server stream against "the limit" (raw gevent).

    python bench/patterns.py [--duration 2] [--runs 3] [--only W4,W5,W6]
                             [--impls ours,limit,batched]
                             [--w4-policy block|drop_oldest]
                             [--w4-publisher flood|window]
                             [--stream-window 64] [--json]

Processes. Each server runs in a child OS process (this script with the
hidden `--serve ours|limit|batched` option, which prints its URL on stdout
and exits when its stdin closes). The 4 subscribers of W4 and the 4
consumers of W5 are child processes too (hidden `--sink sub|con`), fresh for
every measurement: each prints "ready" once the server has registered it
(or "error: <why>" if subscribe() refused its arguments, and exits), then
"p <count>" on stdout every R messages it has handled (R = 128 in W4, 32 in
W5), and on "end <n>" from its stdin waits until it has handled n (or until
nothing arrived for 1 s; 30 s at most: a flooding W4 publisher of ours can
be up to its connection's max_queued_bytes, 32 MiB or about 200k publishes,
ahead of the deliveries when it stops, which takes seconds to deliver),
then until nothing arrives for 0.2 s, and answers
"f <count> <dropped> <bad>" with its exact count. The
publisher, the producer and the stream client run in this process.
Loopback TCP on 127.0.0.1 only, TCP_NODELAY on every socket. Payloads are
100 bytes: ours sends the Echo service's Msg(data=100 bytes), the raw side
frames with a 100-byte body.

  ours     the full stack: a Server hosting the reference EchoService in
           its child, rpc.connect peers and rpc.Client in this process and
           in the sinks.
  limit    THE LIMIT, the headline: one raw gevent server speaking 4-byte
           big-endian length + body frames, a straightforward implementation
           in which every frame is its own sendall. A connection names its
           role in a 5-byte hello (role byte + a 4-byte argument). The server
           recv_into()s a buffer (many frames per read is fine) and walks its
           complete frames, passing each on as a memoryview slice of the
           buffer: no copy, no parsing past the length prefix.
  batched  an upper bound, shown for honesty, in W4 only (W5 and W6 have no
           batched variant): the same raw server and clients, except that
           the fan-out forwards everything complete in one read with one
           sendall per subscriber (see W4).

Workloads (each measurement: a warm-up, then `--duration` seconds; every
loop is also bounded by a message count, and a watchdog bounds the whole
measurement):

  W4  fan-out 1 -> 4: one publisher, 4 subscriber processes. Every
      publisher floods: it publishes as fast as it can, in bursts of 64 back
      to back, yielding to the hub between bursts (so that the clock and
      the report readers run); nothing it does waits for the subscribers.
      ours: a peer in this process publishes through the server (the
      realistic case: the server's broker fans out), fire-and-forget
      `client.changed.publish("bench.fanout", msg)`; each subscriber
      process holds `client.changed.subscribe("bench.>", callback,
      queue_limit=1024, policy=P)` and its callback counts. P is
      `--w4-policy`: `block` (the default, the headline) makes the server
      hold the publisher back while a subscription's queue is full (its
      publish window, spec §8.3), dropping nothing: ours does the limit's
      job, lossless, and the ratio is fair. `drop_oldest` lets a full
      subscription drop its oldest message, so a flooding publisher loses
      messages (the lost and dropped rows show how many).
      limit: the publisher sends each frame with its own sendall; for each
      complete frame the server does one sendall to each of the 4 subscriber
      sockets in turn; subscribers recv_into() and count complete frames.
      Nothing paces it but TCP: when a subscriber falls behind, the server's
      sendall to it blocks, the server stops reading the publisher, and the
      publisher's sendall blocks. It is lossless by construction; its loss
      is measured all the same (a note says so if it is not 0).
      batched: the same, except that the server forwards everything complete
      in one read with one sendall per subscriber, as ours coalesces its
      output (the publisher still sends each message with its own sendall,
      as an application publishing one message at a time does).
      `--w4-publisher window`, an extra that is not the headline: every
      publisher (ours and the raw ones) stays at most 1024 messages ahead of
      the slowest subscriber's last report (bursts of at most 64, yielding
      after each). 1024 is the subscriptions' queue_limit: the server has
      sent a subscriber at least what it has handled, so the server's queue
      for it never holds more than 1024 and a correct library drops nothing,
      whatever the policy. It holds the raw fan-out to the pace of the
      reports, a baseline slowed to match, so its figures only compare paced
      with paced: the W4 rows are labelled "paced" and no goal applies.
      Figure: delivered messages/s summed over the 4 subscribers, from their
      reports between the end of the warm-up and the end of the window.
      When publishing has stopped, each subscriber is told the number P
      published (warm-up included) and reports its exact count:
      lost = 4 P - delivered, for every implementation, and dropped = the
      sum of the subscriptions' `dropped` (ours only); both are summed over
      runs in the table. A note tells how many of the lost no subscription
      counted as dropped: still undelivered when the subscribers reported,
      or a bug.
      Goal: ours / limit (unpaced) >= 0.5 with 0 lost, i.e. measured with
      `--w4-policy block`; the rate row says "met" only if both hold.
  W5  work queue: one producer, 4 consumer processes, prefetch 16, a handler
      that does nothing (returning acknowledges).
      ours: 16 greenlets here each call `client.work.produce(msg)` back to
      back (each returns once the server's queue accepted the task);
      consumers hold `client.work.consume(handler, prefetch=16)`.
      limit: one sender greenlet keeps 16 task frames unacknowledged (one
      sendall each) and a reader counts the server's acks. The server, for
      each complete task frame, sends it to the next consumer with credit
      (round robin; each starts with 16, its prefetch; a body is copied into
      a FIFO only when no consumer has credit), then sends the producer an
      ack (an empty frame). Consumers answer each task with an empty "done"
      frame (one sendall each), which gives that consumer its credit back and
      lets the FIFO drain.
      Both producers also stay at most 512 tasks ahead of what the consumers
      have reported done, so the queue never grows past that.
      Figure: completed tasks/s summed over the consumers, from their
      reports. Afterwards every task produced must have been completed
      exactly once: missing = produced - completed (summed over runs).
  W6  server stream: one connection, one stream of N items of 100 bytes;
      items/s at the client, from sending the request to the last item.
      ours: iterate `client.count(Msg(count=N, data=100 B), window=64)`
      (the handler yields Msg(text=str(i), data=...)); limit: the client
      sends a 4-byte N, the server sendall()s a prebuilt frame N times, the
      client recv_into()s and counts complete frames. The warm-up runs
      streams of 2000 items; N = the last one's rate x `--duration`.

Runs interleave the implementations (rotating which goes first) so that
noise on a shared machine hits all of them; the table shows the median over
runs of each figure, then ratio = median(ours) / median(limit), the
headline, and ratio/b = median(ours) / median(batched). Below the rates,
the CPU time (user + system) spent per message in the measured phase, in
µs, by the server process, by this process (publisher, producer or stream
client; time.process_time()) and by the 4 sinks together (/proc/<pid>/stat,
10 ms ticks: fine over seconds); lower is better there. A message is a
delivery in W4 (4 per publish), a completed task in W5, an item in W6.

Profiling hint: `--impls ours` skips the raw side; attach py-spy to a
child by its pid (`py-spy record --pid ...`) while a long run goes on.
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import time
from collections import deque
from typing import Callable, Deque, Dict, Iterator, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "rpc", "python"))

import gevent  # noqa: E402
from gevent import socket as gsocket  # noqa: E402
from gevent.event import AsyncResult, Event  # noqa: E402
from gevent.os import nb_read  # noqa: E402

import onedrive_rpc as rpc  # noqa: E402
from onedrive_rpc.testing import echo_pb2  # noqa: E402
from onedrive_rpc.testing.echo_service import ECHO, EchoService  # noqa: E402
# bench/ is on sys.path as the script's folder:
from procstat import cpu_seconds, fmt, medians, stop_child  # noqa: E402

HOST = "127.0.0.1"
PAYLOAD = 100
SINKS = 4                    # subscribers in W4, consumers in W5
TOPIC = "bench.fanout"
PATTERN = "bench.>"
QUEUE_LIMIT = 1024           # W4 subscriptions (also ours' default)
PUB_WINDOW = QUEUE_LIMIT     # W4 paced (`window`): most messages ahead of the slowest subscriber
BURST = 64                   # W4: publishes between yields to the hub
W4_REPORT = 128              # a subscriber reports every this many messages
PREFETCH = 16                # W5 consumers
PRODUCERS = 16               # W5 produce calls in flight
BACKLOG = 512                # W5: most tasks produced and not reported done
W5_REPORT = 32
STREAM_WINDOW = 64           # W6 (ours): items the client lets wait unread
PROBE_ITEMS = 2000           # W6 warm-up stream length
# Hard bounds, whatever --duration says.
MAX_MESSAGES = 50_000_000
MAX_DURATION = 120.0
MAX_WARMUP_STREAMS = 1000
CALL_TIMEOUT = 30.0          # connect, subscribe, produce, joins; also sizes the watchdog
START_TIMEOUT = 30.0         # a child must print its first line within this
WAIT = 0.5                   # longest single wait for progress before looking again
DRAIN_TIMEOUT = 30.0         # a sink waits at most this long for the rest after "end"
DRAIN_IDLE = 1.0             # ... or until nothing arrived for this long
SETTLE = 0.2                 # then until nothing more arrives for this long
RAW_READ_SIZE = 256 * 1024
RAW_MAX_FRAME = 64 * 1024    # the raw side hangs up on anything larger (fits a read)

_HEADER = struct.Struct(">I")
_HELLO = struct.Struct(">cI")  # raw role byte + argument
_perf = time.perf_counter
_server_cpu = cpu_seconds

WORKLOADS = ("W4", "W5", "W6")
IMPLS = ("ours", "limit", "batched")  # the first is measured, the others are raw
BATCHED_WORKLOADS = ("W4",)  # the only ones with a batched variant
POLICIES = ("block", "drop_oldest")  # W4: ours' subscriptions (--w4-policy), default first
GOALS = {"W4": 0.5, "W5": 0.8, "W6": 0.95}  # issue 12: ours / limit, with 0 lost (W4 unpaced)


class BenchError(RuntimeError):
    pass


# ------------------------------------------------------------- raw framing

def _read_spans(sock: gsocket.socket) -> Iterator[Tuple[memoryview, List[Tuple[int, int]]]]:
    """Per read, until EOF: (buffer view, [(start of a length prefix, end)]
    for every frame the read completed). Valid until the next item is taken."""
    buf = bytearray(RAW_READ_SIZE)
    view = memoryview(buf)
    end = 0
    while True:
        n = sock.recv_into(view[end:])
        if not n:
            return
        end += n
        pos = 0
        spans = []
        while end - pos >= 4:
            length = _HEADER.unpack_from(buf, pos)[0]
            if length > RAW_MAX_FRAME:
                raise BenchError(f"raw frame of {length} bytes")
            stop = pos + 4 + length
            if stop > end:
                break
            spans.append((pos, stop))
            pos = stop
        if spans:
            yield view, spans
        rest = end - pos
        if pos and rest:
            buf[:rest] = buf[pos:end]
        end = rest


def _frames(sock: gsocket.socket) -> Iterator[Tuple[memoryview, int, int]]:
    """Complete frames as they arrive: (buffer view, start, end)."""
    for view, spans in _read_spans(sock):
        for start, stop in spans:
            yield view, start, stop


def _reads(sock: gsocket.socket) -> Iterator[Tuple[memoryview, int, int]]:
    """One item per read: the span of all the complete frames it finished."""
    for view, spans in _read_spans(sock):
        yield view, spans[0][0], spans[-1][1]


def _count_frames(sock: gsocket.socket, on_count: Callable[[int, int], bool], size: int) -> None:
    """recv_into() and count complete frames: on_count(frames, bad) once per
    read that completed any (bad: a body not `size` bytes long), until it
    returns False or EOF."""
    buf = bytearray(RAW_READ_SIZE)
    view = memoryview(buf)
    end = 0
    unpack = _HEADER.unpack_from
    while True:
        n = sock.recv_into(view[end:])
        if not n:
            return
        end += n
        pos = done = bad = 0
        while end - pos >= 4:
            length = unpack(buf, pos)[0]
            if length > RAW_MAX_FRAME:
                raise BenchError(f"raw frame of {length} bytes")
            stop = pos + 4 + length
            if stop > end:
                break
            if length != size:
                bad += 1
            pos = stop
            done += 1
        rest = end - pos
        if pos and rest:
            buf[:rest] = buf[pos:end]
        end = rest
        if done and not on_count(done, bad):
            return


def _recv_exact(sock: gsocket.socket, n: int) -> Optional[bytes]:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _raw_connect(port: int, role: bytes, arg: int = 0) -> gsocket.socket:
    sock = gsocket.create_connection((HOST, port), timeout=CALL_TIMEOUT)
    sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
    sock.sendall(_HELLO.pack(role, arg))
    if role in (b"S", b"C") and _recv_exact(sock, 1) != b"k":
        raise BenchError(f"raw server did not register {role!r}")
    # No per-recv timeout (a timer per wait): watchdogs bound the waits.
    sock.settimeout(None)
    return sock


# ------------------------------------------------------------- raw server

class _RawConsumer:
    __slots__ = ("sock", "credit", "listed", "alive")

    def __init__(self, sock: gsocket.socket, credit: int) -> None:
        self.sock = sock
        self.credit = credit
        self.listed = False
        self.alive = True


class _RawServer:
    """The raw server: fan-out (S, P), work queue (C, Q), stream (T).
    `batched`: the fan-out forwards each read's complete frames at once."""

    def __init__(self, batched: bool) -> None:
        self.batched = batched
        self.subscribers: Tuple[gsocket.socket, ...] = ()
        self.ready: Deque[bytes] = deque()          # tasks waiting for credit
        self.rotation: Deque[_RawConsumer] = deque()  # consumers with credit
        self.frame = _HEADER.pack(PAYLOAD) + b"x" * PAYLOAD
        self.ack = _HEADER.pack(0)

    def accept(self, listener: gsocket.socket) -> None:
        while True:
            sock, _ = listener.accept()
            sock.setsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY, 1)
            gevent.spawn(self.connection, sock)

    def connection(self, sock: gsocket.socket) -> None:
        try:
            hello = _recv_exact(sock, _HELLO.size)
            if hello is None:
                return
            role, arg = _HELLO.unpack(hello)
            {b"S": self.subscriber, b"P": self.publisher, b"C": self.consumer,
             b"Q": self.producer, b"T": self.streamer}[role](sock, arg)
        except (OSError, KeyError, BenchError):
            pass
        finally:
            sock.close()

    def subscriber(self, sock: gsocket.socket, arg: int) -> None:
        self.subscribers += (sock,)
        try:
            sock.sendall(b"k")
            while sock.recv(4096):
                pass
        finally:
            self._unsubscribe(sock)

    def _unsubscribe(self, sock: gsocket.socket) -> None:
        self.subscribers = tuple(s for s in self.subscribers if s is not sock)

    def publisher(self, sock: gsocket.socket, arg: int) -> None:
        for view, start, stop in (_reads(sock) if self.batched else _frames(sock)):
            frame = view[start:stop]
            for sub in self.subscribers:
                try:
                    sub.sendall(frame)
                except OSError:
                    self._unsubscribe(sub)

    def consumer(self, sock: gsocket.socket, prefetch: int) -> None:
        consumer = _RawConsumer(sock, max(1, prefetch))
        self._list(consumer)
        try:
            sock.sendall(b"k")
            self._dispatch()
            for _ in _frames(sock):  # a done frame: credit back
                consumer.credit += 1
                self._list(consumer)
                self._dispatch()
        finally:
            consumer.alive = False
            if consumer.listed:
                self.rotation.remove(consumer)

    def _list(self, consumer: _RawConsumer) -> None:
        if consumer.credit > 0 and not consumer.listed and consumer.alive:
            consumer.listed = True
            self.rotation.append(consumer)

    def _give(self, frame) -> None:
        consumer = self.rotation.popleft()
        consumer.credit -= 1
        if consumer.credit > 0:
            self.rotation.append(consumer)
        else:
            consumer.listed = False
        try:
            consumer.sock.sendall(frame)
        except OSError:
            consumer.alive = False  # the task is lost with it: this is no real queue

    def _dispatch(self) -> None:
        ready, rotation = self.ready, self.rotation
        while ready and rotation:
            self._give(ready.popleft())

    def producer(self, sock: gsocket.socket, arg: int) -> None:
        ack = self.ack
        for view, start, stop in _frames(sock):
            if self.rotation and not self.ready:
                self._give(view[start:stop])
            else:
                self.ready.append(bytes(view[start:stop]))
            sock.sendall(ack)

    def streamer(self, sock: gsocket.socket, arg: int) -> None:
        frame = self.frame
        while True:
            request = _recv_exact(sock, 4)
            if request is None:
                return
            n = _HEADER.unpack(request)[0]
            if n > MAX_MESSAGES:
                return
            for _ in range(n):
                sock.sendall(frame)


# ------------------------------------------------------------- children

def _lines(fd: int) -> Iterator[str]:
    """Lines from a pipe, read without blocking the hub; ends at EOF."""
    os.set_blocking(fd, False)
    pending = b""
    while True:
        data = nb_read(fd, 65536)
        if not data:
            return
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.decode()


def _wait_stdin(lifetime: float, on_line: Callable[[str], None]) -> None:
    """Hand each line of stdin to on_line until it closes (or `lifetime`)."""
    with gevent.Timeout(lifetime, False):
        for line in _lines(sys.stdin.fileno()):
            on_line(line)


def serve(kind: str, lifetime: float) -> None:
    """Child mode: serve, print the URL, exit when stdin closes (or after `lifetime`)."""
    if kind == "ours":
        server = rpc.Server(f"tcp://{HOST}:0", name="bench-server")
        server.add_service(EchoService())
        server.start()
        url = server.url
    else:
        listener = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_STREAM)
        listener.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen(128)
        url = f"tcp://{HOST}:{listener.getsockname()[1]}"
        gevent.spawn(_RawServer(kind == "batched").accept, listener)
    os.write(1, f"{url}\n".encode())
    _wait_stdin(lifetime, lambda line: None)
    os._exit(0)


def sink(kind: str, impl: str, url: str, report: int, lifetime: float, policy: str) -> None:
    """Child mode: a W4 subscriber (`sub`, ours' with slow-consumer `policy`)
    or W5 consumer (`con`) that counts what it handles and reports on stdout
    (see the module docstring)."""
    state = [0, 0, 0]  # handled, dropped (the most any message said), bad payloads
    write = os.write
    handle = None
    peer = None
    if impl == "ours":
        peer = rpc.connect(url, timeout=CALL_TIMEOUT)
        client = rpc.Client(peer, ECHO)
        if kind == "sub":
            def on_message(received) -> None:
                state[0] += 1
                if received.dropped > state[1]:
                    state[1] = received.dropped
                if len(received.message.data) != PAYLOAD:
                    state[2] += 1
                if not state[0] % report:
                    write(1, b"p %d\n" % state[0])
            try:
                handle = client.changed.subscribe(PATTERN, on_message, queue_limit=QUEUE_LIMIT,
                                                  policy=policy, timeout=CALL_TIMEOUT)
            except ValueError as exc:  # e.g. a policy this library does not have
                write(1, f"error: subscribe(policy={policy!r}) refused: {exc}\n".encode())
                os._exit(2)
        else:
            def on_task(task, context) -> None:
                state[0] += 1
                if len(task.data) != PAYLOAD:
                    state[2] += 1
                if not state[0] % report:
                    write(1, b"p %d\n" % state[0])
            handle = client.work.consume(on_task, prefetch=PREFETCH, timeout=CALL_TIMEOUT)
    else:
        port = int(url.rsplit(":", 1)[1])
        sock = _raw_connect(port, b"S" if kind == "sub" else b"C", PREFETCH)
        done = _HEADER.pack(0)

        def on_count(n: int, bad: int) -> bool:
            before = state[0]
            if kind == "con":
                for _ in range(n):
                    sock.sendall(done)
            state[0] = before + n
            state[2] += bad
            if state[0] // report != before // report:
                write(1, b"p %d\n" % state[0])
            return True
        gevent.spawn(_count_frames, sock, on_count, PAYLOAD)

    def finish(target: int) -> None:
        deadline = _perf() + DRAIN_TIMEOUT
        idle_since, seen = _perf(), state[0]
        while state[0] < target and _perf() < deadline and _perf() - idle_since < DRAIN_IDLE:
            gevent.sleep(0.01)
            if state[0] != seen:
                idle_since, seen = _perf(), state[0]
        while _perf() < deadline:
            seen = state[0]
            gevent.sleep(SETTLE)
            if state[0] == seen:
                break
        dropped = max(state[1], getattr(handle, "dropped", 0))
        write(1, b"f %d %d %d\n" % (state[0], dropped, state[2]))

    def on_line(line: str) -> None:
        if line.startswith("end "):
            gevent.spawn(finish, int(line[4:]))

    write(1, b"ready\n")
    _wait_stdin(lifetime, on_line)
    if peer is not None:
        with gevent.Timeout(2.0, False):
            peer.close()
    os._exit(0)


class Proc:
    """A child process of this script; it dies with its stdin pipe. Its
    first stdout line is `first`; then "p <n>" lines update `progress` (and
    set `changed`) and an "f ..." line sets `final`."""

    def __init__(self, args: List[str], changed: Optional[Event] = None) -> None:
        cmd = [sys.executable, os.path.abspath(__file__)] + args
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.pid = self.proc.pid
        self.first: AsyncResult = AsyncResult()
        self.final: AsyncResult = AsyncResult()
        self.progress = 0
        self.changed = changed
        self.gone = False
        self._reader = gevent.spawn(self._read)

    def _read(self) -> None:
        first, final = self.first, self.final
        for line in _lines(self.proc.stdout.fileno()):
            if not first.ready():
                first.set(line)
            elif line.startswith("p "):
                self.progress = int(line[2:])
                if self.changed is not None:
                    self.changed.set()
            elif line.startswith("f "):
                final.set(tuple(int(x) for x in line[2:].split()))
        self.gone = True
        for result in (first, final):
            if not result.ready():
                result.set(None)
        if self.changed is not None:
            self.changed.set()

    def wait_first(self, what: str) -> str:
        line = self.first.wait(START_TIMEOUT)
        if not line:
            raise BenchError(f"{what} did not start")
        return line

    def send(self, line: str) -> None:
        self.proc.stdin.write(f"{line}\n".encode())

    def stop(self) -> None:
        self._reader.kill()
        stop_child(self.proc)


class Sinks:
    """The 4 subscriber or consumer processes of one measurement."""

    def __init__(self, kind: str, impl: str, url: str, report: int, lifetime: float,
                 policy: str = POLICIES[0]) -> None:
        self.kind = kind
        self.changed = Event()
        self.procs: List[Proc] = []
        try:
            for _ in range(SINKS):
                self.procs.append(Proc(["--sink", kind, "--impl", impl, "--url", url,
                                        "--report", str(report), "--lifetime", str(lifetime),
                                        "--policy", policy], self.changed))
            for proc in self.procs:
                line = proc.wait_first(f"{impl} {kind} sink")
                if line != "ready":
                    raise BenchError(f"{impl} {kind} sink: {line}")
        except BaseException:
            self.stop()
            raise

    def check(self) -> None:
        if any(p.gone for p in self.procs):
            raise BenchError(f"a {self.kind} sink process ended early")

    def least(self) -> int:
        return min(p.progress for p in self.procs)

    def total(self) -> int:
        return sum(p.progress for p in self.procs)

    def cpu(self) -> Optional[float]:
        values = [cpu_seconds(p.pid) for p in self.procs]
        return None if None in values else sum(values)  # type: ignore[arg-type]

    def finish(self, target: int) -> List[Tuple[int, int, int]]:
        """Tell each to finish (see the docstring): their (count, dropped, bad)."""
        for proc in self.procs:
            proc.send(f"end {target}")
        finals = []
        for proc in self.procs:
            final = proc.final.wait(DRAIN_TIMEOUT + 5.0)
            if final is None:
                raise BenchError(f"a {self.kind} sink did not report its final count")
            finals.append(final)
        return finals

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()


# ------------------------------------------------------------- measurements

class Snapshot:
    """Time, progress and CPU counters at one instant."""

    def __init__(self, done: int, server_pid: int, sinks: Optional[Sinks]) -> None:
        self.t = _perf()
        self.done = done
        self.self_cpu = time.process_time()
        self.server_cpu = _server_cpu(server_pid)
        self.sinks_cpu = sinks.cpu() if sinks is not None else 0.0


def _rates(a: Snapshot, b: Snapshot, sinks: bool = True) -> Dict[str, float]:
    done = b.done - a.done
    if done <= 0:
        raise BenchError("nothing was delivered in the measured window")
    res = {"rate": done / (b.t - a.t), "messages": done}
    if a.server_cpu is not None and b.server_cpu is not None:
        res["server_cpu_us"] = (b.server_cpu - a.server_cpu) / done * 1e6
    res["client_cpu_us"] = (b.self_cpu - a.self_cpu) / done * 1e6
    if sinks and a.sinks_cpu is not None and b.sinks_cpu is not None:
        res["sinks_cpu_us"] = (b.sinks_cpu - a.sinks_cpu) / done * 1e6
    return res


def _join(greenlets: List[gevent.Greenlet], what: str) -> None:
    gevent.joinall(greenlets, timeout=CALL_TIMEOUT)
    if not all(g.dead for g in greenlets):
        gevent.killall(greenlets)
        raise BenchError(f"{what} did not finish")
    for g in greenlets:
        g.get()  # raises what it raised


def _window(sinks: Sinks, server_pid: int, warmup: float, duration: float,
            stop: List[bool]) -> Tuple[Snapshot, Snapshot]:
    """Sleep through the warm-up and the measured window (watching the
    sinks); set stop; return the snapshots around the window."""
    gevent.sleep(warmup)
    sinks.check()
    a = Snapshot(sinks.total(), server_pid, sinks)
    gevent.sleep(duration)
    b = Snapshot(sinks.total(), server_pid, sinks)
    stop[0] = True
    sinks.check()
    return a, b


def measure_w4(impl: str, url: str, server_pid: int, warmup: float, duration: float,
               lifetime: float, paced: bool, policy: str) -> Dict[str, float]:
    sinks = Sinks("sub", impl, url, W4_REPORT, lifetime, policy)
    close: Optional[Callable[[], None]] = None
    try:
        if impl == "ours":
            peer = rpc.connect(url, timeout=CALL_TIMEOUT)
            close = peer.close
            msg = echo_pb2.Msg(data=b"x" * PAYLOAD)
            publish_ours = rpc.Client(peer, ECHO).changed.publish

            def publish() -> None:
                publish_ours(TOPIC, msg)
        else:
            sock = _raw_connect(int(url.rsplit(":", 1)[1]), b"P")
            close = sock.close
            frame = _HEADER.pack(PAYLOAD) + b"x" * PAYLOAD
            sendall = sock.sendall

            def publish() -> None:
                sendall(frame)
        published = [0]
        stop = [False]
        changed = sinks.changed

        def publisher() -> None:
            while not stop[0] and published[0] < MAX_MESSAGES:
                room = BURST
                if paced:
                    changed.clear()
                    room = min(BURST, PUB_WINDOW - (published[0] - sinks.least()))
                    if room <= 0:
                        sinks.check()
                        changed.wait(WAIT)
                        continue
                for _ in range(room):
                    publish()
                published[0] += room
                gevent.sleep(0)

        glet = gevent.spawn(publisher)
        try:
            a, b = _window(sinks, server_pid, warmup, duration, stop)
        finally:
            stop[0] = True
            _join([glet], f"{impl} publisher")
        finals = sinks.finish(published[0])
    finally:
        if close is not None:
            close()
        sinks.stop()
    res = _rates(a, b)
    res["published"] = published[0]
    res["lost"] = SINKS * published[0] - sum(f[0] for f in finals)
    res["dropped"] = sum(f[1] for f in finals)
    res["bad"] = sum(f[2] for f in finals)
    return res


def measure_w5(impl: str, url: str, server_pid: int, warmup: float, duration: float,
               lifetime: float) -> Dict[str, float]:
    sinks = Sinks("con", impl, url, W5_REPORT, lifetime)
    close: Optional[Callable[[], None]] = None
    reader: Optional[gevent.Greenlet] = None
    try:
        stop = [False]
        sent = [0]      # tasks handed to produce / sent
        acked = [0]     # ... that the server accepted
        changed = sinks.changed
        if impl == "ours":
            peer = rpc.connect(url, timeout=CALL_TIMEOUT)
            close = peer.close
            msg = echo_pb2.Msg(data=b"x" * PAYLOAD)
            produce = rpc.Client(peer, ECHO).work.produce

            def producer() -> None:
                while not stop[0] and sent[0] < MAX_MESSAGES:
                    changed.clear()
                    if sent[0] - sinks.total() >= BACKLOG:
                        sinks.check()
                        changed.wait(WAIT)
                        continue
                    sent[0] += 1
                    produce(msg, timeout=CALL_TIMEOUT)
                    acked[0] += 1
            glets = [gevent.spawn(producer) for _ in range(PRODUCERS)]
        else:
            sock = _raw_connect(int(url.rsplit(":", 1)[1]), b"Q")
            close = sock.close
            frame = _HEADER.pack(PAYLOAD) + b"x" * PAYLOAD
            sendall = sock.sendall

            def on_acks(n: int, bad: int) -> bool:
                acked[0] += n
                changed.set()
                return acked[0] < sent[0] or not stop[0]

            def sender() -> None:
                while not stop[0] and sent[0] < MAX_MESSAGES:
                    changed.clear()
                    room = min(PRODUCERS - (sent[0] - acked[0]), BACKLOG - (sent[0] - sinks.total()))
                    if room <= 0:
                        sinks.check()
                        changed.wait(WAIT)
                        continue
                    for _ in range(room):
                        sendall(frame)
                    sent[0] += room
            reader = gevent.spawn(_count_frames, sock, on_acks, 0)
            glets = [gevent.spawn(sender)]
        try:
            a, b = _window(sinks, server_pid, warmup, duration, stop)
        finally:
            stop[0] = True
            _join(glets, f"{impl} producer")
        if impl == "limit":
            with gevent.Timeout(CALL_TIMEOUT, BenchError("raw acks did not arrive")):
                while acked[0] < sent[0]:
                    changed.clear()
                    changed.wait(WAIT)
        # Let the consumers catch up with what their reports can show, then
        # collect exact counts.
        deadline = _perf() + DRAIN_TIMEOUT
        while sinks.total() < acked[0] - SINKS * (W5_REPORT - 1) and _perf() < deadline:
            changed.clear()
            sinks.check()
            changed.wait(WAIT)
        finals = sinks.finish(0)
    finally:
        if reader is not None:
            reader.kill()
        if close is not None:
            close()
        sinks.stop()
    res = _rates(a, b)
    res["produced"] = acked[0]
    res["lost"] = acked[0] - sum(f[0] for f in finals)
    res["bad"] = sum(f[2] for f in finals)
    return res


def measure_w6(impl: str, url: str, server_pid: int, warmup: float, duration: float,
               window: int) -> Dict[str, float]:
    if impl == "ours":
        peer = rpc.connect(url, timeout=CALL_TIMEOUT)
        close = peer.close
        count = rpc.Client(peer, ECHO).count

        def stream(n: int) -> int:
            got = 0
            last = None
            for item in count(echo_pb2.Msg(count=n, data=b"x" * PAYLOAD),
                              timeout=CALL_TIMEOUT + 4 * duration, window=window):
                got += 1
                last = item
            if got != n or last is None or last.text != str(n - 1) or len(last.data) != PAYLOAD:
                raise BenchError(f"ours: stream of {n} gave {got} items, the last {last!r:.60}")
            return got
    else:
        sock = _raw_connect(int(url.rsplit(":", 1)[1]), b"T")
        close = sock.close

        def stream(n: int) -> int:
            state = [0, 0]

            def on_count(k: int, bad: int) -> bool:
                state[0] += k
                state[1] += bad
                return state[0] < n
            sock.sendall(_HEADER.pack(n))
            _count_frames(sock, on_count, PAYLOAD)
            if state != [n, 0]:
                raise BenchError(f"limit: stream of {n} gave {state[0]} items ({state[1]} bad)")
            return n
    try:
        t0 = _perf()
        rate = 0.0
        for _ in range(MAX_WARMUP_STREAMS):
            t = _perf()
            stream(PROBE_ITEMS)
            rate = PROBE_ITEMS / (_perf() - t)
            if _perf() - t0 >= warmup:
                break
        n = max(PROBE_ITEMS, min(MAX_MESSAGES, int(rate * duration)))
        a = Snapshot(0, server_pid, None)
        got = stream(n)
        b = Snapshot(got, server_pid, None)
    finally:
        close()
    res = _rates(a, b, sinks=False)
    res["items"] = n
    return res


# ------------------------------------------------------------- harness

ROWS = [  # workload, metric, label, lower is better
    ("W4", "rate", "W4 fan-out 1→4, 100 B    msgs/s", False),
    ("W5", "rate", "W5 queue, 4 consumers  tasks/s", False),
    ("W6", "rate", "W6 server stream 100 B items/s", False),
]
for _w, _client, _sinks in (("W4", "publisher", "4 subscribers"), ("W5", "producer", "4 consumers"),
                            ("W6", "client", "")):  # CPU per message on each side, µs
    ROWS.append((_w, "server_cpu_us", f"{_w} server CPU µs/msg", True))
    ROWS.append((_w, "client_cpu_us", f"{_w} {_client} CPU µs/msg", True))
    if _sinks:
        ROWS.append((_w, "sinks_cpu_us", f"{_w} {_sinks} CPU µs/msg", True))
TOTALS = [  # workload, metric, label: summed over runs, must be 0
    ("W4", "lost", "W4 lost (all runs)"),
    ("W4", "dropped", "W4 dropped (all runs)"),
    ("W5", "lost", "W5 tasks not completed (all runs)"),
]


def _measured(workload: str, impl: str) -> bool:
    """Whether `impl` has a variant of `workload` (batched: W4 only)."""
    return impl != "batched" or workload in BATCHED_WORKLOADS


def summarize(results, workloads: List[str], impls: List[str], paced: bool) -> List[dict]:
    """The table's rows. With `paced`, the W4 rows are labelled so and have no goal."""
    def total(workload: str, metric: str, impl: str) -> Optional[int]:
        runs = results[workload].get(impl)
        return sum(r.get(metric, 0) for r in runs) if runs else None

    def label_of(workload: str, label: str) -> str:
        return f"{workload} paced{label[len(workload):]}" if paced and workload == "W4" else label

    rows = []
    for workload, metric, label, lower_better in ROWS:
        if workload not in workloads:
            continue
        med = medians(results[workload], metric, impls)
        ours = med.get("ours")

        def ratio_to(other: str) -> Optional[float]:
            base = med.get(other)
            return ours / base if ours and base else None
        goal = None if lower_better or (paced and workload == "W4") else GOALS.get(workload)
        ratio = ratio_to("limit")
        met = None
        if goal is not None and ratio is not None:
            met = ratio >= goal and total(workload, "lost", "ours") == 0
        rows.append({"workload": workload, "metric": metric, "label": label_of(workload, label),
                     "ours": ours, "limit": med.get("limit"), "ratio": ratio,
                     "batched": med.get("batched"), "ratio_batched": ratio_to("batched"),
                     "goal": goal, "goal_met": met, "lower_is_better": lower_better})
    for workload, metric, label in TOTALS:
        if workload not in workloads:
            continue
        ours = total(workload, metric, "ours")
        rows.append({"workload": workload, "metric": metric, "label": label_of(workload, label),
                     "ours": ours, "limit": total(workload, metric, "limit"), "ratio": None,
                     "batched": total(workload, metric, "batched"), "ratio_batched": None,
                     "goal": 0, "goal_met": None if ours is None else ours == 0,
                     "lower_is_better": True})
    return rows


def print_table(rows: List[dict], runs: int, duration: float, w4_publisher: str,
                w4_policy: str) -> None:
    paced = w4_publisher == "window"
    pacing = " (PACED: an extra, not the headline; no goal)" if paced else ""
    headline = "" if paced else ", the headline"
    print(f"\nmedian of {runs} run(s), {duration:g} s each; W4: publisher {w4_publisher}{pacing}, "
          f"ours' policy {w4_policy}; ratio = ours/limit (per-frame sends{headline}), "
          f"ratio/b = ours/batched (upper bound, W4 only); CPU rows: lower is better; "
          f"loss rows: totals over all runs")
    print(f"{'workload':40} {'ours':>10} {'limit':>10} {'ratio':>7} {'batched':>10} {'ratio/b':>7}  goal")
    cpu_header = loss_header = False
    for row in rows:
        if row["metric"].endswith("_cpu_us") and not cpu_header:
            cpu_header = True
            print("CPU time per message, in the measured phase (user + system):")
        if row["metric"] in ("lost", "dropped") and not loss_header:
            loss_header = True
            print("Messages lost (published x 4 - delivered), dropped, tasks not completed:")
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        ratio_b = "-" if row["ratio_batched"] is None else f"{row['ratio_batched']:.2f}"
        goal = ""
        if row["metric"] in ("lost", "dropped"):
            goal = "= 0"
        elif row["goal"] is not None:
            goal = f">= {row['goal']:g} with 0 lost"
        if goal and row["goal_met"] is not None:
            goal += " met" if row["goal_met"] else " NOT met"
        print(f"{row['label']:40} {fmt(row['ours']):>10} {fmt(row['limit']):>10} "
              f"{ratio:>7} {fmt(row['batched']):>10} {ratio_b:>7}  {goal}".rstrip())


def run(args) -> int:
    workloads = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    impls = [i.strip().lower() for i in args.impls.split(",") if i.strip()]
    if not workloads or any(w not in WORKLOADS for w in workloads):
        raise SystemExit(f"--only takes a comma-separated subset of {','.join(WORKLOADS)}")
    if not impls or any(i not in IMPLS for i in impls):
        raise SystemExit(f"--impls takes a comma-separated subset of {','.join(IMPLS)}")
    if not any(_measured(w, i) for w in workloads for i in impls):
        raise SystemExit(f"batched only has a variant of {','.join(BATCHED_WORKLOADS)}")
    if not 0 < args.duration <= MAX_DURATION:
        raise SystemExit(f"--duration must be in (0, {MAX_DURATION:g}]")
    if not 1 <= args.runs <= 50:
        raise SystemExit("--runs must be in 1..50")
    if not 1 <= args.stream_window <= 10_000:
        raise SystemExit("--stream-window must be in 1..10000")
    duration = args.duration
    warmup = min(1.0, max(0.2, duration * 0.2))
    per_measurement = duration + warmup + START_TIMEOUT + 3 * CALL_TIMEOUT
    lifetime = 120.0 + 2 * args.runs * len(workloads) * len(impls) * (duration + warmup + DRAIN_TIMEOUT)
    paced = args.w4_publisher == "window"
    results = {w: {i: [] for i in impls} for w in workloads}
    servers: Dict[str, Proc] = {}
    try:
        for name in impls:
            if any(_measured(w, name) for w in workloads):
                servers[name] = Proc(["--serve", name, "--lifetime", str(lifetime)])
        urls = {name: server.wait_first(f"{name} server") for name, server in servers.items()}
        for name, url in urls.items():
            if not url.startswith(f"tcp://{HOST}:"):
                raise BenchError(f"{name} server said {url!r}")
        for r in range(args.runs):
            shift = r % len(impls)
            order = impls[shift:] + impls[:shift]
            for workload in workloads:
                for name in order:
                    if not _measured(workload, name):
                        continue
                    url, pid = urls[name], servers[name].pid
                    with gevent.Timeout(per_measurement,
                                        BenchError(f"{workload} {name} did not finish in time")):
                        if workload == "W4":
                            res = measure_w4(name, url, pid, warmup, duration, lifetime, paced,
                                             args.w4_policy)
                        elif workload == "W5":
                            res = measure_w5(name, url, pid, warmup, duration, lifetime)
                        else:
                            res = measure_w6(name, url, pid, warmup, duration, args.stream_window)
                    results[workload][name].append(res)
                    shown = ", ".join(f"{k}={fmt(v)}" for k, v in res.items())
                    print(f"run {r + 1}/{args.runs} {workload} {name:7}: {shown}",
                          file=sys.stderr, flush=True)
    finally:
        for server in servers.values():
            server.stop()

    rows = summarize(results, workloads, impls, paced)
    print_table(rows, args.runs, duration, args.w4_publisher, args.w4_policy)
    for workload in workloads:
        for name in impls:
            rates = [r["rate"] for r in results[workload][name]]
            if len(rates) > 1 and max(rates) > 1.5 * min(rates):
                print(f"note: {workload} {name} varied {min(rates):,.0f}..{max(rates):,.0f} /s "
                      f"across runs (noise on a shared machine)")
            bad = sum(r.get("bad", 0) for r in results[workload][name])
            if bad:
                print(f"note: {workload} {name}: {bad} messages arrived with a wrong payload size")
            uncounted = sum(r.get("lost", 0) - r.get("dropped", 0) for r in results[workload][name])
            if workload == "W4" and uncounted:
                print(f"note: W4 {name}: {uncounted:,} messages lost that no subscription counted as "
                      f"dropped: not delivered within {DRAIN_TIMEOUT:g} s after publishing "
                      f"stopped, or a bug (the raw side is lossless by construction)")
    if args.json:
        print(json.dumps({"config": {"duration": duration, "warmup": warmup, "runs": args.runs,
                                     "workloads": workloads, "impls": impls, "payload": PAYLOAD,
                                     "w4_publisher": args.w4_publisher, "w4_policy": args.w4_policy,
                                     "pub_window": PUB_WINDOW, "queue_limit": QUEUE_LIMIT,
                                     "prefetch": PREFETCH, "producers": PRODUCERS,
                                     "backlog": BACKLOG, "stream_window": args.stream_window},
                          "runs": results, "summary": rows}, indent=1))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=2.0,
                        help="seconds per measurement (default 2)")
    parser.add_argument("--runs", type=int, default=3,
                        help="runs; the table shows medians (default 3)")
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help="workloads to run, e.g. W4,W6 (default all)")
    parser.add_argument("--impls", default=",".join(IMPLS),
                        help="subset of ours,limit,batched (default all; batched is W4 only; "
                        "ours alone is for profiling)")
    parser.add_argument("--w4-policy", choices=POLICIES, default=POLICIES[0],
                        help="W4: ours' subscriptions' slow-consumer policy (default block, "
                        "lossless: the headline; drop_oldest loses what a full queue drops)")
    parser.add_argument("--w4-publisher", choices=("flood", "window"), default="flood",
                        help="W4 publishers: flood, as fast as they can (default, the headline), "
                        "or window: PACED, at most 1024 messages ahead of the slowest "
                        "subscriber's report (an extra; rows labelled paced, no goal)")
    parser.add_argument("--stream-window", type=int, default=STREAM_WINDOW,
                        help=f"W6 (ours): the stream's window (default {STREAM_WINDOW})")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    parser.add_argument("--serve", choices=IMPLS, help=argparse.SUPPRESS)
    parser.add_argument("--sink", choices=("sub", "con"), help=argparse.SUPPRESS)
    parser.add_argument("--impl", choices=IMPLS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--report", type=int, default=W4_REPORT, help=argparse.SUPPRESS)
    parser.add_argument("--policy", default=POLICIES[0], help=argparse.SUPPRESS)
    parser.add_argument("--lifetime", type=float, default=600.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.lifetime)
        return 0
    if args.sink:
        sink(args.sink, args.impl, args.url, max(1, args.report), args.lifetime, args.policy)
        return 0
    try:
        return run(args)
    except BenchError as exc:
        print(f"patterns.py: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
