"""Drive scenarios over real sockets and report each one's outcome.

Sockets are gevent's (no monkey-patching): in a plain program they block
like ordinary ones, and in a gevent program (the tests, with a server in
the same process) they let other greenlets run. Every wait is bounded by
the step's `within_ms` or the runner's default.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import urlsplit

from gevent import socket
from gevent import ssl

from ..core import wire_pb2
from .match import (Mismatch, ScenarioError, capture_value, check_paths, describe, mismatch, resolve,
                    substitute, to_envelope)
from .scenarios import STEP_KINDS, Scenario

__all__ = ["Result", "run_scenario", "run_all", "client_tls", "DEFAULT_WITHIN_MS"]

#: How long an expect step waits when it gives no within_ms.
DEFAULT_WITHIN_MS = 5000

#: Bound on connecting (and on sending, should the server stop reading).
CONNECT_TIMEOUT = 5.0

#: The largest frame the runner accepts from a server: a bad length prefix
#: must not make it allocate gigabytes.
MAX_FRAME = 64 * 1024 * 1024

_EOF = object()


@dataclass(frozen=True)
class Result:
    """A scenario's outcome: "pass", "fail", "xfail" (failed as its
    expected_failure says) or "xpass" (passed despite one)."""

    name: str
    outcome: str
    message: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.outcome in ("pass", "xfail", "xpass")


def client_tls(cafile: Optional[str] = None) -> ssl.SSLContext:
    """A TLS client context for tls:// targets, trusting `cafile` (default:
    the system's CAs), checking the host name. gevent's class, so that a
    handshake lets other greenlets run (ssl.create_default_context, even
    gevent's, makes the standard library's, which blocks the process)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        context.load_verify_locations(cafile)
    else:
        context.load_default_certs()
    return context


def _open(url: str, tls: Optional[ssl.SSLContext]) -> Any:
    parts = urlsplit(url)
    if parts.scheme in ("tcp", "tls"):
        if parts.hostname is None or parts.port is None:
            raise ScenarioError(f"bad URL {url!r}: {parts.scheme}://host:port")
        sock = socket.create_connection((parts.hostname, parts.port), timeout=CONNECT_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if parts.scheme == "tls":  # the frames run inside TLS unchanged (spec §2)
            context = tls or client_tls()
            try:
                sock = context.wrap_socket(sock, server_hostname=parts.hostname)
            except OSError:
                sock.close()
                raise
        return sock
    if parts.scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise ScenarioError(f"bad URL {url!r}: unix:///absolute/path")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(parts.path)
        except OSError:
            sock.close()
            raise
        return sock
    raise ScenarioError(f"the runner speaks tcp://, tls:// and unix://, not {parts.scheme}://")


class _Connection:
    """One named connection: frames out, frames in (or EOF), bounded."""

    def __init__(self, name: str, sock: Any) -> None:
        self.name = name
        self.sock = sock
        self.buffer = bytearray()
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.settimeout(CONNECT_TIMEOUT)
        try:
            self.sock.sendall(data)
        except OSError:
            # The server may already have closed: what it sent before that
            # is still to be read, so the steps that follow judge it.
            pass

    def send_frame(self, env: wire_pb2.Envelope) -> None:
        """One frame: 4-byte big-endian length, then the Envelope."""
        body = env.SerializeToString()
        self.send(len(body).to_bytes(4, "big") + body)

    def next_frame(self, deadline: float) -> Any:
        """The next Envelope, _EOF, or None if `deadline` passed first."""
        while True:
            frame = self._take()
            if frame is not None:
                return frame
            if self.eof:
                if self.buffer:
                    raise Mismatch(f"the server closed connection {self.name} in the middle of a "
                                   f"frame ({len(self.buffer)} bytes of it received)")
                return _EOF
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return None
            except OSError:  # a reset ends the stream like EOF does
                data = b""
            if not data:
                self.eof = True
            self.buffer += data

    def _take(self) -> Optional[wire_pb2.Envelope]:
        if len(self.buffer) < 4:
            return None
        length = int.from_bytes(self.buffer[:4], "big")
        if length > MAX_FRAME:
            raise Mismatch(f"the server announced a frame of {length} bytes on {self.name}")
        if len(self.buffer) < 4 + length:
            return None
        body = bytes(self.buffer[4:4 + length])
        del self.buffer[:4 + length]
        env = wire_pb2.Envelope()
        try:
            env.ParseFromString(body)
        except Exception as exc:  # noqa: B902 - protobuf's DecodeError and friends
            raise Mismatch(f"the server sent a frame that is not an Envelope: {exc}") from None
        return env

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def _compact(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= 300 else text[:280] + "...}"


class _Run:
    """The state of one scenario run: its connections and captured variables."""

    def __init__(self, url: str, default_within_ms: int,
                 tls: Optional[ssl.SSLContext] = None) -> None:
        self.url = url
        self.tls = tls
        self.default_within_ms = default_within_ms
        self.conns: Dict[str, _Connection] = {}
        self.variables: Dict[str, Any] = {}

    def conn(self, name: str) -> _Connection:
        if name not in self.conns:
            raise ScenarioError(f"no open connection named {name!r} (connect it first)")
        return self.conns[name]

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()

    def step(self, step: Dict[str, Any]) -> None:
        kind = next(k for k in step if k in STEP_KINDS)
        value = step[kind]
        conn_name = step.get("conn", "a")
        if kind == "connect":
            if value in self.conns:
                raise ScenarioError(f"connection {value!r} is already open")
            self.conns[value] = _Connection(value, _open(self.url, self.tls))
        elif kind == "cut":
            self.conn(value).close()
            del self.conns[value]
        elif kind == "send":
            self.conn(conn_name).send_frame(to_envelope(substitute(value, self.variables)))
        elif kind == "send_raw":
            try:
                data = bytes.fromhex(value)
            except ValueError:
                raise ScenarioError(f"send_raw takes hex digits, not {value!r}") from None
            self.conn(conn_name).send(data)
        elif kind == "expect":
            self.expect(conn_name, substitute(step, self.variables))
        elif kind == "expect_unordered":
            self.expect_unordered(conn_name, substitute(value, self.variables), self.within(step))
        elif kind == "expect_any":
            self.expect_any(conn_name, substitute(value, self.variables), self.within(step))
        elif kind == "expect_close":
            self.expect(conn_name, substitute(_close_step(step), self.variables))
        elif kind == "expect_challenge":
            self.expect_challenge(conn_name, step)
        elif kind == "send_proof":
            keys = _auth_keys(substitute(value, self.variables))
            mac = _hmac(keys["secret"], b"client" + keys["server_nonce"] + keys["client_nonce"])
            self.conn(conn_name).send_frame(wire_pb2.Envelope(proof=wire_pb2.Proof(mac=mac)))
        elif kind == "expect_eof":
            self.expect_quiet(conn_name, self.within(step), until_eof=True)
        else:
            self.expect_quiet(conn_name, value / 1000.0, until_eof=False)

    def within(self, step: Dict[str, Any]) -> float:
        return step.get("within_ms", self.default_within_ms) / 1000.0

    def _frames(self, conn_name: str, seconds: float) -> Iterable[Any]:
        """Frames as they come until `seconds` pass (then None), or _EOF."""
        conn = self.conn(conn_name)
        deadline = time.monotonic() + seconds
        while True:
            frame = conn.next_frame(deadline)
            yield frame
            if frame is None or frame is _EOF:
                return

    def expect_challenge(self, conn_name: str, step: Dict[str, Any]) -> None:
        """A Challenge whose server_proof shows the server knows the secret
        (spec §4.2), computed here from the formula, not by the package."""
        keys = _auth_keys(substitute(step["expect_challenge"], self.variables))
        as_expect = {"expect": {"challenge": {}}, "capture": step.get("capture", {})}
        if "within_ms" in step:
            as_expect["within_ms"] = step["within_ms"]
        challenge = self.expect(conn_name, substitute(as_expect, self.variables)).challenge
        if len(challenge.nonce) < 16:
            raise Mismatch(f"the Challenge's nonce has {len(challenge.nonce)} bytes; at least 16")
        proof = _hmac(keys["secret"], b"server" + keys["client_nonce"] + challenge.nonce)
        if not hmac.compare_digest(challenge.server_proof, proof):
            raise Mismatch("the Challenge's server_proof is not HMAC-SHA256(secret, \"server\" || "
                           "client nonce || server nonce)")

    def expect(self, conn_name: str, step: Dict[str, Any]) -> wire_pb2.Envelope:
        expected = step["expect"]
        seconds = self.within(step)
        skipped = 0
        for frame in self._frames(conn_name, seconds):
            if frame is None:
                raise Mismatch(f"nothing matching {_compact(expected)} arrived on {conn_name} within "
                               f"{seconds * 1000:.0f} ms ({skipped} heartbeats skipped)")
            if frame is _EOF:
                raise Mismatch(f"the server closed connection {conn_name} (EOF) while "
                               f"{_compact(expected)} was expected")
            why = mismatch(expected, frame)
            if why and frame.WhichOneof("kind") == "heartbeat":
                skipped += 1
                continue
            why = why or check_paths(step, frame)
            if why:
                raise Mismatch(f"expected {_compact(expected)} on {conn_name}, received "
                               f"{describe(frame)}: {why}")
            for var, path in step.get("capture", {}).items():
                message, field = resolve(path, frame, expected.get("payload_msg"))
                self.variables[var] = capture_value(message, field)
            return frame
        raise AssertionError("unreachable: _frames ends with None or _EOF")

    def expect_unordered(self, conn_name: str, expected: List[Dict[str, Any]], seconds: float) -> None:
        waiting = list(expected)
        if not waiting:
            return
        for frame in self._frames(conn_name, seconds):
            if frame is None or frame is _EOF:
                what = "arrived within %.0f ms" % (seconds * 1000) if frame is None else \
                    "arrived before the server closed the connection (EOF)"
                raise Mismatch(f"on {conn_name}, nothing matching {_compact(waiting)} {what}")
            match = next((e for e in waiting if mismatch(e, frame) is None), None)
            if match is not None:
                waiting.remove(match)
                if not waiting:
                    return
            elif frame.WhichOneof("kind") != "heartbeat":
                raise Mismatch(f"on {conn_name}, received {describe(frame)}, which matches none of "
                               f"{_compact(waiting)}")

    def expect_any(self, conn_name: str, alternatives: List[Dict[str, Any]], seconds: float) -> None:
        for frame in self._frames(conn_name, seconds):
            if frame is None or frame is _EOF:
                what = "arrived within %.0f ms" % (seconds * 1000) if frame is None else \
                    "arrived before the server closed the connection (EOF)"
                raise Mismatch(f"on {conn_name}, nothing matching any of {_compact(alternatives)} {what}")
            if any(mismatch(a, frame) is None for a in alternatives):
                return
            if frame.WhichOneof("kind") != "heartbeat":
                raise Mismatch(f"on {conn_name}, received {describe(frame)}, which matches none of "
                               f"{_compact(alternatives)}")

    def expect_quiet(self, conn_name: str, seconds: float, until_eof: bool) -> None:
        for frame in self._frames(conn_name, seconds):
            if frame is None:
                if until_eof:
                    raise Mismatch(f"connection {conn_name} still open after {seconds * 1000:.0f} ms; "
                                   f"expected the server to close it")
                return
            if frame is _EOF:
                if until_eof:
                    return
                raise Mismatch(f"the server closed connection {conn_name} (EOF) during "
                               f"{seconds * 1000:.0f} ms that should pass in silence")
            if frame.WhichOneof("kind") != "heartbeat":
                what = "EOF" if until_eof else f"silence for {seconds * 1000:.0f} ms"
                raise Mismatch(f"expected {what} on {conn_name}, received {describe(frame)}")


def _auth_keys(value: Dict[str, Any]) -> Dict[str, bytes]:
    """The base64 fields of a shared-secret step, decoded."""
    try:
        return {key: base64.b64decode(text, validate=True) for key, text in value.items()}
    except (binascii.Error, TypeError):
        raise ScenarioError(f"secret and nonces are base64, not {value!r}") from None


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _close_step(step: Dict[str, Any]) -> Dict[str, Any]:
    """expect_close as the expect step it abbreviates."""
    close = step["expect_close"]
    expected: Dict[str, Any] = {"close": {}}
    if "code" in close:
        expected["close"]["status"] = {"code": close["code"]}
    if "end_session" in close:
        expected["close"]["end_session"] = close["end_session"]
    result: Dict[str, Any] = {"expect": expected}
    if "message_contains" in close:
        result["contains"] = {"close.status.message": close["message_contains"]}
    if "within_ms" in step:
        result["within_ms"] = step["within_ms"]
    return result


def _kind(step: Dict[str, Any]) -> str:
    return next(k for k in step if k in STEP_KINDS)


def run_scenario(scenario: Scenario, url: str, default_within_ms: int = DEFAULT_WITHIN_MS,
                 tls: Optional[ssl.SSLContext] = None) -> Result:
    """Run one scenario against the server at `url`; never raises for what
    the server does (that is the Result). `tls`: the client context for a
    tls:// URL (a gevent ssl context; default: the system's CAs)."""
    run = _Run(url, default_within_ms, tls)
    start = time.monotonic()
    outcome, message, excusable = "pass", "", False
    n, step = 0, {}  # type: int, Dict[str, Any]
    try:
        for n, step in enumerate(scenario.steps, 1):
            run.step(step)
    except (Mismatch, ScenarioError, OSError) as exc:
        kind = _kind(step)
        target = step.get(kind) if kind in ("connect", "cut") else step.get("conn", "a")
        if isinstance(exc, OSError):
            why = f"socket error: {type(exc).__name__}: {exc}"
        else:
            why = f"{'mismatch' if isinstance(exc, Mismatch) else 'scenario error'}: {exc}"
        outcome, message = "fail", f"step {n} ({kind} on {target}): {why}"
        # A known deviation excuses what the server sent, not a broken
        # scenario or a server that cannot be reached.
        excusable = isinstance(exc, Mismatch)
    finally:
        run.close()
    if scenario.expected_failure:
        if outcome == "pass":
            outcome = "xpass"
        elif excusable:
            outcome = "xfail"
    return Result(scenario.name, outcome, message, time.monotonic() - start)


def run_all(scenarios: Iterable[Scenario], url: str,
            report: Optional[Callable[[Result], None]] = None,
            default_within_ms: int = DEFAULT_WITHIN_MS,
            tls: Optional[ssl.SSLContext] = None) -> Tuple[List[Result], bool]:
    """Run scenarios one after the other; (results, whether all are ok)."""
    results = []
    for scenario in scenarios:
        result = run_scenario(scenario, url, default_within_ms, tls)
        results.append(result)
        if report is not None:
            report(result)
    return results, all(r.ok for r in results)
