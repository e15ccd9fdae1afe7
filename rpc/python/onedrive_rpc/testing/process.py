"""Run an Echo server in a child OS process, and control it.

    with ServerProcess("tcp://127.0.0.1:0") as server:
        peer = rpc.connect(server.url)
        ...
        server.kill()          # SIGKILL; also stop()/cont() for SIGSTOP/SIGCONT

The child prints its real URL once it listens; the parent waits for that
line (bounded) instead of sleeping.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from typing import List, Optional, Tuple

import gevent
from gevent import subprocess

from .helpers import child_env, use_test_certificates

__all__ = ["ServerProcess", "ClientProcess", "PatternPeerProcess", "main"]

READY = "READY "


class ServerProcess:
    """An EchoService served by `python -m onedrive_rpc.testing.process URL`,
    or whatever `module` serves: `python -m MODULE URL ARGS...`, which must
    print "READY <url>" once it listens."""

    mode: List[str] = []

    def __init__(self, url: str, *, args: Optional[List[str]] = None,
                 heartbeat: Optional[Tuple[float, int]] = None,
                 start_timeout: float = 20.0,
                 module: str = "onedrive_rpc.testing.process") -> None:
        self.module = module
        self.requested_url = url
        self.args = list(args or [])
        if heartbeat is not None:
            self.args += ["--heartbeat", f"{heartbeat[0]},{heartbeat[1]}"]
        self.start_timeout = start_timeout
        self.url: str = ""
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "ServerProcess":
        env = child_env()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.mode,
             self.requested_url, *self.args],
            stdout=subprocess.PIPE, env=env, text=True)
        with gevent.Timeout(self.start_timeout, RuntimeError(
                f"server process did not start within {self.start_timeout}s")):
            line = self.proc.stdout.readline()
        if not line.startswith(READY):
            self.kill()
            raise RuntimeError(f"server process failed to start: {line!r}")
        self.url = line[len(READY):].strip()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def kill(self) -> None:
        """SIGKILL: the process dies without closing anything."""
        self.signal(signal.SIGKILL)
        self.wait(10)

    def stop(self) -> None:
        """SIGSTOP: the process freezes; its sockets stay open."""
        self.signal(signal.SIGSTOP)

    def cont(self) -> None:
        self.signal(signal.SIGCONT)

    def terminate(self, timeout: float = 10.0) -> Optional[int]:
        """SIGTERM: the server stops gracefully and exits."""
        self.cont()
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float) -> Optional[int]:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


class ClientProcess(ServerProcess):
    """A peer in a child process that connects to `url` and keeps a long
    call (Echo.Sleep, one hour) in flight: something to freeze or kill."""

    mode = ["--client"]


class PatternPeerProcess(ServerProcess):
    """A peer in a child process on the receiving end of a pattern of the
    Echo service, reporting what it gets as JSON lines in `received`:

        PatternPeerProcess(url, "subscribe", "a.>")   # Echo.Changed
        PatternPeerProcess(url, "subscribe", "a.>", "block", "16")  # policy, queue_limit
        PatternPeerProcess(url, "consume", "2")       # Echo.Work, prefetch 2
        PatternPeerProcess(url, "consume", "1", "0")  # ... sleeping at most 0 s
        PatternPeerProcess(url, "listen")             # Echo.Announce

    A subscriber reports {"topic", "text", "publisher", "seq", "dropped"}
    per message; a consumer {"event": "start"|"done", "text", "attempt"}
    per task (its handler sleeps the task's `delay` first, capped by a
    second argument if given); a listener
    {"text", "origin"} per broadcast.
    """

    def __init__(self, url: str, role: str, *role_args: str, **kwargs) -> None:
        super().__init__(url, **kwargs)
        self.mode = ["--role", role]
        self.args += [f"--role-arg={arg}" for arg in role_args]
        self.received: List[dict] = []
        self._reader: Optional[gevent.Greenlet] = None

    def start(self) -> "PatternPeerProcess":
        super().start()
        self._reader = gevent.spawn(self._read)
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.received.append(json.loads(line))

    def __exit__(self, *exc_info) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        if self._reader is not None:
            self._reader.join(timeout=5)
        super().__exit__(*exc_info)


def _heartbeat(text: str):
    from ..config import Heartbeat
    interval, misses = text.split(",")
    return Heartbeat(float(interval), int(misses))


def _client(args: argparse.Namespace) -> None:
    from ..client import Client
    from ..peer import connect
    from . import echo_pb2
    from .echo_service import ECHO

    peer = connect(args.url, name="test-client", heartbeat=args.heartbeat)
    print(READY + args.url, flush=True)
    try:
        Client(peer, ECHO).sleep(echo_pb2.Msg(delay=3600))
    finally:
        peer.close()


def _pattern_peer(args: argparse.Namespace) -> None:
    from ..client import Client
    from ..peer import connect
    from .echo_service import ECHO

    peer = connect(args.url, name=f"test-{args.role}", heartbeat=args.heartbeat)
    client = Client(peer, ECHO)

    def report(**record) -> None:
        print(json.dumps(record), flush=True)

    if args.role == "subscribe":
        pattern, policy, limit = (args.role_arg + ["drop_oldest", "0"])[:3]
        client.changed.subscribe(pattern, lambda r: report(
            topic=r.topic, text=r.message.text, publisher=r.publisher, seq=r.publisher_seq,
            dropped=r.dropped), policy=policy, queue_limit=int(limit), timeout=10)
    elif args.role == "consume":
        cap = float(args.role_arg[1]) if len(args.role_arg) > 1 else float("inf")

        def work(task, context) -> None:
            report(event="start", text=task.text, attempt=context.attempt)
            if min(task.delay, cap) > 0:
                gevent.sleep(min(task.delay, cap))
            report(event="done", text=task.text, attempt=context.attempt)

        client.work.consume(work, prefetch=int(args.role_arg[0]), timeout=10)
    else:
        client.announce.listen(lambda r: report(text=r.message.text, origin=r.publisher))
    print(READY + args.url, flush=True)
    gevent.sleep(3600)


def main(argv: Optional[List[str]] = None) -> None:
    from ..auth import SharedSecret
    from ..server import Server
    from .echo_service import CheckerService, EchoService

    parser = argparse.ArgumentParser(description="Serve the test Echo service.")
    parser.add_argument("--client", action="store_true",
                        help="be a client of URL instead, with a call in flight")
    parser.add_argument("--role", choices=["subscribe", "consume", "listen"],
                        help="be a peer of URL on the receiving end of a pattern")
    parser.add_argument("--role-arg", action="append", default=[])
    parser.add_argument("url")
    parser.add_argument("--error-details", action="store_true")
    parser.add_argument("--heartbeat", type=_heartbeat, default=None, help="interval,misses")
    parser.add_argument("--secret", help="a shared secret clients must prove they know")
    parser.add_argument("--session-grace", type=float, default=10.0,
                        help="seconds a broken connection's session waits for a resume")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    use_test_certificates()  # tls:// URLs: the tests' certificates, if they gave any
    logging.basicConfig(level=args.log_level.upper(), format="child %(levelname)s %(message)s")
    if args.client:
        _client(args)
        return
    if args.role:
        _pattern_peer(args)
        return
    server = Server(args.url, name="echo-server", include_error_details=args.error_details,
                    reflection=True, admin=True,
                    heartbeat=args.heartbeat, session_grace=args.session_grace,
                    auth=SharedSecret(args.secret) if args.secret else None)
    server.add_service(EchoService())
    server.add_service(CheckerService())  # rules to check (README §9.1): the conformance target's
    server.start()
    for signum in (signal.SIGTERM, signal.SIGINT):  # both stop in order: Close to every peer
        gevent.signal_handler(signum, lambda: gevent.spawn(server.stop, 5.0))
    print(READY + server.url, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
