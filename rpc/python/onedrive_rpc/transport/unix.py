"""unix:///abs/path.sock — Unix domain sockets, owner-only, peer credentials from the kernel.

Who owns a path: a listening server holds an advisory lock (flock) on
`<path>.lock` for as long as it listens. Another server that finds the lock
held refuses the path at once, whatever state the owner is in (busy, frozen
with a full backlog, its socket file deleted). A free lock means the owner is
gone (the kernel drops a flock when its process dies), so a socket file left
there is stale and is replaced. A socket file with no lock beside it, from an
older version or another program, is probed: it is stale only if a connect is
refused. A clean close unlinks the socket file and then the lock file (each
only if it is still ours), then lets go of the lock.

Fork: the lock belongs to the open file description, which a forked child
shares. The child only closes its copy of the descriptor (detach): that does
not release the parent's lock (flock(LOCK_UN) from the child would, so it is
never called there) and unlinks nothing. The descriptor is close-on-exec, so
a program the process execs does not inherit the lock either.
"""
from __future__ import annotations

import errno
import fcntl
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
LOCK_SUFFIX = ".lock"
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


class _PathLock:
    """The exclusive flock on `<path>.lock` that says a live server owns `path`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock_path = path + LOCK_SUFFIX
        self._fd = -1
        self._inode = -1
        for _ in range(16):
            if self._try_acquire():
                return
        raise TransportError(errno.EAGAIN, f"cannot listen on {path}: its lock file {self.lock_path} "
                                           f"keeps being replaced by other servers")

    def _try_acquire(self) -> bool:
        """True with the lock held; False if the locked file was unlinked meanwhile."""
        path, lock_path = self.path, self.lock_path
        # O_NOFOLLOW: not through a symlink planted there; O_NONBLOCK: never
        # hang opening a FIFO someone put in its place (refused below).
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(lock_path, flags, 0o600)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise _listen_error(path, exc) from exc
            raise TransportError(exc.errno or errno.EINVAL, f"cannot listen on {path}: cannot create "
                                 f"or open its lock file {lock_path}: {exc.strerror or exc}") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise TransportError(errno.EEXIST, f"cannot listen on {path}: its lock file {lock_path} "
                                     f"is not a regular file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TransportError(errno.EADDRINUSE, f"cannot listen on {path}: another server holds "
                                     f"it (its lock {lock_path} is held)") from None
            except OSError as exc:
                raise TransportError(exc.errno or errno.EINVAL, f"cannot listen on {path}: cannot lock "
                                     f"{lock_path}: {exc.strerror or exc}") from exc
            # A server closing unlinks its lock file before letting go of the
            # lock: the file locked must still be the one at lock_path.
            try:
                current = os.stat(lock_path)
            except FileNotFoundError:
                current = None
            if current is None or (current.st_dev, current.st_ino) != (st.st_dev, st.st_ino):
                os.close(fd)
                return False
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._inode = fd, st.st_ino
        return True

    def release(self) -> None:
        """Unlink the lock file (if still ours), then let go of the lock."""
        if self._fd < 0:
            return
        _unlink_if(self.lock_path, self._inode)
        os.close(self._fd)  # the last descriptor of its file description: unlocks
        self._fd = -1

    def detach(self) -> None:
        """In a forked child: close our copy only; the parent keeps the lock and the file."""
        if self._fd < 0:
            return
        os.close(self._fd)  # never LOCK_UN here: that would unlock the parent's too
        self._fd = -1


class UnixListener(SocketListener):
    """A SocketListener that also holds, and in the end gives up, its path's lock."""

    def __init__(self, sock: socket.socket, path: str, lock: _PathLock, inode: int) -> None:
        super().__init__(sock, f"unix://{path}", self._make_stream, self._remove_files)
        self.path = path
        self._lock = lock
        self._inode = inode

    def _make_stream(self, conn: socket.socket, _addr) -> Stream:
        return SocketStream(conn, self.path, _credentials(conn))

    def _remove_files(self) -> None:
        _unlink_if(self.path, self._inode)
        self._lock.release()

    def detach(self) -> None:
        super().detach()
        self._lock.detach()


class UnixTransport(Transport):
    def connect(self, url: SplitResult, timeout: Optional[float]) -> Stream:
        path = _path(url)
        sock = connect_socket(socket.AF_UNIX, path, timeout)
        return SocketStream(sock, path, _credentials(sock))

    def listen(self, url: SplitResult) -> Listener:
        path = _path(url)
        lock = _PathLock(path)
        try:
            # With the lock ours, no server of this version lives here; the
            # probe still guards a socket of an older one, which takes no lock.
            _remove_stale(path)
            sock, inode = _bind(path)
        except BaseException:
            lock.release()
            raise
        return UnixListener(sock, path, lock, inode)


def _bind(path: str) -> "tuple[socket.socket, int]":
    """A socket listening on `path` (owner-only), and the inode of its file."""
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
    return sock, inode
