"""Who owns a unix socket path: a live server keeps it, a dead one gives it up.

A server holds an advisory lock on `<path>.lock` while it listens. A second
server refuses a path whose lock is held, even if the first server is frozen
with a full listen backlog; a socket file whose lock is free is stale and is
replaced. Sockets without a lock (older versions, other programs) are probed:
only a refused connect makes them stale.
"""
from __future__ import annotations

import errno
import os
import shutil
import socket
import tempfile
import time

import pytest

import onedrive_rpc as rpc
from onedrive_rpc.errors import TransportError
from onedrive_rpc.testing import echo_pb2
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.helpers import in_forked_child, wait_until
from onedrive_rpc.testing.process import ServerProcess
from onedrive_rpc.transport import connect_stream, listen

Msg = echo_pb2.Msg


def lock_of(path) -> str:
    return f"{path}.lock"


def start_server(url: str) -> rpc.Server:
    server = rpc.Server(url)
    server.add_service(EchoService())
    return server.start()


def echo_once(peers, url: str, text: str) -> str:
    return rpc.Client(peers(url), ECHO).echo(Msg(text=text), timeout=10).text


def served(peers, url: str) -> bool:
    try:
        return echo_once(peers, url, "anyone?") == "anyone?"
    except (rpc.RpcError, OSError):
        return False


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def fill_backlog(path: str, limit: int = 100_000) -> int:
    """Connect (and hang up) until the listener's queue is full; how many it took.

    A connection the listener has not accepted stays in its queue after the
    client closes its end, so no descriptors pile up here."""
    for count in range(limit):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.setblocking(False)
        try:
            err = probe.connect_ex(path)
        finally:
            probe.close()
        if err == errno.EAGAIN:
            return count
        assert err == 0, os.strerror(err)
    raise AssertionError(f"the backlog of {path} did not fill in {limit} connections")


def connectable(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        return probe.connect_ex(path) == 0
    finally:
        probe.close()


def test_a_frozen_server_with_a_full_backlog_keeps_its_path(tmp_path, peers):
    path = tmp_path / "frozen.sock"
    first = ServerProcess(f"unix://{path}")
    second = rpc.Server(f"unix://{path}")
    try:
        first.start()
        first.stop()  # SIGSTOP: alive, but accepts nothing
        wait_until(lambda: process_state(first.pid) == "T", timeout=10)
        assert fill_backlog(str(path)) > 0
        assert not connectable(str(path))  # a connect now gets EAGAIN

        with pytest.raises(TransportError) as info:
            second.start()
        assert str(path) in str(info.value)
        assert "another server holds" in str(info.value)
        assert path.exists() and os.path.exists(lock_of(path))

        with pytest.raises(rpc.PeerLost, match="listen backlog is full"):
            peers(first.url, timeout=5)  # said plainly, not as a broken handshake

        first.cont()  # it wakes up, and still serves its path once it has
        # digested the thousands of dead connections of its queue
        wait_until(lambda: served(peers, first.url), timeout=60, poll=0.05)
        assert echo_once(peers, first.url, "still mine") == "still mine"
    finally:
        second.stop()  # only if it wrongly started
        first.kill()
        if first.proc is not None and first.proc.stdout is not None:
            first.proc.stdout.close()


def test_the_socket_of_a_killed_server_is_replaced(tmp_path, peers):
    path = tmp_path / "killed.sock"
    first = ServerProcess(f"unix://{path}")
    try:
        first.start()
        assert echo_once(peers, first.url, "first") == "first"
    finally:
        first.kill()  # SIGKILL: nothing is cleaned up
        if first.proc is not None and first.proc.stdout is not None:
            first.proc.stdout.close()
    # Both files stay behind; the kernel let go of the lock with the process.
    assert path.exists() and os.path.exists(lock_of(path))
    second = start_server(f"unix://{path}")
    try:
        assert echo_once(peers, second.url, "second") == "second"
    finally:
        second.stop()
    assert not path.exists() and not os.path.exists(lock_of(path))


def test_a_held_lock_refuses_a_second_server_at_once(tmp_path, peers):
    path = tmp_path / "held.sock"
    with ServerProcess(f"unix://{path}") as first:  # alive and well, not frozen
        second = rpc.Server(f"unix://{path}")
        with pytest.raises(TransportError) as info:
            second.start()
        assert info.value.errno == errno.EADDRINUSE
        message = str(info.value)
        assert str(path) in message and "another server holds" in message, message
        assert echo_once(peers, first.url, "untouched") == "untouched"


def test_a_held_lock_refuses_even_without_the_socket_file(tmp_path):
    path = tmp_path / "unlinked.sock"
    first = listen(f"unix://{path}")
    try:
        os.unlink(path)  # say a cleaner removed it: the owner is still alive
        with pytest.raises(TransportError, match="another server holds"):
            listen(f"unix://{path}")
        assert not path.exists()
    finally:
        first.close()
    assert not os.path.exists(lock_of(path))


def test_a_clean_stop_leaves_neither_socket_nor_lock(tmp_path, peers):
    path = tmp_path / "clean.sock"
    server = start_server(f"unix://{path}")
    try:
        assert path.exists() and os.path.exists(lock_of(path))
        assert os.stat(lock_of(path)).st_mode & 0o777 == 0o600
        assert echo_once(peers, server.url, "hi") == "hi"
    finally:
        server.stop()
    assert sorted(os.listdir(tmp_path)) == []
    # ... and the path is free for the next one.
    again = start_server(f"unix://{path}")
    again.stop()
    assert sorted(os.listdir(tmp_path)) == []


def test_a_child_process_server_stops_cleanly(tmp_path):
    path = tmp_path / "child.sock"
    with ServerProcess(f"unix://{path}") as proc:
        assert path.exists() and os.path.exists(lock_of(path))
    assert proc.proc is not None and proc.proc.returncode == 0
    assert sorted(os.listdir(tmp_path)) == []


def test_a_lockless_server_with_a_full_backlog_is_not_stale(tmp_path):
    """A server of an older version (no lock file), frozen: a connect gets
    EAGAIN, which must not count as stale."""
    path = tmp_path / "old.sock"
    old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old.bind(str(path))
        inode = os.stat(path).st_ino
        old.listen(0)  # never accepts: as good as frozen
        fill_backlog(str(path))
        with pytest.raises(TransportError) as info:
            listen(f"unix://{path}")
        assert str(path) in str(info.value)
        assert path.exists() and os.stat(path).st_ino == inode
        assert not os.path.exists(lock_of(path))  # the refusal leaves nothing behind
    finally:
        old.close()


def test_a_lockless_live_server_is_not_replaced(tmp_path):
    path = tmp_path / "old-live.sock"
    old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old.bind(str(path))
        old.listen(16)
        with pytest.raises(TransportError) as info:
            listen(f"unix://{path}")
        assert info.value.errno == errno.EADDRINUSE and str(path) in str(info.value)
        assert path.exists()
    finally:
        old.close()


def test_a_stale_lockless_socket_is_replaced(tmp_path):
    path = tmp_path / "old-dead.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()
    listener = listen(f"unix://{path}")
    listener.close()
    assert sorted(os.listdir(tmp_path)) == []


def test_a_missing_directory_is_named(tmp_path):
    path = tmp_path / "no" / "such" / "dir.sock"
    with pytest.raises(TransportError) as info:
        listen(f"unix://{path}")
    assert info.value.errno == errno.ENOENT
    assert str(path) in str(info.value)
    assert str(path.parent) in str(info.value)


def test_a_file_in_the_way_of_the_directory_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "x.sock"
    with pytest.raises(TransportError) as info:
        listen(f"unix://{path}")
    assert info.value.errno == errno.ENOTDIR
    assert str(path) in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root is never denied")
def test_a_directory_without_write_permission_is_named(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    path = locked / "x.sock"
    try:
        with pytest.raises(TransportError) as info:
            listen(f"unix://{path}")
        assert info.value.errno == errno.EACCES
        assert str(path) in str(info.value)
    finally:
        locked.chmod(0o700)


def test_a_path_too_long_is_named(tmp_path):
    path = tmp_path / ("x" * 120 + ".sock")
    with pytest.raises(TransportError) as info:
        listen(f"unix://{path}")
    assert str(path) in str(info.value)
    assert not os.path.exists(lock_of(path))


def test_a_lock_file_that_is_not_a_regular_file_is_refused(tmp_path):
    path = tmp_path / "odd.sock"
    os.mkdir(lock_of(path))
    with pytest.raises(TransportError) as info:
        listen(f"unix://{path}")
    assert lock_of(path) in str(info.value)
    assert os.path.isdir(lock_of(path))


def test_a_forked_child_lets_go_of_the_lock_without_releasing_it(tmp_path, peers):
    """flock belongs to the open file description, which fork shares: the
    child closes its copy of the descriptor (never LOCK_UN, which would free
    the parent's lock too) and unlinks nothing; the parent keeps the path."""
    import fcntl

    path = tmp_path / "forked.sock"
    lock = lock_of(path)
    server = start_server(f"unix://{path}")
    try:
        def child():
            held = [fd for fd in os.listdir("/proc/self/fd")
                    if os.path.realpath(f"/proc/self/fd/{fd}") == lock]
            fd = os.open(lock, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                still_locked = False
            except BlockingIOError:
                still_locked = True
            finally:
                os.close(fd)
            return {"descriptors": held, "still_locked": still_locked}

        outcome = in_forked_child(child)
        assert outcome.get("ok") == {"descriptors": [], "still_locked": True}, outcome
        # The child is gone; the parent still owns and serves the path.
        assert path.exists() and os.path.exists(lock)
        with pytest.raises(TransportError, match="another server holds"):
            listen(f"unix://{path}")
        assert echo_once(peers, server.url, "parent") == "parent"
    finally:
        server.stop()
    assert sorted(os.listdir(tmp_path)) == []


def test_what_fork_does_to_a_flock(tmp_path):
    """The kernel facts the listener's detach() relies on: a forked child
    closing its copy of a locked descriptor leaves the lock held, while
    flock(LOCK_UN) in the child would unlock it for the parent too."""
    import fcntl

    lock = str(tmp_path / "facts.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)

    def held_by_someone_else() -> bool:
        other = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(other)  # (this unlocks `other` if it got the lock)

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert in_forked_child(lambda: os.close(fd)) == {"ok": None}
        assert held_by_someone_else()
        assert in_forked_child(lambda: fcntl.flock(fd, fcntl.LOCK_UN)) == {"ok": None}
        assert not held_by_someone_else()
    finally:
        os.close(fd)


def test_connecting_to_a_full_backlog_says_so(tmp_path):
    path = tmp_path / "full.sock"
    busy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        busy.bind(str(path))
        busy.listen(0)
        fill_backlog(str(path))
        with pytest.raises(TransportError) as info:
            connect_stream(f"unix://{path}", timeout=5)
        assert info.value.errno == errno.EAGAIN
        assert str(path) in str(info.value) and "listen backlog is full" in str(info.value)
    finally:
        busy.close()


# ------------------------------------------------ the client checks the server

def test_a_client_can_require_the_servers_uid(tmp_path, peers):
    url = f"unix://{tmp_path}/uid.sock"
    server = start_server(url)
    try:
        assert echo_once(lambda u: peers(u, server_uid=os.getuid()), url, "mine") == "mine"
        with pytest.raises(rpc.RpcError) as refused:
            rpc.connect(url, timeout=5, server_uid=os.getuid() + 4242)
        assert refused.value.code == rpc.StatusCode.UNAUTHENTICATED
        assert refused.value.message == (
            f"refusing the server at {url}: it runs as uid {os.getuid()}, not "
            f"{os.getuid() + 4242} (server_uid); another user's process may hold the socket path")
        assert len(server.connections) == 1  # the first peer's: refused before any handshake
    finally:
        server.stop()


def test_server_uid_needs_a_unix_socket():
    server = rpc.Server("tcp://127.0.0.1:0")
    server.start()
    try:
        with pytest.raises(rpc.RpcError, match="server_uid needs a unix:// socket"):
            rpc.connect(server.url, timeout=5, server_uid=os.getuid())
    finally:
        server.stop()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to listen as another user")
def test_a_socket_path_squatted_by_another_user_is_refused():
    """Another user's process listens where our server should be: a client
    that requires our uid does not talk to it (nor sends it a Hello)."""
    shared = tempfile.mkdtemp(prefix="onedrive-rpc-squat-")  # pytest's tmp is ours only
    os.chmod(shared, 0o777)
    path = os.path.join(shared, "squatted.sock")
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the squatter: another user, listening at the path
        try:
            os.setgid(65534)
            os.setuid(65534)
            squat = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            squat.bind(path)
            squat.listen(8)
            os.write(ready_w, b"R")
            time.sleep(60)  # until the parent kills us
        finally:
            os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"R"
        with pytest.raises(rpc.RpcError) as refused:
            rpc.connect(f"unix://{path}", timeout=5, server_uid=0)
        assert refused.value.code == rpc.StatusCode.UNAUTHENTICATED
        assert "it runs as uid 65534, not 0" in refused.value.message
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        for fd in (ready_r, ready_w):
            os.close(fd)
        shutil.rmtree(shared, ignore_errors=True)
