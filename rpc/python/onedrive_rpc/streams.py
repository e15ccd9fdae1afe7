"""The caller's side of a server stream: items arrive into a receiver the
connection feeds; the user iterates a ServerStream over it.

Flow control: the caller grants the server `window` items up front and
grants more as it consumes them (half a window at a time), so at most one
window of items ever waits here, however fast the server produces.

The connection holds only the receiver, never the ServerStream: when user
code drops the iterator (a `break` out of its for loop), the ServerStream
is collected and cancels the stream on the server.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Generic, Iterator, List, Optional, TypeVar

from gevent.event import Event
from google.protobuf.message import DecodeError

from .calls import TIMED_OUT, CallLink, call_result
from .core import events as ev
from .errors import RpcError, StatusCode

__all__ = ["ServerStream", "StreamReceiver"]

ItemT = TypeVar("ItemT")


class StreamReceiver:
    """What the connection feeds for one stream call; it gives up and
    grants credit through its `link`."""

    __slots__ = ("link", "call_id", "method", "items", "end", "event", "timer",
                 "consumed", "grant_every", "window")

    def __init__(self, link: CallLink, method: str, window: int) -> None:
        self.link = link
        self.call_id = 0
        self.method = method
        self.items: Deque[Any] = deque()
        # The final outcome: a ResponseReceived (OK or error) or an RpcError.
        self.end: Any = None
        self.event = Event()
        self.timer: Any = None
        self.consumed = 0
        self.window = window
        self.grant_every = max(1, window // 2)

    def item(self, payload: Any) -> None:
        # From the connection's reader.
        if self.end is not None:
            return
        if len(self.items) >= self.window:
            # More than the credit we granted: a broken peer must not make
            # memory grow. The stream ends here, with the items before.
            self.link.abandon(self.call_id, "sent past the stream window")
            self.switch(RpcError(StatusCode.INTERNAL,
                                 f"the peer sent more than the stream window of {self.window} "
                                 f"items of {self.method}"))
            return
        self.items.append(payload)
        self.event.set()

    def switch(self, result: Any) -> None:
        # From the hub: the stream ended (StreamEnd, an error, or TIMED_OUT).
        if self.end is not None:
            return
        if self.timer is not None:
            self.timer.close()
            self.timer = None
        if result is TIMED_OUT:
            self.link.expire(self.call_id)
            result = RpcError(StatusCode.DEADLINE_EXCEEDED,
                              f"deadline exceeded reading the stream of {self.method}")
        self.end = result
        self.event.set()

    def cancel(self, reason: str) -> bool:
        if self.end is not None:
            return False
        self.link.abandon(self.call_id, reason)
        self.items.clear()  # the caller wants no more
        self.switch(RpcError(StatusCode.CANCELLED, reason))
        return True


#: `when_done`'s callback: (the error it ended with, or None; items read).
StreamWatcher = Callable[[Optional[BaseException], int], None]


class ServerStream(Generic[ItemT]):
    """The items of a server stream: `for item in client.watch(request)`.

    Ends with StopIteration when the server finishes, raises RpcError when
    it fails, the deadline passes or the peer is lost. Leaving the loop
    early cancels the stream on the server, as do `cancel()` and leaving a
    `with` block; keep a reference without finishing it and it stays open.
    """

    __slots__ = ("_receiver", "_decode", "_taken", "_watchers", "__weakref__")

    def __init__(self, receiver: StreamReceiver, decode: Callable[[Any], ItemT]) -> None:
        self._receiver = receiver
        self._decode = decode
        #: Items handed to the caller.
        self._taken = 0
        #: when_done callbacks not called yet (None: none, or called).
        self._watchers: Optional[List[StreamWatcher]] = None

    def __iter__(self) -> Iterator[ItemT]:
        return self

    def __next__(self) -> ItemT:
        receiver = self._receiver
        while True:
            if receiver.items:
                payload = receiver.items.popleft()
                receiver.consumed += 1
                if receiver.consumed >= receiver.grant_every and receiver.end is None:
                    receiver.link.grant(receiver.call_id, receiver.consumed)
                    receiver.consumed = 0
                try:
                    item = self._decode(payload)
                except DecodeError as exc:
                    receiver.cancel("a stream item did not parse")
                    bad = RpcError(StatusCode.INTERNAL,
                                   f"a stream item of {receiver.method} does not parse: {exc}")
                    self._finished(bad)
                    raise bad from None
                self._taken += 1
                return item
            if receiver.end is not None:
                ended = self._outcome()
                self._finished(ended)
                if ended is None:
                    raise StopIteration
                raise ended
            receiver.event.clear()
            receiver.event.wait()

    def when_done(self, callback: "StreamWatcher") -> None:
        """Call `callback(error, items)` once, when the caller is done with
        the stream: its last item read (error None), its error raised,
        cancelled (CANCELLED) or dropped unfinished; `items`: how many it
        read. For interceptors that time or trace a stream."""
        if self._watchers is None:
            self._watchers = []
        self._watchers.append(callback)

    def _finished(self, error: Optional[BaseException]) -> None:
        watchers, self._watchers = self._watchers, None
        for callback in watchers or ():
            callback(error, self._taken)

    @property
    def done(self) -> bool:
        """True once the stream ended, whatever the reason."""
        return self._receiver.end is not None

    def cancel(self, reason: str = "cancelled by the caller") -> bool:
        """Stop the stream: the server's handler is stopped, iterating
        raises CANCELLED. False if it had already ended."""
        cancelled = self._receiver.cancel(reason)
        if self._watchers:
            self._finished(RpcError(StatusCode.CANCELLED, reason) if cancelled
                           else self._outcome())
        return cancelled

    def _outcome(self) -> Optional[RpcError]:
        """How the stream ended, once it has (None: OK, or not yet)."""
        end = self._receiver.end
        if end is None or (type(end) is ev.ResponseReceived and end.code == 0):
            return None
        try:
            call_result(end, self._decode)  # raises the end's RpcError
        except RpcError as exc:
            return exc
        return None  # pragma: no cover (an OK end is handled above)

    close = cancel

    def __enter__(self) -> "ServerStream[ItemT]":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.cancel("the caller left the stream")

    def __del__(self) -> None:
        receiver = getattr(self, "_receiver", None)
        if receiver is not None and (receiver.end is None or getattr(self, "_watchers", None)):
            self.cancel("the caller stopped reading the stream")

    def __repr__(self) -> str:
        state = "done" if self.done else "open"
        return f"<ServerStream {self._receiver.method} call {self._receiver.call_id} {state}>"
