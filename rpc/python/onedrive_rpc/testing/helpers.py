"""Small helpers for protocol and integration tests (ours and users')."""
from __future__ import annotations

import json
import os
import signal
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import gevent
from gevent.socket import wait_read

from ..core import wire_pb2
from ..core.framing import FrameDecoder, frame_header
from ..core.session import Role, Session, State
from ..tls import TLS
from ..transport.base import ConnectionClosed, register_transport
from ..transport.tls import TlsTransport

__all__ = ["wait_until", "framed", "envelopes", "wire", "open_session_pair", "receive_via_buffer",
           "blocking_handshake", "read_envelopes", "child_env", "in_forked_child", "rss_bytes",
           "TEST_TLS_ENV", "use_test_certificates"]


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, poll: float = 0.005) -> None:
    """Wait (cooperatively) until predicate() is true; AssertionError after `timeout`."""
    with gevent.Timeout(timeout, AssertionError(f"condition not met within {timeout}s")):
        while not predicate():
            gevent.sleep(poll)


def framed(envelope_or_body: Union[wire_pb2.Envelope, bytes]) -> bytes:
    """One frame on the wire: length prefix + serialized Envelope (or raw body)."""
    body = (envelope_or_body.SerializeToString()
            if isinstance(envelope_or_body, wire_pb2.Envelope) else bytes(envelope_or_body))
    return frame_header(len(body)) + body


def envelopes(data: bytes) -> List[wire_pb2.Envelope]:
    """The Envelopes framed in `data`, which must hold whole frames."""
    decoder = FrameDecoder()
    result = []
    for frame in decoder.feed(data):
        env = wire_pb2.Envelope()
        env.ParseFromString(frame)  # type: ignore[arg-type]
        result.append(env)
    if decoder.buffered:
        raise ValueError(f"{decoder.buffered} bytes of an incomplete frame at the end")
    return result


def wire(session: Session, now: Optional[float] = None) -> bytes:
    """Everything a sans-IO session queued for the wire, as one bytes object."""
    return b"".join(bytes(b) for b in session.data_to_send(now))


def open_session_pair() -> Tuple[Session, Session]:
    """A client and a server Session past their handshake, in memory: feed
    one's wire() to the other's receive_data() to test the protocol."""
    client = Session(Role.CLIENT, peer_id="c")
    server = Session(Role.SERVER, peer_id="s", session_id="S")
    client.start(0.0)
    server.receive_data(wire(client), 0.0)
    client.receive_data(wire(server), 0.0)
    return client, server


def receive_via_buffer(session: Session, data: bytes, now: float,
                       step: Optional[int] = None) -> List[object]:
    """Feed `data` through get_buffer()/buffer_updated() in reads of at most `step` bytes."""
    events: List[object] = []
    offset = 0
    while offset < len(data):
        space = session.get_buffer()
        n = min(len(space), len(data) - offset, step or len(data))
        space[:n] = data[offset:offset + n]
        offset += n
        events.extend(session.buffer_updated(n, now))
    return events


def blocking_handshake(sock: Any, peer_id: str, heartbeat_interval: float = 60.0) -> Session:
    """Handshake a client Session over a connected blocking socket (an
    attacker's, in a child process) and return it, OPEN; SystemExit if the
    server hangs up first."""
    session = Session(Role.CLIENT, peer_id=peer_id, heartbeat_interval=heartbeat_interval)
    session.start(0.0)
    sock.sendall(wire(session))
    while session.state is not State.OPEN:
        data = sock.recv(65536)
        if not data:
            raise SystemExit("the server closed the connection during the handshake")
        session.receive_data(data, 0.0)
    return session


def read_envelopes(stream: Any, count: int, closed: bool = False,
                   timeout: float = 5.0) -> List[wire_pb2.Envelope]:
    """The first `count` frames that arrive on a transport Stream (all of
    them until the other side hangs up, if `closed`), as Envelopes."""
    data = b""
    space = bytearray(65536)
    with gevent.Timeout(timeout, AssertionError(f"fewer than {count} frames within {timeout}s")):
        while True:
            try:
                n = stream.recv_into(memoryview(space))
            except ConnectionClosed:
                n = 0
            if not n:
                return envelopes(data)
            data += space[:n]
            try:
                found = envelopes(data)
            except ValueError:
                continue  # a frame is still incomplete
            if len(found) >= count and not closed:
                return found


#: The environment variable naming a directory of test certificates (ca.pem,
#: server.pem: key and chain) that child processes serve and trust on tls://.
TEST_TLS_ENV = "ONEDRIVE_RPC_TEST_TLS"


def use_test_certificates(directory: Optional[str] = None) -> bool:
    """Make tls:// URLs in this process use the test certificates in
    `directory` (default: $ONEDRIVE_RPC_TEST_TLS) when rpc.Server and
    rpc.connect give no tls=: servers present server.pem, clients trust
    ca.pem. False when there is no such directory."""
    directory = directory or os.environ.get(TEST_TLS_ENV)
    if not directory:
        return False
    register_transport("tls", TlsTransport(
        server=TLS(certfile=os.path.join(directory, "server.pem")),
        client=TLS(cafile=os.path.join(directory, "ca.pem"))))
    return True


def child_env() -> Dict[str, str]:
    """The environment for a child Python process that imports this
    onedrive_rpc (wherever it is installed or checked out)."""
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return env


def in_forked_child(check: Callable[[], Any]) -> Any:
    """Fork; run `check()` in the child; return {"ok": its result} or
    {"error": repr(exception)}, passed back as JSON. The child leaves
    without running any cleanup; it is reaped (killed if need be). This
    process waits cooperatively: its servers keep serving the child."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave
        try:
            result = {"ok": check()}
        except BaseException as exc:  # noqa: B902 - report anything
            result = {"error": repr(exc)}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    try:
        os.close(write_end)
        chunks = []
        while True:
            # Cooperatively: servers of this process keep serving the child.
            wait_read(read_end, timeout=60, timeout_exc=AssertionError("the child did not report"))
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return json.loads(b"".join(chunks))
    finally:
        os.close(read_end)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # gevent's child watcher reaped it while we waited cooperatively


def rss_bytes() -> int:
    """This process's resident memory (Linux: /proc/self/statm)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
