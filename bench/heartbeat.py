#!/usr/bin/env python3
"""Heartbeat benchmark: what liveness costs when idle, and how fast a frozen peer is found.

    python bench/heartbeat.py [--only cpu,detect] [--window 10] [--runs 2]
                              [--trials 20] [--json]

Two measurements, both over loopback TCP on 127.0.0.1:

  cpu     The CPU cost of heartbeats with 100 idle connected peers. A server
          child (this script with the hidden `--serve I,M` option) and a
          client child (hidden `--hold URL`) holding 100 rpc.connect peers
          that make no calls; each is its own OS process, and both use the
          same rpc.Heartbeat. After a warm-up, the CPU time (user + system)
          of each process over `--window` seconds is read from /proc (the
          sum of the tasks' schedstat run times, ns resolution; /proc/<pid>/stat
          ticks if that is unavailable) and shown as percent of one core.
          Settings: baseline (interval 3600 s, the rarest allowed: no
          heartbeat is ever due in the window), default (1 s x 3) and
          aggressive (0.1 s x 3); delta = setting - baseline is the
          heartbeats' share, and "µs/peer-interval" = delta CPU per second /
          (peers / interval), the CPU one process spends per connection per
          heartbeat period (sending one heartbeat, receiving one, timers).
          A fresh pair of processes per measurement; `--runs` rounds
          interleave the settings (rotating the order) and the table shows
          medians. Both children report the peers they lost (a false
          positive would show there).

  detect  Time from SIGSTOP of the server to the failure of a call in
          flight with rpc.PeerLost. One testing.process.ServerProcess with
          heartbeat (I, M) is reused across trials; each trial connects a
          fresh peer with the same heartbeat, checks it with one echo,
          starts client.sleep.future(Msg(delay=60)), waits a random phase in
          [0.05, 0.05 + I) s (so the stop falls anywhere in the heartbeat
          cycle), SIGSTOPs the server and times the future's failure from a
          rawlink callback (hub time, no greenlet switch in the figure);
          then SIGCONT, and the peer is closed. The promise: the peer is
          lost within I x M (the bound) of the LAST FRAME it sent; the last
          frame came at most I before the stop, so detection measured from
          the stop should lie in [bound - I, bound], plus scheduling noise.
          "since last frame" is the same failure time measured from the
          client's own record of the last frame received (the session's
          liveness.last_received, read in the callback): it should be the
          bound plus timer lateness. Settings: (0.2, 3) with `--trials`
          trials, and (1.0, 3) with a quarter of them (at least 1).

Every loop is bounded in count and time; every child process has a
lifetime after which it exits by itself, and dies with its stdin pipe.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import select
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "rpc", "python"))

import gevent  # noqa: E402

import onedrive_rpc as rpc  # noqa: E402
from onedrive_rpc.testing import echo_pb2  # noqa: E402
from onedrive_rpc.testing.echo_service import ECHO, EchoService  # noqa: E402
from onedrive_rpc.testing.process import ServerProcess  # noqa: E402
# bench/ is on sys.path as the script's folder.
from procstat import cpu_seconds, schedstat_cpu, stop_child  # noqa: E402

HOST = "127.0.0.1"
PEERS = 100
CPU_SETTINGS = [  # name, interval, misses; the first is the baseline
    ("baseline", 3600.0, 3),
    ("default", 1.0, 3),
    ("aggressive", 0.1, 3),
]
DETECT_SETTINGS = [(0.2, 3), (1.0, 3)]  # the second gets a quarter of the trials
SLEEP_DELAY = 60.0           # the call in flight; far longer than any bound
CALL_TIMEOUT = 10.0          # connect, echo check
START_TIMEOUT = 30.0         # a child must be ready within this
STATUS_TIMEOUT = 10.0
MAX_WINDOW = 120.0
MAX_TRIALS = 200
MAX_PEERS = 1000
DETECT_SLACK = 5.0           # a trial gives up at bound + this
NOISE = 0.05                 # "plus scheduling noise" allowance in the summary, seconds

_perf = time.perf_counter


class BenchError(RuntimeError):
    pass


# ------------------------------------------------------------------ CPU time


_stat_cpu = cpu_seconds


def _cpu_source() -> str:
    value = schedstat_cpu(os.getpid())
    return "schedstat" if value else "stat"


def process_cpu(pid: int, source: str) -> Optional[float]:
    """CPU seconds (user + system) used so far by process `pid` (Linux /proc)."""
    return schedstat_cpu(pid) if source == "schedstat" else _stat_cpu(pid)


# ------------------------------------------------------------------ children

def _heartbeat(text: str) -> rpc.Heartbeat:
    interval, misses = text.split(",")
    return rpc.Heartbeat(float(interval), int(misses))


def _command_loop(lifetime: float, status) -> None:
    """Answer each "status" line on stdin with one JSON line; return at EOF
    or after `lifetime` seconds."""
    hub = gevent.get_hub()
    fd = sys.stdin.fileno()
    watcher = hub.loop.io(fd, 1)
    pending = b""
    with gevent.Timeout(lifetime, False):
        while True:
            hub.wait(watcher)
            data = os.read(fd, 4096)
            if not data:
                break
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if line.strip() == b"status":
                    print(json.dumps(status()), flush=True)


def serve(heartbeat: rpc.Heartbeat, lifetime: float) -> None:
    """Child mode: an Echo server with `heartbeat`; prints its URL."""
    server = rpc.Server(f"tcp://{HOST}:0", name="hb-bench-server", heartbeat=heartbeat)
    server.add_service(EchoService())
    counts = {"connected": 0, "lost": 0}

    def connected(peer) -> None:
        counts["connected"] += 1

    def lost(peer, reason) -> None:
        counts["lost"] += 1
    server.on_peer_connected(connected)
    server.on_peer_lost(lost)
    server.start()
    print(server.url, flush=True)
    _command_loop(lifetime, lambda: dict(counts, connections=len(server.connections)))
    sys.stdout.flush()
    os._exit(0)


def hold(url: str, peers: int, heartbeat: rpc.Heartbeat, lifetime: float) -> None:
    """Child mode: `peers` idle connections to `url`; prints READY when all are up."""
    lost = [0]

    def on_lost(reason) -> None:
        lost[0] += 1
    held = []
    for i in range(peers):
        peer = rpc.connect(url, name=f"hb-bench-idle-{i}", heartbeat=heartbeat,
                           timeout=CALL_TIMEOUT)
        peer.on_lost(on_lost)
        held.append(peer)
    print(f"READY {len(held)}", flush=True)
    _command_loop(lifetime, lambda: {"open": sum(not p.closed for p in held), "lost": lost[0]})
    sys.stdout.flush()
    os._exit(0)


class Child:
    """This script in a hidden mode; it dies with its stdin pipe."""

    def __init__(self, args: List[str], lifetime: float) -> None:
        cmd = [sys.executable, os.path.abspath(__file__), *args, "--lifetime", str(lifetime)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.first_line = self._readline(START_TIMEOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _readline(self, timeout: float) -> str:
        # The parent runs nothing else while it waits: a blocking select is fine.
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline().decode().strip() if ready else ""

    def status(self) -> Optional[dict]:
        try:
            self.proc.stdin.write(b"status\n")
            self.proc.stdin.flush()
        except OSError:
            return None
        line = self._readline(STATUS_TIMEOUT)
        try:
            return json.loads(line)
        except ValueError:
            return None

    def stop(self) -> None:
        stop_child(self.proc)


# ------------------------------------------------------------------ cpu

def measure_cpu(interval: float, misses: int, peers: int, window: float, warmup: float,
                source: str) -> Dict[str, float]:
    hb = f"{interval:g},{misses}"
    lifetime = 60.0 + warmup + window
    server = Child(["--serve", hb], lifetime)
    client: Optional[Child] = None
    try:
        if not server.first_line.startswith(f"tcp://{HOST}:"):
            raise BenchError(f"server did not start: {server.first_line!r}")
        client = Child(["--hold", server.first_line, "--peers", str(peers), "--heartbeat", hb],
                       lifetime)
        if client.first_line != f"READY {peers}":
            raise BenchError(f"client did not connect its peers: {client.first_line!r}")
        time.sleep(warmup)
        s0, c0, t0 = process_cpu(server.pid, source), process_cpu(client.pid, source), _perf()
        time.sleep(window)
        s1, c1, t1 = process_cpu(server.pid, source), process_cpu(client.pid, source), _perf()
        server_status, client_status = server.status(), client.status()
    finally:
        if client is not None:
            client.stop()
        server.stop()
    if None in (s0, s1, c0, c1):
        raise BenchError("cannot read the children's CPU time from /proc")
    elapsed = t1 - t0
    res = {"server_pct": (s1 - s0) / elapsed * 100, "client_pct": (c1 - c0) / elapsed * 100,
           "elapsed": elapsed}
    res["server_connections"] = (server_status or {}).get("connections", -1)
    res["server_lost"] = (server_status or {}).get("lost", -1)
    res["client_open"] = (client_status or {}).get("open", -1)
    res["client_lost"] = (client_status or {}).get("lost", -1)
    return res


def run_cpu(runs: int, window: float, warmup: float, peers: int, source: str) -> dict:
    results: Dict[str, List[dict]] = {name: [] for name, _, _ in CPU_SETTINGS}
    for r in range(runs):
        shift = r % len(CPU_SETTINGS)
        for name, interval, misses in CPU_SETTINGS[shift:] + CPU_SETTINGS[:shift]:
            res = measure_cpu(interval, misses, peers, window, warmup, source)
            results[name].append(res)
            print(f"cpu run {r + 1}/{runs} {name:10}: server {res['server_pct']:.2f}%  "
                  f"client {res['client_pct']:.2f}%  (server conns {res['server_connections']}, "
                  f"lost {res['server_lost']}; client open {res['client_open']}, "
                  f"lost {res['client_lost']})", file=sys.stderr, flush=True)
    summary = []
    base = None
    for name, interval, misses in CPU_SETTINGS:
        runs_ = results[name]
        row = {"setting": name, "interval": interval, "misses": misses,
               "server_pct": statistics.median(r["server_pct"] for r in runs_),
               "client_pct": statistics.median(r["client_pct"] for r in runs_),
               "lost": sum(max(0, r["server_lost"]) + max(0, r["client_lost"]) for r in runs_),
               "short": sum(r["server_connections"] != peers or r["client_open"] != peers
                            for r in runs_)}
        if base is None:
            base = row
        else:
            for side in ("server", "client"):
                delta = row[f"{side}_pct"] - base[f"{side}_pct"]
                row[f"{side}_delta_pct"] = delta
                # CPU s per s / (heartbeat periods per s, all peers) -> µs per peer-interval
                row[f"{side}_us_per_peer_interval"] = delta / 100 / (peers / interval) * 1e6
        summary.append(row)
    return {"runs": results, "summary": summary}


def print_cpu(cpu: dict, runs: int, window: float, warmup: float, peers: int, source: str) -> None:
    print(f"\nCPU with {peers} idle peers (server process + one client process holding them, "
          f"TCP loopback), % of one core;\nmedian of {runs} run(s), {window:g} s window after "
          f"{warmup:g} s warm-up; CPU from /proc {source}; delta = minus baseline")
    print(f"{'setting':22} {'server %':>9} {'client %':>9} {'srv delta':>10} {'cli delta':>10} "
          f"{'srv µs/peer-int':>16} {'cli µs/peer-int':>16}  lost")
    for row in cpu["summary"]:
        label = f"{row['setting']} {row['interval']:g} s x {row['misses']}"

        def cell(key: str, fmt: str) -> str:
            return format(row[key], fmt) if key in row else "-"
        extra = f"{row['lost']}" + (f" (short of peers in {row['short']} run(s))" if row["short"] else "")
        print(f"{label:22} {row['server_pct']:>9.2f} {row['client_pct']:>9.2f} "
              f"{cell('server_delta_pct', '+.2f'):>10} {cell('client_delta_pct', '+.2f'):>10} "
              f"{cell('server_us_per_peer_interval', '.1f'):>16} "
              f"{cell('client_us_per_peer_interval', '.1f'):>16}  {extra}")


# ------------------------------------------------------------------ detect

def _last_received(peer: rpc.Peer) -> Optional[float]:
    # Internal, read only: the client's record of the last frame it received.
    session = getattr(getattr(peer, "_connection", None), "session", None)
    liveness = getattr(session, "liveness", None)
    return getattr(liveness, "last_received", None)


def detect_trial(server: ServerProcess, hb: rpc.Heartbeat, rng: random.Random) -> dict:
    """One trial on a fresh connection; the server is running when it returns."""
    peer = rpc.connect(server.url, name="hb-bench-detect", heartbeat=hb, timeout=CALL_TIMEOUT)
    try:
        client = rpc.Client(peer, ECHO)
        client.echo(echo_pb2.Msg(text="check"), timeout=CALL_TIMEOUT)
        future = client.sleep.future(echo_pb2.Msg(delay=SLEEP_DELAY))
        gevent.sleep(0.05 + rng.random() * hb.interval)
        if future.ready():
            raise BenchError(f"the call ended before the stop: {future.exception!r}")
        seen: Dict[str, Optional[float]] = {}

        def done(_result) -> None:  # in the hub, as soon as the call fails
            seen["at"] = time.monotonic()
            seen["last"] = _last_received(peer)
        future.rawlink(done)
        try:
            server.stop()
            stopped = time.monotonic()
            try:
                future.get(timeout=hb.timeout + DETECT_SLACK)
            except rpc.PeerLost as exc:
                error: Optional[str] = None
                message = exc.message
            except gevent.Timeout:
                error, message = "not detected", ""
            except rpc.RpcError as exc:
                error, message = f"failed with {exc.code.name}, not PeerLost", exc.message
            else:
                error, message = "the call succeeded", ""
        finally:
            server.cont()
        res = {"error": error, "message": message}
        if error is None and seen.get("at") is not None:
            res["from_stop"] = seen["at"] - stopped
            if seen.get("last") is not None:
                res["from_last_frame"] = seen["at"] - seen["last"]
        return res
    finally:
        peer.close()


def _pct(sorted_values: List[float], q: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, min(len(sorted_values), math.ceil(q * len(sorted_values))))
    return sorted_values[rank - 1]


def run_detect(trials: int) -> List[dict]:
    rng = random.Random(12345)
    out = []
    for i, (interval, misses) in enumerate(DETECT_SETTINGS):
        n = trials if i == 0 else max(1, trials // 4)
        hb = rpc.Heartbeat(interval, misses)
        results = []
        with ServerProcess(f"tcp://{HOST}:0", heartbeat=(interval, misses),
                           args=["--log-level", "error"], start_timeout=START_TIMEOUT) as server:
            try:
                for t in range(n):
                    with gevent.Timeout(hb.timeout + DETECT_SLACK + 3 * CALL_TIMEOUT,
                                        BenchError("a detection trial did not finish in time")):
                        res = detect_trial(server, hb, rng)
                    results.append(res)
                    shown = (f"{res['from_stop']:.3f} s from stop, "
                             f"{res.get('from_last_frame', float('nan')):.3f} s from last frame"
                             if "from_stop" in res else f"{res['error']} {res['message']}")
                    print(f"detect {interval:g} s x {misses} trial {t + 1}/{n}: {shown}",
                          file=sys.stderr, flush=True)
                    gevent.sleep(0.05)  # let the resumed server read what it missed
            finally:
                server.cont()  # __exit__ then terminates it
        out.append(summarize_detect(interval, misses, results))
    return out


def summarize_detect(interval: float, misses: int, results: List[dict]) -> dict:
    bound = interval * misses
    times = sorted(r["from_stop"] for r in results if "from_stop" in r)
    lasts = sorted(r["from_last_frame"] for r in results if "from_last_frame" in r)
    row = {"interval": interval, "misses": misses, "bound": bound, "trials": len(results),
           "detected": len(times), "failures": [r for r in results if r["error"] is not None],
           "trials_raw": results}
    if times:
        row.update({"min": times[0], "p50": _pct(times, 0.5), "p90": _pct(times, 0.9),
                    "max": times[-1],
                    "in_window": sum(bound - interval <= t <= bound for t in times),
                    "in_window_noise": sum(bound - interval - NOISE <= t <= bound + NOISE
                                           for t in times),
                    "over_bound_max": max(0.0, times[-1] - bound)})
    if lasts:
        row.update({"last_p50": _pct(lasts, 0.5), "last_max": lasts[-1], "last_min": lasts[0]})
    return row


def print_detect(rows: List[dict]) -> None:
    print("\nDetection of a SIGSTOPped server by a call in flight (rpc.PeerLost), seconds; "
          "bound = interval x misses;\nfrom the stop the promise puts it in [bound - interval, "
          f"bound] (+ noise: {NOISE * 1000:.0f} ms allowed in 'in ±noise')")
    print(f"{'heartbeat':12} {'bound':>6} {'trials':>7} {'min':>7} {'p50':>7} {'p90':>7} {'max':>7}"
          f" {'in window':>10} {'in ±noise':>10} {'last-frame p50/max':>19}")
    for row in rows:
        label = f"{row['interval']:g} s x {row['misses']}"
        trials = f"{row['detected']}/{row['trials']}"
        if row["detected"]:
            nums = " ".join(f"{row[k]:>7.3f}" for k in ("min", "p50", "p90", "max"))
            inw = f"{row['in_window']}/{row['detected']}"
            inn = f"{row['in_window_noise']}/{row['detected']}"
        else:
            nums, inw, inn = " ".join(f"{'-':>7}" for _ in range(4)), "-", "-"
        last = f"{row['last_p50']:.3f}/{row['last_max']:.3f}" if "last_p50" in row else "-"
        print(f"{label:12} {row['bound']:>6.3f} {trials:>7} {nums} {inw:>10} {inn:>10} {last:>19}")
        for failure in row["failures"][:5]:
            print(f"  failed trial: {failure['error']} {failure['message']}".rstrip())


# ------------------------------------------------------------------ main

def run(args) -> int:
    parts = [p.strip().lower() for p in args.only.split(",") if p.strip()]
    if not parts or any(p not in ("cpu", "detect") for p in parts):
        raise SystemExit("--only takes a comma-separated subset of cpu,detect")
    if not 0 < args.window <= MAX_WINDOW:
        raise SystemExit(f"--window must be in (0, {MAX_WINDOW:g}]")
    if not 1 <= args.trials <= MAX_TRIALS:
        raise SystemExit(f"--trials must be in 1..{MAX_TRIALS}")
    if not 1 <= args.runs <= 20:
        raise SystemExit("--runs must be in 1..20")
    if not 1 <= args.peers <= MAX_PEERS:
        raise SystemExit(f"--peers must be in 1..{MAX_PEERS}")
    warmup = min(3.0, max(1.0, args.window * 0.2))
    # The "peer lost" warning of every detection trial is expected here.
    logging.getLogger("onedrive_rpc").setLevel(logging.ERROR)
    source = _cpu_source()
    started = _perf()
    report: dict = {"config": {"window": args.window, "warmup": warmup, "runs": args.runs,
                               "peers": args.peers, "trials": args.trials, "cpu_source": source,
                               "transport": "tcp 127.0.0.1", "noise_allowance": NOISE}}
    cpu = detect = None
    if "cpu" in parts:
        cpu = run_cpu(args.runs, args.window, warmup, args.peers, source)
        report["cpu"] = cpu
    if "detect" in parts:
        detect = run_detect(args.trials)
        report["detect"] = detect
    if cpu is not None:
        print_cpu(cpu, args.runs, args.window, warmup, args.peers, source)
    if detect is not None:
        print_detect(detect)
    report["elapsed_s"] = _perf() - started
    print(f"\ntotal {report['elapsed_s']:.0f} s")
    if args.json:
        print(json.dumps(report, indent=1))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="cpu,detect", help="cpu, detect or both (default)")
    parser.add_argument("--window", type=float, default=10.0,
                        help="seconds of CPU measurement per setting and run (default 10)")
    parser.add_argument("--runs", type=int, default=2,
                        help="CPU rounds over the settings; the table shows medians (default 2)")
    parser.add_argument("--peers", type=int, default=PEERS,
                        help=f"idle peers in the CPU measurement (default {PEERS})")
    parser.add_argument("--trials", type=int, default=20,
                        help="detection trials at 0.2 s x 3; 1.0 s x 3 gets a quarter (default 20)")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    parser.add_argument("--serve", type=_heartbeat, help=argparse.SUPPRESS)
    parser.add_argument("--hold", help=argparse.SUPPRESS)
    parser.add_argument("--heartbeat", type=_heartbeat, help=argparse.SUPPRESS)
    parser.add_argument("--lifetime", type=float, default=300.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve, args.lifetime)
        return 0
    if args.hold is not None:
        hold(args.hold, args.peers, args.heartbeat or rpc.Heartbeat(), args.lifetime)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
