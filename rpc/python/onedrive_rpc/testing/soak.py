"""A soak client: calls Echo with unique ids for a while, through whatever
faults, and reports what it issued and what came back.

    python -m onedrive_rpc.testing.soak URL --duration 5 --concurrency 16

Prints one JSON line: {"issued": n, "answered": n, "wrong": n, "resumed": n,
"new_sessions": n, "failed": {message: count}}.
Every request's text is "<pid>:<n>", so the server can count executions
per request and find any that ran twice.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import time
from typing import List, Optional

import gevent

from ..client import Client
from ..config import Heartbeat
from ..errors import RpcError
from ..peer import connect
from . import echo_pb2
from .echo_service import ECHO

__all__ = ["main"]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--call-timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    # The faults start with us: a cut during the first handshake is the
    # network's, not a finding (once connected, the peer reconnects itself).
    connect_by = time.monotonic() + 10.0
    while True:
        try:
            peer = connect(args.url, name="soak-client", heartbeat=Heartbeat(0.2, 3), timeout=5)
            break
        except RpcError:
            if time.monotonic() > connect_by:
                raise
            gevent.sleep(0.05)
    client = Client(peer, ECHO)
    pid = os.getpid()
    counts = {"issued": 0, "answered": 0, "wrong": 0, "resumed": 0, "new_sessions": 0}
    peer.on_resumed(lambda session: counts.__setitem__("resumed", counts["resumed"] + 1))
    peer.on_reconnected(lambda session: counts.__setitem__("new_sessions", counts["new_sessions"] + 1))
    failed: "collections.Counter[str]" = collections.Counter()
    stop_at = time.monotonic() + args.duration
    numbers = iter(range(10**9))

    def worker() -> None:
        while time.monotonic() < stop_at:
            text = f"{pid}:{next(numbers)}"
            counts["issued"] += 1
            try:
                reply = client.echo(echo_pb2.Msg(text=text, data=text.encode() * 20),
                                    timeout=args.call_timeout)
            except RpcError as exc:
                failed[f"{exc.code.name}: {exc.message}"] += 1
                continue
            if reply.text == text:
                counts["answered"] += 1
            else:
                counts["wrong"] += 1

    gevent.joinall([gevent.spawn(worker) for _ in range(args.concurrency)],
                   timeout=args.duration + args.call_timeout + 10)
    peer.close()
    print(json.dumps({**counts, "failed": dict(failed)}), flush=True)


if __name__ == "__main__":
    main()
