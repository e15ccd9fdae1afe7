#!/usr/bin/env python3
"""What the sans-IO core alone costs per call: no sockets, no gevent.

    python bench/core.py [--calls 50000] [--rounds 5] [--size 64]

A Session pair (testing.helpers.open_session_pair) makes W1's round trip by
hand: the client's send_request and data_to_send, the server's
receive_data, the echo message parsed and serialized, its send_response
and data_to_send, the client's receive_data and the reply parsed. CPU µs
per round trip, both sides together, for each round (bounded: `--calls`
per round).

This is the floor under bench/reqresp.py's W1: whatever the driver and
the transport cost comes on top of it, and raw gevent sockets pay none of
it. Compare it with the raw echo's CPU per call on the same machine.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "rpc", "python"))

from onedrive_rpc.testing import echo_pb2  # noqa: E402
from onedrive_rpc.testing.helpers import open_session_pair  # noqa: E402

METHOD = "/onedrive_rpc.testing.Echo/Echo"
MAX_CALLS = 1_000_000


def measure(calls: int, rounds: int, size: int) -> List[float]:
    """CPU µs per round trip, one figure per round."""
    client, server = open_session_pair()
    payload = echo_pb2.Msg(data=b"x" * size).SerializeToString()
    now = 1.0
    call_id = 0

    def round_trip() -> None:
        nonlocal call_id
        call_id += 1
        client.send_request(call_id, METHOD, payload)
        [request] = server.receive_data(b"".join(client.data_to_send(now)), now)
        reply = echo_pb2.Msg.FromString(request.payload).SerializeToString()
        server.send_response(call_id, 0, payload=reply)
        [response] = client.receive_data(b"".join(server.data_to_send(now)), now)
        echo_pb2.Msg.FromString(response.payload)

    for _ in range(min(calls, 2000)):
        round_trip()
    results = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(calls):
            round_trip()
        results.append((time.process_time() - start) / calls * 1e6)
    return results


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=50_000, help="round trips per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=64, help="echo payload bytes")
    args = parser.parse_args(argv)
    calls = max(1, min(args.calls, MAX_CALLS))
    results = measure(calls, max(1, args.rounds), args.size)
    print(f"sans-IO core W1 round trip, {args.size} B, both sides: "
          f"min {min(results):.1f} µs, median {sorted(results)[len(results) // 2]:.1f} µs CPU "
          f"({', '.join(f'{r:.1f}' for r in results)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
