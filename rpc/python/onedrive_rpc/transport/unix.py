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


def _unlink_if(path: str, inode: int) -> None:
    """Unlink `path` if it is still the file `inode` (not a successor's)."""
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass


def _listen_error(path: str, exc: OSError) -> TransportError:
    """`exc`, from listening on `path`, as a TransportError that names the path."""
    code = exc.errno or errno.EINVAL
    if code == errno.ENOENT:
        why = f"its directory {os.path.dirname(path)} does not exist"
    elif code in (errno.EACCES, errno.EPERM):
        why = f"permission denied in {os.path.dirname(path)}"
    else:
        why = exc.strerror or str(exc)
    return TransportError(code, f"cannot listen on {path}: {why}")


def _remove_stale(path: str) -> None:
    """Remove a socket file no server listens on; refuse anything else.

    Stale means a connect is refused: no socket listens there any more. Any
    other answer (accepted; EAGAIN from a full backlog of a frozen or busy
    server; permission denied...) may be a live server, whose path we keep.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _listen_error(path, exc) from exc
    if not stat.S_ISSOCK(st.st_mode):
        raise TransportError(errno.EEXIST, f"{path} exists and is not a socket; not removing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.setblocking(False)  # a unix connect answers at once; it never waits here
        err = probe.connect_ex(path)
    except OSError as exc:  # e.g. a path too long for a socket address
        raise _listen_error(path, exc) from exc
    finally:
        probe.close()
    if err == errno.ECONNREFUSED:
        try:
            os.unlink(path)  # stale: left behind by a server that died
        except FileNotFoundError:
            pass
        return
    if err == errno.ENOENT:
        return  # gone meanwhile
    if err == 0:
        raise TransportError(errno.EADDRINUSE, f"another server is listening on {path}")
    raise TransportError(errno.EADDRINUSE, (
        f"cannot listen on {path}: another server may be alive there (a connect to it "
        f"failed with {errno.errorcode.get(err, err)}: {os.strerror(err)}, not refused); "
        f"not removing it"))


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
        inode: Optional[int] = None
        try:
            sock.bind(path)
            inode = os.stat(path).st_ino
            os.chmod(path, SOCKET_MODE)
            sock.listen(socket.SOMAXCONN)
        except BaseException as exc:
            sock.close()
            if inode is not None:
                _unlink_if(path, inode)
            if isinstance(exc, OSError):
                raise _listen_error(path, exc) from exc
            raise
        finally:
            os.umask(old_umask)
        ours: int = inode

        def unlink_if_ours() -> None:
            _unlink_if(path, ours)

        def make_stream(conn: socket.socket, _addr) -> Stream:
            return SocketStream(conn, path, _credentials(conn))

        return SocketListener(sock, f"unix://{path}", make_stream, unlink_if_ours)
