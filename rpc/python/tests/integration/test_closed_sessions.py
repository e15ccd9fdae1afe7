"""Closed sessions are freed promptly: a connection that ends drops its
buffers (read, output, resend) at once, so a thousand short sessions from a
fuzzing peer cost little even before the cycle collector runs."""
from __future__ import annotations

import gc
import sys

import gevent
from gevent import subprocess

import onedrive_rpc as rpc
from onedrive_rpc.testing.echo_service import EchoService
from onedrive_rpc.testing.helpers import child_env, rss_bytes, wait_until

_CHILD_ENV = child_env()

# `count` sessions, each sending a frame of random bytes after its handshake.
_FUZZ = """
import random, sys, onedrive_rpc as rpc
rng = random.Random(7)
for _ in range(int(sys.argv[2])):
    peer = rpc.connect(sys.argv[1], reconnect=rpc.Reconnect(enabled=False))
    junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
    peer._connection.stream.send_nowait([b"\\x00\\x00\\x00\\x20" + junk])
    peer.close()
print("done", flush=True)
"""


def test_a_thousand_fuzzed_sessions_cost_little_without_the_cycle_collector():
    server = rpc.Server("tcp://127.0.0.1:0")
    server.add_service(EchoService())
    server.start()
    gc.collect()
    gc.disable()
    try:
        start = rss_bytes() / 1e6
        child = subprocess.Popen([sys.executable, "-c", _FUZZ, server.url, "1000"],
                                 stdout=subprocess.PIPE, env=_CHILD_ENV, text=True)
        with gevent.Timeout(120):
            assert child.stdout.readline().strip() == "done"
        child.wait()
        wait_until(lambda: not server.connections, timeout=20)
        growth = rss_bytes() / 1e6 - start
    finally:
        gc.enable()
        server.stop()
    # Before sessions dropped their buffers when they ended: about +84 MB.
    assert growth < 40, f"RSS grew {growth:.1f} MB"
