"""Streams and listeners over OS sockets, waited on with gevent's hub.

Sockets are plain non-blocking `socket.socket`s; a greenlet that must wait
parks on a gevent io watcher (`hub.wait`), so nothing is monkey-patched and a
hub callback can write without ever blocking.
"""
from __future__ import annotations

import errno
import os
import socket
from typing import Callable, Optional, Sequence

import gevent
from gevent.hub import get_hub

from ..errors import TransportError
from .base import Buffer, ConnectionClosed, Listener, PeerCredentials, Stream

__all__ = ["SocketStream", "SocketListener", "connect_socket"]

_READ = 1
_WRITE = 2
# sendmsg takes at most IOV_MAX (1024 on Linux) buffers per call.
_MAX_IOV = 512


def _closed(what: str = "stream closed") -> ConnectionClosed:
    return ConnectionClosed(what)


class SocketStream(Stream):
    """A connected socket. Errors from the peer surface as ConnectionClosed."""

    def __init__(self, sock: socket.socket, address: str,
                 credentials: Optional[PeerCredentials] = None) -> None:
        sock.setblocking(False)
        self._sock = sock
        self.address = address
        self.credentials = credentials
        self._hub = get_hub()
        loop = self._hub.loop
        fd = sock.fileno()
        self._read_watcher = loop.io(fd, _READ)
        self._write_watcher = loop.io(fd, _WRITE)
        #: Every watcher of this stream: close() wakes their waiters.
        self._watchers = [self._read_watcher, self._write_watcher]
        self._closed = False

    def recv_into(self, buffer: memoryview) -> int:
        while True:
            try:
                return self._sock.recv_into(buffer)
            except BlockingIOError:
                pass
            except OSError as exc:
                if self._closed:
                    raise _closed() from None
                raise ConnectionClosed(f"connection broken: {exc}") from exc
            self._wait(self._read_watcher)

    def send_nowait(self, buffers: Sequence[Buffer]) -> int:
        if self._closed:
            raise _closed()
        try:
            if len(buffers) == 1:
                return self._sock.send(buffers[0])
            return self._sock.sendmsg(buffers[:_MAX_IOV])
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise ConnectionClosed(f"connection broken: {exc}") from exc

    def wait_writable(self) -> None:
        self._wait(self._write_watcher)

    def _wait(self, watcher) -> None:
        if self._closed:
            raise _closed()
        self._hub.wait(watcher)
        if self._closed:
            raise _closed()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for watcher in self._watchers:
            if watcher.callback is not None:
                # Wake whoever waits on it, with the error, at the next loop pass.
                self._hub.cancel_wait(watcher, _closed(), True)
            else:
                watcher.close()
        try:
            self._sock.close()
        except OSError:
            pass

    def detach(self) -> None:
        # In a forked child: no waking of greenlets, no shutdown (that would
        # end the parent's connection too); just let go of the descriptor.
        self._closed = True
        for watcher in self._watchers:
            watcher.close()
        self._sock.close()

    def shutdown_write(self) -> None:
        """Half-close: the peer reads EOF after what we sent."""
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class SocketListener(Listener):
    """A listening socket; `make_stream` turns an accepted socket into a Stream."""

    def __init__(self, sock: socket.socket, url: str,
                 make_stream: Callable[[socket.socket, object], Stream],
                 on_close: Optional[Callable[[], None]] = None) -> None:
        sock.setblocking(False)
        self._sock = sock
        self.url = url
        self._make_stream = make_stream
        self._on_close = on_close
        self._hub = get_hub()
        self._watcher = self._hub.loop.io(sock.fileno(), _READ)
        self._closed = False

    def accept(self) -> Stream:
        while True:
            if self._closed:
                raise _closed("listener closed")
            try:
                conn, addr = self._sock.accept()
            except BlockingIOError:
                self._hub.wait(self._watcher)
                continue
            except OSError as exc:
                if self._closed:
                    raise _closed("listener closed") from None
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: back off instead of spinning.
                    gevent.sleep(0.05)
                    continue
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                    continue
                raise
            return self._make_stream(conn, addr)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watcher.callback is not None:
            self._hub.cancel_wait(self._watcher, _closed("listener closed"), True)
        else:
            self._watcher.close()
        self._sock.close()
        if self._on_close is not None:
            self._on_close()

    def detach(self) -> None:
        # In a forked child: the socket file and the listening socket stay
        # the parent's; only our descriptor goes.
        self._closed = True
        self._watcher.close()
        self._sock.close()


def connect_socket(family: int, address, timeout: Optional[float]) -> socket.socket:
    """Connect a non-blocking socket, waiting cooperatively up to `timeout`."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        err = sock.connect_ex(address)
        if err == errno.EAGAIN and family == socket.AF_UNIX:
            # Not "in progress": the server's listen backlog is full, and the
            # socket is left unconnected (only a blocking connect would wait).
            raise TransportError(err, f"cannot connect to {address}: its listen backlog is full "
                                      f"(the server is not accepting: busy or frozen)")
        if err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            hub = get_hub()
            watcher = hub.loop.io(sock.fileno(), _WRITE)
            try:
                with gevent.Timeout(timeout, TransportError(
                        errno.ETIMEDOUT, f"connecting to {address} timed out after {timeout}s")):
                    hub.wait(watcher)
            finally:
                watcher.close()
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise TransportError(err, f"cannot connect to {address}: {os.strerror(err)}")
        return sock
    except BaseException:
        sock.close()
        raise
