"""Calls whose replies are never read cost the server what its limits
name, not max_concurrent_calls x the message size (issue 10: 1 MiB calls
whose replies were never read cost one connection 2,092 MB).

The attacker handshakes properly, then sends 1 MiB echo calls without
ever reading; the server (its own process, default limits) admits
max_call_bytes of them (64 MiB) and answers the rest RESOURCE_EXHAUSTED.
Its peak RSS is read from /proc (VmHWM).
"""
from __future__ import annotations

import time

import gevent
from gevent import socket

from onedrive_rpc import Limits
from onedrive_rpc.core import wire_pb2
from onedrive_rpc.core.session import Role, Session
from onedrive_rpc.testing.echo_pb2 import Msg
from onedrive_rpc.testing.echo_service import ECHO
from onedrive_rpc.testing.helpers import framed, receive_via_buffer, wire
from onedrive_rpc.testing.process import ServerProcess

MIB = 1024 * 1024
ECHO_PATH = f"/{ECHO.full_name}/Echo"
CALLS = 1100  # past max_concurrent_calls too


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_calls_whose_replies_are_never_read_cost_what_the_limits_name():
    server = ServerProcess("tcp://127.0.0.1:0").start()
    try:
        host, port = server.url[len("tcp://"):].rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=10)
        session = Session(Role.CLIENT, peer_id="never-reads")
        session.start(0.0)
        sock.sendall(wire(session))
        while session.peer is None:
            receive_via_buffer(session, sock.recv(65536), 0.0)
        before = _status_kib(server.pid, "VmRSS") * 1024
        payload = Msg(text="x" * MIB).SerializeToString()
        sent = 0
        seq = session.reliability.next_seq
        deadline = time.monotonic() + 30
        sock.settimeout(5)  # a server that stops reading us shows as a timeout
        try:
            for call_id in range(1, CALLS + 1):
                env = wire_pb2.Envelope(seq=seq, payload=payload)
                env.request.call_id = call_id
                env.request.method = ECHO_PATH
                sock.sendall(framed(env))
                seq += 1
                sent += 1
                if time.monotonic() > deadline:
                    break
        except socket.timeout:
            pass
        gevent.sleep(0.5)  # the server finishes what it read (its peak is what counts)
        peak = _status_kib(server.pid, "VmHWM") * 1024
        grown = peak - before
        budget = Limits().max_call_bytes
        # Admitted requests, their replies waiting for room, the output
        # queue, and the read buffer: a few times the budget (measured:
        # +286 MiB; 1,024 calls in flight were +2 GB before the budget).
        assert sent == CALLS, f"the server stopped reading after {sent} calls"
        assert grown < 5 * budget, f"server peak RSS grew {grown / MIB:.0f} MiB"
        sock.close()
    finally:
        server.kill()
