"""The two sides of a call as user code sees them: the Context a handler
gets, the CallFuture a caller holds, and the outcome of a call."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from gevent import getcurrent
from gevent.event import AsyncResult, Event
from google.protobuf.message import DecodeError

from .core import events as ev
from .errors import PeerLost, RpcError, StatusCode

if TYPE_CHECKING:
    from .driver import Connection

__all__ = ["CallAborted", "Context", "DEFAULT_STREAM_WINDOW", "CallFuture", "TIMED_OUT",
           "call_result", "fresh"]

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


class Context:
    """An incoming call, stream, notification or task being served, as its
    handler sees it.

    `method`, `metadata`, `deadline` (monotonic seconds, or None), `peer`
    (the caller's identity), `address`, `credentials` (unix sockets),
    `time_remaining()`, `cancelled`, and for work queue tasks `attempt`
    (1 the first time a task is delivered).
    """

    __slots__ = ("connection", "call_id", "method", "metadata", "deadline",
                 "greenlet", "timer", "abort", "done", "streaming", "credit",
                 "credit_event", "one_way", "attempt")

    def __init__(self, connection: "Connection", call_id: int, method: str,
                 metadata: Mapping[str, str], deadline: Optional[float] = None,
                 initial_credit: int = 0, one_way: bool = False) -> None:
        self.connection = connection
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
        return self.connection.session.peer

    @property
    def address(self) -> str:
        return self.connection.stream.address

    @property
    def credentials(self) -> Any:
        return self.connection.stream.credentials

    @property
    def cancelled(self) -> bool:
        """True once the caller cancelled, the deadline passed or the peer left."""
        return self.abort is not None

    def time_remaining(self) -> Optional[float]:
        """Seconds left before the caller's deadline; None if it set none."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - _monotonic())


class CallFuture:
    """The pending result of a call: `get(timeout)` returns it or raises RpcError.

    Like gevent's AsyncResult: `get(block, timeout)` raises gevent.Timeout if
    the result is not there in time (the call itself goes on until its own
    deadline); `ready()`, `successful()`, `exception`, `rawlink()`.
    """

    __slots__ = ("_connection", "_call_id", "_decode", "_result", "_timer")

    def __init__(self, connection: "Connection", call_id: int,
                 decode: Callable[[Any], Any]) -> None:
        self._connection = connection
        self._call_id = call_id
        self._decode = decode
        self._result = AsyncResult()
        self._timer = None

    def switch(self, result: Any) -> None:
        # Called from the hub with a ResponseReceived, an RpcError or TIMED_OUT.
        if self._result.ready():
            return
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        if result is TIMED_OUT:
            self._connection._abandon(self._call_id, "deadline exceeded")
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
        self._connection._abandon(self._call_id, reason)
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
                       result.details or None)
    if isinstance(result, RpcError):
        raise result
    raise TypeError(f"unexpected call outcome {result!r}")


def fresh(error: RpcError) -> RpcError:
    """A new exception equal to `error`: one instance per raise keeps tracebacks apart."""
    if isinstance(error, PeerLost):
        return PeerLost(error.message, error.details)
    return RpcError(error.code, error.message, error.details)
