"""The two sides of a call as user code sees them: the Context a handler
gets, the CallFuture a caller holds, and the outcome of a call.

Neither knows the connection it belongs to: each talks to it through a
small link declared here (`ReplyLink` for a handler's answers, `CallLink`
for a caller giving up or granting stream credit), which the driver
implements. That keeps this module below the driver.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional, Protocol

from gevent import getcurrent
from gevent.event import AsyncResult, Event
from google.protobuf.message import DecodeError

from .core import events as ev
from .core.framing import Payload
from .errors import PeerLost, RpcError, StatusCode
from .logs import fields, who

__all__ = ["CallAborted", "CallLink", "CallOrigin", "Context", "DEFAULT_STREAM_WINDOW", "Identity",
           "CallFuture", "ReplyLink", "TIMED_OUT", "call_result", "fresh"]

_monotonic = time.monotonic

#: What a call's timer delivers when its deadline passes.
TIMED_OUT = object()


class CallAborted(BaseException):
    """Raised inside a handler whose call was cancelled or ran out of time.

    A BaseException, like GreenletExit, so `except Exception` in user code
    does not swallow it.
    """

    def __init__(self, code: StatusCode, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


#: Items a server stream may send before its caller grants more, when the
#: caller did not say (Request.initial_credit = 0).
DEFAULT_STREAM_WINDOW = 64


class ReplyLink(Protocol):
    """What a handler's Context sends its answers through (the driver's
    incoming calls)."""

    def respond(self, call: "Context", payload: Payload) -> None:
        """Answer `call` with OK and `payload` (the end, for a stream)."""

    def send_item(self, call: "Context", payload: Payload) -> None:
        """Send one item of server stream `call`, waiting for the caller's
        credit; raises CallAborted once the stream was cancelled."""


class CallLink(Protocol):
    """What a caller-side object (CallFuture, a stream's receiver) may ask
    of the connection its call went out on."""

    def abandon(self, call_id: int, reason: str) -> None:
        """The caller gave up on `call_id`: forget it, tell the server."""

    def expire(self, call_id: int) -> None:
        """`call_id`'s deadline passed here: abandon it, telling the server
        why (its own timer may not have fired yet)."""

    def grant(self, call_id: int, items: int) -> None:
        """Stream `call_id` may send `items` more."""


class Identity(NamedTuple):
    """Who the peer is, as far as this side checked it (what authorization
    should look at; `peer`, from its Hello, is only what it says).

    `method`: "shared-secret" (it proved it knows the server's secret:
    everyone who holds it is the same identity, `subject` is ""), "tls"
    (a verified client certificate: `subject` is its subject, e.g.
    "commonName=tray"), "unix"
    (the kernel says which user connected: `subject` is "uid <n>") or
    "none" (nothing was checked).
    """

    method: str
    subject: str = ""

    @property
    def label(self) -> str:
        """For people: "unix uid 1000", "tls commonName=tray", "none"."""
        return f"{self.method} {self.subject}".strip()

    @classmethod
    def of(cls, authenticated: bool, credentials: Any,
           certificate: Optional[Dict[str, Any]] = None) -> "Identity":
        """The identity of a connection: its handshake's proof, else its
        verified TLS client certificate's subject, else its kernel-checked
        credentials, else none."""
        if authenticated:
            return cls("shared-secret")
        if certificate:
            subject = ",".join(f"{key}={value}" for rdn in certificate.get("subject", ())
                               for key, value in rdn)
            return cls("tls", subject)
        if credentials is not None:
            return cls("unix", f"uid {credentials.uid}")
        return ANONYMOUS


ANONYMOUS = Identity("none")


class CallOrigin(NamedTuple):
    """Who a call came from, as its handler sees it: the same for every
    call of one connection."""

    peer: Optional[ev.PeerInfo]
    address: str
    credentials: Any
    identity: Identity = ANONYMOUS
    #: The client's certificate (tls:// with one), as ssl's getpeercert()
    #: decodes it: "subject", "issuer", "notAfter", ...; else None.
    certificate: Optional[Dict[str, Any]] = None
    session_id: str = ""

    @property
    def who(self) -> str:
        """The peer in a log line: name, session, address."""
        return who(self.peer, self.session_id, self.address)

    @property
    def fields(self) -> Dict[str, str]:
        """The peer as log record attributes (extra=): peer, session_id, peer_address."""
        return fields(self.peer, self.session_id, self.address)


class Context:
    """An incoming call, stream, notification or task being served, as its
    handler sees it.

    `method`, `metadata`, `deadline` (monotonic seconds, or None), `peer`
    (who the caller says it is, from its Hello), `identity` (who it proved
    to be: Identity), `address`, `credentials` (unix sockets),
    `certificate` (tls:// with a client certificate),
    `time_remaining()`, `cancelled`, and for work queue tasks `attempt`
    (1 the first time a task is delivered).
    """

    __slots__ = ("link", "origin", "call_id", "method", "metadata", "deadline",
                 "greenlet", "timer", "abort", "done", "streaming", "credit",
                 "credit_event", "one_way", "attempt")

    def __init__(self, link: ReplyLink, origin: CallOrigin, call_id: int, method: str,
                 metadata: Mapping[str, str], deadline: Optional[float] = None,
                 initial_credit: int = 0, one_way: bool = False) -> None:
        self.link = link
        self.origin = origin
        self.call_id = call_id
        self.method = method
        self.metadata = metadata
        self.deadline = deadline
        self.greenlet = getcurrent()
        self.timer: Any = None
        self.abort: Optional[CallAborted] = None
        self.done = False
        #: Set once the handler turned out to be a server stream.
        self.streaming = False
        #: Stream items we may still send before the caller grants more.
        self.credit = initial_credit or DEFAULT_STREAM_WINDOW
        self.credit_event: Optional[Event] = None
        #: A notification: nobody waits for an answer.
        self.one_way = one_way
        self.attempt = 0

    @property
    def peer(self) -> Optional[ev.PeerInfo]:
        return self.origin.peer

    @property
    def address(self) -> str:
        return self.origin.address

    @property
    def credentials(self) -> Any:
        return self.origin.credentials

    @property
    def identity(self) -> Identity:
        return self.origin.identity

    @property
    def certificate(self) -> Optional[Dict[str, Any]]:
        """The caller's verified TLS certificate (see CallOrigin), or None."""
        return self.origin.certificate

    @property
    def cancelled(self) -> bool:
        """True once the caller cancelled, the deadline passed or the peer left."""
        return self.abort is not None

    def time_remaining(self) -> Optional[float]:
        """Seconds left before the caller's deadline; None if it set none."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - _monotonic())

    def reply(self, payload: Payload) -> None:
        """Answer OK with serialized `payload` (a stream: end it)."""
        self.link.respond(self, payload)

    def send_item(self, payload: Payload) -> None:
        """Send one serialized item of this server stream, as the caller's
        credit allows; raises CallAborted once it was cancelled."""
        self.link.send_item(self, payload)


class CallFuture:
    """The pending result of a call: `get(timeout)` returns it or raises RpcError.

    Like gevent's AsyncResult: `get(block, timeout)` raises gevent.Timeout if
    the result is not there in time (the call itself goes on until its own
    deadline); `ready()`, `successful()`, `exception`, `rawlink()`.
    """

    __slots__ = ("_link", "call_id", "_decode", "_result", "_timer")

    def __init__(self, link: CallLink, decode: Callable[[Any], Any]) -> None:
        self._link = link
        #: Set by the connection once the request is on its way.
        self.call_id = 0
        self._decode = decode
        self._result = AsyncResult()
        self._timer: Any = None

    def expire_after(self, loop: Any, timeout: float) -> None:
        """Fail with DEADLINE_EXCEEDED unless answered within `timeout`s."""
        self._timer = timer = loop.timer(timeout)
        timer.start(self.switch, TIMED_OUT)

    def switch(self, result: Any) -> None:
        # Called from the hub with a ResponseReceived, an RpcError or TIMED_OUT.
        if self._result.ready():
            return
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        if result is TIMED_OUT:
            self._link.expire(self.call_id)
            result = RpcError(StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
        try:
            value = call_result(result, self._decode)
        except RpcError as exc:
            self._result.set_exception(exc)
        else:
            self._result.set(value)

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        return self._result.get(block, timeout)

    def ready(self) -> bool:
        return self._result.ready()

    def successful(self) -> bool:
        return self._result.successful()

    @property
    def exception(self) -> Optional[BaseException]:
        return self._result.exception

    def rawlink(self, callback: Callable[[Any], None]) -> None:
        """Call `callback(async_result)` once the outcome is known."""
        self._result.rawlink(callback)

    def cancel(self, reason: str = "cancelled by the caller") -> bool:
        """Give up on the call: the server is told, get() raises CANCELLED."""
        if self._result.ready():
            return False
        self._link.abandon(self.call_id, reason)
        self.switch(RpcError(StatusCode.CANCELLED, reason))
        return True


def call_result(result: Any, decode: Callable[[Any], Any]) -> Any:
    """Turn what the reader delivered into the decoded reply, or raise."""
    if type(result) is ev.ResponseReceived:
        if result.code == 0:
            try:
                return decode(result.payload)
            except DecodeError as exc:
                raise RpcError(StatusCode.INTERNAL,
                               f"the response does not parse: {exc}") from None
        raise RpcError(StatusCode.from_wire(result.code), result.message,
                       result.details or None, result.violations)
    if isinstance(result, RpcError):
        raise result
    raise TypeError(f"unexpected call outcome {result!r}")


def fresh(error: RpcError) -> RpcError:
    """A new exception equal to `error`: one instance per raise keeps tracebacks apart."""
    if isinstance(error, PeerLost):
        return PeerLost(error.message, error.details)
    return RpcError(error.code, error.message, error.details, error.violations)
