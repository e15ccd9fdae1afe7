"""What the pub/sub and broadcast patterns hold for peers that do not keep
up is bounded in bytes (issue 10): a subscriber that never grants credit
while 1,024 x 1 MiB are published made the server hold +1,030 MB; a
broadcast to 20 peers that never read, +598 MB (32 MiB each).

Each attacker runs in its own process. (a) The server runs in a child
process with the default limits and its peak RSS (VmHWM) is read from
/proc. (b) The server runs here, with a small server-wide output budget,
so that its connections can be inspected; the RSS of this process is
sampled while the broadcasts go out.
"""
from __future__ import annotations

import os
import sys
import textwrap
import time

import gevent
import pytest
from gevent import subprocess

import onedrive_rpc as rpc
from onedrive_rpc.testing.echo_pb2 import Msg
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.helpers import child_env, rss_bytes, wait_until
from onedrive_rpc.testing.process import ServerProcess

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"),
                                reason="needs /proc (Linux)")

MB = 1_000_000
MIB = 1024 * 1024
CHANGED = f"/{ECHO.full_name}/Changed"
ANNOUNCE = f"/{ECHO.full_name}/Announce"
_ENV = child_env()


def _status_bytes(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


# A subscriber that reads and acknowledges everything at once but never
# grants credit: after its first `queue_limit` messages, whatever the server
# keeps for it waits in the broker's queue. A sans-IO Session over a socket.
# Prints "GOT <n>" once it has n deliveries; on "GRANT" from stdin it grants
# plenty and reports what the queue released up to a small message:
# "RELEASED <large ones> <dropped>".
NO_CREDIT_SUBSCRIBER = textwrap.dedent("""
    import socket, sys, time
    from onedrive_rpc.core import events as ev
    from onedrive_rpc.core.pattern_frames import Credit, Subscribe
    from onedrive_rpc.core.session import Role, Session

    host, port, method, first = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    sock = socket.create_connection((host, port))
    session = Session(Role.CLIENT, peer_id="no-credit", heartbeat_interval=60.0)
    session.start(time.monotonic())

    def flush():
        session.reliability.ack_wanted_now()  # acknowledge at once
        session.tick(time.monotonic())
        sock.sendall(b"".join(bytes(b) for b in session.data_to_send(time.monotonic())))

    answered = []

    def read(until):
        got = []
        while not until(got):
            data = sock.recv(1 << 20)
            if not data:
                sys.exit("closed by the server")
            for e in session.receive_data(data, time.monotonic()):
                if isinstance(e, ev.DeliverReceived):
                    got.append(e)
                elif isinstance(e, ev.ResponseReceived):
                    answered.append(e.code)
            flush()
        return got

    flush()  # the Hello
    read(lambda got: session.peer is not None)
    session.send(Subscribe(1, method, ">", 1024, 0, call_id=1))
    flush()
    read(lambda got: answered)
    print("SUBSCRIBED", answered[0], flush=True)
    seen = len(read(lambda got: len(got) >= first))
    print("GOT", seen, flush=True)
    assert sys.stdin.readline().strip() == "GRANT"
    session.send(Credit(100000, subscription_id=1))
    flush()
    # The test published a small "end" last: the queue releases up to it.
    released = read(lambda got: got and len(got[-1].payload) < 100)
    big = [d for d in released if len(d.payload) > 1000]
    print("RELEASED", len(big), big[-1].dropped if big else -1, flush=True)
    sys.stdin.read()
""")


def test_a_subscriber_that_never_grants_credit_costs_its_byte_bound():
    limits = rpc.Limits()
    with ServerProcess("tcp://127.0.0.1:0") as server:
        host, port = server.url[len("tcp://"):].rsplit(":", 1)
        attacker = subprocess.Popen(
            [sys.executable, "-c", NO_CREDIT_SUBSCRIBER, host, port, CHANGED, "1024"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_ENV, text=True)
        publisher = rpc.connect(server.url, timeout=5)
        try:
            client = rpc.Client(publisher, ECHO)
            with gevent.Timeout(10, AssertionError("the subscriber did not subscribe")):
                assert attacker.stdout.readline().split() == ["SUBSCRIBED", "0"]
            # Its credit goes on small messages first.
            for n in range(1024):
                client.changed.publish("t", Msg(text=str(n)), confirm=(n == 1023), timeout=10)
            with gevent.Timeout(10, AssertionError("the subscriber did not get its credit's worth")):
                assert attacker.stdout.readline().split()[0] == "GOT"
            before = _status_bytes(server.pid, "VmRSS")
            payload = Msg(data=b"x" * MIB)
            started = time.monotonic()
            for n in range(1024):  # the publisher is neither blocked nor failed
                client.changed.publish("t", payload, confirm=(n % 64 == 63), timeout=10)
            took = time.monotonic() - started
            grown = _status_bytes(server.pid, "VmHWM") - before
            # Before the byte bound: +1,075 MB, all 1,024 messages queued.
            assert grown < 64 * MB, f"server peak RSS grew {grown / MB:.0f} MB"
            assert took < 15, f"publishing took {took:.1f}s"
            client.changed.publish("t", Msg(text="end"), confirm=True, timeout=10)
            attacker.stdin.write("GRANT\n")
            attacker.stdin.flush()
            with gevent.Timeout(10, AssertionError("the subscriber did not report")):
                word, released, dropped = attacker.stdout.readline().split()
        finally:
            publisher.close()
            attacker.kill()
            attacker.wait()
    print(f"1,024 x 1 MiB published in {took:.1f}s, server peak RSS +{grown / MB:.0f} MB")
    # What waited fits max_subscription_bytes; the oldest were dropped, counted.
    kept = int(released)
    assert 1 <= kept <= limits.max_subscription_bytes // MIB
    assert int(dropped) == 1024 - kept


# Opens `count` connections that finish their handshake and never read.
NEVER_READS = textwrap.dedent("""
    import socket, sys
    from onedrive_rpc.testing.helpers import blocking_handshake

    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    held = []
    for i in range(count):
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        blocking_handshake(sock, "never-reads-%d" % i)
        held.append(sock)
    print("READY", flush=True)
    sys.stdin.read()
""")

ATTACKERS = 20
BUDGET = 16 * MIB


def test_a_broadcast_to_peers_that_never_read_stays_within_the_server_budget():
    # Slow heartbeats: the silent attackers are not found lost first.
    server = rpc.Server("tcp://127.0.0.1:0", heartbeat=rpc.Heartbeat(interval=10.0),
                        limits=rpc.Limits(max_server_queued_bytes=BUDGET))
    server.add_service(EchoService())
    server.start()
    bystander = rpc.connect(server.url, timeout=5)
    heard = [0]  # counted, not kept: this process's memory is measured
    client = rpc.Client(bystander, ECHO)

    def hear(received) -> None:
        heard[0] += 1

    client.announce.listen(hear)
    host, port = server.url[len("tcp://"):].rsplit(":", 1)
    attacker = subprocess.Popen([sys.executable, "-c", NEVER_READS, host, port, str(ATTACKERS)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_ENV)
    try:
        with gevent.Timeout(15, AssertionError("the attacker did not get its connections up")):
            assert attacker.stdout.readline() == b"READY\n"
        wait_until(lambda: len(server.connections) == ATTACKERS + 1, timeout=10)
        stalled = [c for c in server.connections if c.peer.peer_id.startswith("never-reads-")]
        [mine] = [c for c in server.connections if c not in stalled]
        assert client.echo(Msg(text="warm"), timeout=5).text == "warm"
        payload = Msg(data=b"b" * 16 * 1024).SerializeToString()  # copied per peer
        before = peak = rss_bytes()
        sent = calls = 0
        # 40 MiB per peer: past the per-connection bound (32 MiB) as well.
        while sent < 2560 and not all(c.closed for c in stalled):
            for _ in range(16):
                server.broker.broadcast(ANNOUNCE, payload)
                sent += 1
            # The bystander keeps calling; its round trip lets the loop run.
            assert client.echo(Msg(text=str(sent)), timeout=5).text == str(sent)
            calls += 1
            peak = max(peak, rss_bytes())
        wait_until(lambda: all(c.closed for c in stalled), timeout=5)
        grown = peak - before
        reasons = {c.close_reason.code for c in stalled}
        assert reasons == {rpc.StatusCode.RESOURCE_EXHAUSTED}, reasons
        assert all("slow consumer" in c.close_reason.message for c in stalled)
        assert not mine.closed
        assert client.echo(Msg(text="after"), timeout=5).text == "after"
        wait_until(lambda: heard[0] == sent, timeout=5)  # it missed nothing
    finally:
        attacker.stdin.close()
        attacker.kill()
        attacker.wait()
        bystander.close()
        server.stop()
    # Before the server-wide budget: 20 x 32 MiB, +600 MB or so. Now the
    # budget, what the peers being closed hold until they are (a second at
    # most), and the noise of this process.
    assert grown < 64 * MB, f"RSS grew {grown / MB:.0f} MB for {ATTACKERS} peers that never read"
    print(f"{sent} broadcasts, RSS +{grown / MB:.0f} MB")
