"""unix:///abs/path.sock — Unix domain sockets, owner-only, peer credentials from the kernel."""
from __future__ import annotations

import errno
import os
import socket
import stat
import struct
from typing import Optional
from urllib.parse import SplitResult

from ..errors import TransportError
from .base import Listener, PeerCredentials, Stream, Transport
from .sockets import SocketListener, SocketStream, connect_socket

__all__ = ["UnixTransport"]

# Owner-only: other local users can neither connect nor see traffic.
SOCKET_MODE = 0o600
_UCRED = struct.Struct("3i")


def _path(url: SplitResult) -> str:
    if url.netloc or not url.path.startswith("/"):
        raise ValueError(f"unix URL needs an absolute path, as unix:///run/app.sock: "
                         f"{url.geturl()!r}")
    return url.path


def _credentials(sock: socket.socket) -> Optional[PeerCredentials]:
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None
    return PeerCredentials(*_UCRED.unpack(raw))


def _remove_stale(path: str) -> None:
    """Remove a socket file no server listens on; refuse anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise TransportError(errno.EEXIST, f"{path} exists and is not a socket; not removing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)  # a live server answers at once
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # stale: left behind by a server that died
        return
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise TransportError(errno.EADDRINUSE, f"another server is listening on {path}")


class UnixTransport(Transport):
    def connect(self, url: SplitResult, timeout: Optional[float]) -> Stream:
        path = _path(url)
        sock = connect_socket(socket.AF_UNIX, path, timeout)
        return SocketStream(sock, path, _credentials(sock))

    def listen(self, url: SplitResult) -> Listener:
        path = _path(url)
        _remove_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the file is born owner-only: no window
        try:
            sock.bind(path)
            os.chmod(path, SOCKET_MODE)
            sock.listen(socket.SOMAXCONN)
        except BaseException:
            sock.close()
            raise
        finally:
            os.umask(old_umask)
        inode = os.stat(path).st_ino

        def unlink_if_ours() -> None:
            try:
                if os.stat(path).st_ino == inode:
                    os.unlink(path)
            except OSError:
                pass

        def make_stream(conn: socket.socket, _addr) -> Stream:
            return SocketStream(conn, path, _credentials(conn))

        return SocketListener(sock, f"unix://{path}", make_stream, unlink_if_ours)
