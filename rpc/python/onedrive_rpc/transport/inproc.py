"""inproc://name — in-memory streams between greenlets of one process.

Behaves like a socket pair with a bounded kernel buffer: a writer that gets
ahead of its reader by PIPE_CAPACITY bytes waits, so memory stays bounded.
"""
from __future__ import annotations

import errno
from typing import Deque, Dict, Optional, Sequence
from collections import deque
from urllib.parse import SplitResult

from gevent.event import Event

from ..errors import TransportError
from .base import Buffer, ConnectionClosed, Listener, Stream, Transport

__all__ = ["InprocTransport", "PIPE_CAPACITY"]

# Bytes one direction buffers before the writer must wait: about what a
# loopback socket buffers, so inproc tests see backpressure like tcp.
PIPE_CAPACITY = 4 * 1024 * 1024

_LISTENERS: Dict[str, "InprocListener"] = {}


class _Pipe:
    """One direction: bytes written by one end, read by the other."""

    __slots__ = ("data", "eof", "readable", "writable")

    def __init__(self) -> None:
        self.data = bytearray()
        self.eof = False
        self.readable = Event()
        self.writable = Event()
        self.writable.set()


class InprocStream(Stream):
    def __init__(self, inbound: _Pipe, outbound: _Pipe, address: str) -> None:
        self._in = inbound
        self._out = outbound
        self.address = address
        self._closed = False

    def recv_into(self, buffer: memoryview) -> int:
        pipe = self._in
        while not pipe.data:
            if self._closed:
                raise ConnectionClosed("stream closed")
            if pipe.eof:
                return 0
            pipe.readable.clear()
            pipe.readable.wait()
        n = min(len(buffer), len(pipe.data))
        buffer[:n] = pipe.data[:n]
        del pipe.data[:n]
        pipe.writable.set()
        return n

    def send_nowait(self, buffers: Sequence[Buffer]) -> int:
        pipe = self._out
        if self._closed:
            raise ConnectionClosed("stream closed")
        if pipe.eof:
            raise ConnectionClosed("connection broken: peer closed")
        sent = 0
        for buf in buffers:
            room = PIPE_CAPACITY - len(pipe.data)
            if room <= 0:
                break
            chunk = memoryview(buf)[:room]
            pipe.data += chunk
            sent += len(chunk)
        if sent:
            pipe.readable.set()
        return sent

    def wait_writable(self) -> None:
        pipe = self._out
        while len(pipe.data) >= PIPE_CAPACITY and not pipe.eof and not self._closed:
            pipe.writable.clear()
            pipe.writable.wait()
        if self._closed:
            raise ConnectionClosed("stream closed")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for pipe in (self._in, self._out):
            pipe.eof = True
            pipe.readable.set()
            pipe.writable.set()


class InprocListener(Listener):
    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"inproc://{name}"
        self._backlog: Deque[InprocStream] = deque()
        self._ready = Event()
        self._closed = False
        self._count = 0

    def connect_pair(self) -> InprocStream:
        """A new connection to this listener: its client end, returned; its
        server end, handed to accept()."""
        if self._closed:
            raise TransportError(errno.ECONNREFUSED, f"nobody listens on {self.url}")
        self._count += 1
        up, down = _Pipe(), _Pipe()
        client = InprocStream(down, up, self.url)
        self._backlog.append(InprocStream(up, down, f"{self.url}#{self._count}"))
        self._ready.set()
        return client

    def accept(self) -> Stream:
        while not self._backlog:
            if self._closed:
                raise ConnectionClosed("listener closed")
            self._ready.clear()
            self._ready.wait()
        return self._backlog.popleft()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if _LISTENERS.get(self.name) is self:
            del _LISTENERS[self.name]
        while self._backlog:
            self._backlog.popleft().close()
        self._ready.set()


def _name(url: SplitResult) -> str:
    name = url.netloc + url.path
    if not name:
        raise ValueError(f"inproc URL needs a name, as inproc://daemon: {url.geturl()!r}")
    return name


class InprocTransport(Transport):
    def connect(self, url: SplitResult, timeout: Optional[float]) -> Stream:
        name = _name(url)
        listener = _LISTENERS.get(name)
        if listener is None:
            raise TransportError(errno.ECONNREFUSED, f"nobody listens on inproc://{name}")
        return listener.connect_pair()

    def listen(self, url: SplitResult) -> Listener:
        name = _name(url)
        if name in _LISTENERS:
            raise TransportError(errno.EADDRINUSE, f"inproc://{name} is already in use")
        listener = _LISTENERS[name] = InprocListener(name)
        return listener
