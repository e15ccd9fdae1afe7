"""Who owns a unix socket path: a live server keeps it, a dead one gives it up.

An existing socket file is probed: only a refused connect makes it stale.
"""
from __future__ import annotations

import errno
import os
import socket

import pytest

from onedrive_rpc.errors import TransportError
from onedrive_rpc.transport import connect_stream, listen


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
    assert not os.path.exists(path)


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
