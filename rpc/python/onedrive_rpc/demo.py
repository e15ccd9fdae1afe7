"""`onedrive-rpc demo`: a server in its own process and a client talking to it.

Shows each thing request/response promises: a call, a future, many calls
at once on one connection, a distinct status code for each failure, calls
that survive a cut connection, and a killed server noticed at once.
"""
from __future__ import annotations

import time
from typing import List

import gevent

from .client import Client
from .errors import RpcError
from .peer import connect
from .testing import echo_pb2
from .testing.echo_service import ECHO
from .testing.faults import FaultProxy
from .testing.process import ServerProcess

__all__ = ["run"]


def _say(text: str) -> None:
    print(text, flush=True)


def _expect_error(what: str, method, request) -> None:
    try:
        method(request, timeout=1.0)
    except RpcError as exc:
        _say(f"  {what:<28} -> {exc.code.name}: {exc.message}")
    else:
        _say(f"  {what:<28} -> no error?!")


def _show_a_cut_connection(url: str) -> None:
    with FaultProxy(url) as proxy, connect(proxy.url, name="demo-client") as peer:
        resumed: List[str] = []
        peer.on_resumed(resumed.append)
        client = Client(peer, ECHO)
        futures = [client.sleep.future(echo_pb2.Msg(text=str(i), delay=0.3), timeout=10.0)
                   for i in range(20)]
        gevent.sleep(0.1)
        proxy.cut()
        _say("cut the connection (through a fault proxy) while 20 calls were running ...")
        ok = [f.get(timeout=10.0).text for f in futures] == [str(i) for i in range(20)]
        gevent.sleep(0)  # let the resumed hook run
        _say(f"  reconnected and resumed session {', '.join(resumed) or '?'}: "
             f"{'all 20 calls answered' if ok else 'WRONG ANSWERS'}")


def run(url: str = "tcp://127.0.0.1:0") -> int:
    _say(f"starting the echo server process on {url} ...")
    # The server logs handler failures; the demo prints them itself.
    with ServerProcess(url, args=["--log-level", "critical"]) as server:
        _say(f"server pid {server.pid} listens on {server.url}")
        with connect(server.url, name="demo-client") as peer:
            info = peer.info
            _say(f"connected: handshake done with {info.name} (pid {info.pid}), session {peer.session_id}")
            client = Client(peer, ECHO)

            reply = client.echo(echo_pb2.Msg(text="hello from the demo"), timeout=2.0)
            _say(f"client.echo(text='hello from the demo') -> {reply.text!r}")

            future = client.sleep.future(echo_pb2.Msg(text="later", delay=0.2), timeout=2.0)
            _say(f"client.sleep.future(delay=0.2) returned at once; ready={future.ready()}")
            _say(f"future.get() -> {future.get(timeout=2.0).text!r}")

            start = time.perf_counter()
            futures = [client.sleep.future(echo_pb2.Msg(text=str(i), delay=0.3), timeout=5.0)
                       for i in range(500)]
            replies = [f.get(timeout=5.0).text for f in futures]
            elapsed = time.perf_counter() - start
            ok = replies == [str(i) for i in range(500)]
            _say(f"500 concurrent calls that each sleep 0.3 s on one connection: "
                 f"{'all answered in order' if ok else 'WRONG ANSWERS'} in {elapsed:.2f} s")

            _say("each failure has its own status code:")
            _expect_error("handler raises", client.fail, echo_pb2.Msg(text="disk full"))
            _expect_error("method not implemented", client.missing, echo_pb2.Msg())
            _expect_error("deadline 1 s, handler 5 s", client.sleep, echo_pb2.Msg(delay=5))

            _show_a_cut_connection(server.url)

            gevent.spawn_later(0.2, server.kill)
            _say("killing the server process (SIGKILL) while a call is in flight ...")
            _expect_error("server killed mid-call", client.sleep, echo_pb2.Msg(delay=5))
    _say("demo done")
    return 0
