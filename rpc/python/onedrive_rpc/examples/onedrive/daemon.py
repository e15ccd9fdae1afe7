"""The example OneDrive client daemon: serves onedrive.sync.Sync.

    python -m onedrive_rpc.examples.onedrive.daemon unix:///run/user/1000/onedrive.sock

It keeps a small made-up drive in memory. Its own service methods make it
a receiver too: it hears every ItemChanged (and updates its database from
it), collects Log notifications, and stops when a component broadcasts
Shutdown. UploadQueue is left to uploader processes: the daemon only hosts
the queue.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from typing import Callable, Dict, Iterator, List, Optional

import gevent

import onedrive_rpc as rpc

from .sync_pb2 import (DELETED, ERROR, INFO, WARNING, Item, ItemChange, ItemRef, LogLine,
                       ShutdownNotice)
from .sync_rpc import SyncBase

__all__ = ["SyncDaemon", "topic_for", "main", "DRIVE_ID"]

log = logging.getLogger("onedrive.daemon")

DRIVE_ID = "b!demo"

# Characters a topic level cannot hold, and how a path level spells them.
_ESCAPES = {"%": "%25", ".": "%2E", "*": "%2A", ">": "%3E", " ": "%20", "\t": "%09"}


def topic_for(drive_id: str, path: str) -> str:
    """The ItemChanged topic of an item: drive.<drive id>.<path levels>,
    each level escaped so that dots and spaces in names stay in their level
    ("/Documents/report v2.docx" -> "drive.<id>.Documents.report%20v2%2Edocx")."""
    levels = [drive_id] + [part for part in path.split("/") if part]
    escaped = ["".join(_ESCAPES.get(ch, ch) for ch in level) for level in levels]
    return ".".join(["drive", *escaped])


def _parent(path: str) -> str:
    head = path.rstrip("/").rpartition("/")[0]
    return head or "/"


class SyncDaemon(SyncBase):
    """What the daemon serves, from an in-memory database of one drive."""

    def __init__(self, drive_id: str = DRIVE_ID) -> None:
        self.drive_id = drive_id
        self.items: Dict[str, Item] = {}
        self.log_lines: List[LogLine] = []
        self.on_shutdown: Optional[Callable[[ShutdownNotice], None]] = None
        now = int(time.time())
        for path, folder, size in [("/", True, 0), ("/Documents", True, 0),
                                   ("/Documents/report.docx", False, 48_213),
                                   ("/Documents/budget 2026.xlsx", False, 12_004),
                                   ("/Documents/Archive", True, 0),
                                   ("/Pictures", True, 0),
                                   ("/Pictures/holiday.jpg", False, 2_311_582)]:
            self._store(Item(drive_id=drive_id, path=path, folder=folder, size=size,
                             modified_unix=now))

    def _store(self, item: Item) -> None:
        item.id = item.id or f"item-{len(self.items) + 1}"
        item.etag = f"{item.id}.{int(item.modified_unix)}.{item.size}"
        self.items[item.path] = item

    def _find(self, ref: ItemRef) -> Item:
        if ref.drive_id != self.drive_id:
            raise rpc.RpcError(rpc.StatusCode.NOT_FOUND, f"no drive {ref.drive_id!r} here "
                                                         f"(this daemon syncs {self.drive_id!r})")
        item = self.items.get(ref.path.rstrip("/") or "/")
        if item is None:
            raise rpc.RpcError(rpc.StatusCode.NOT_FOUND, f"no item at {ref.path!r}")
        return item

    def get_item(self, request: ItemRef, context: rpc.Context) -> Item:
        return self._find(request)

    def list_children(self, request: ItemRef, context: rpc.Context) -> Iterator[Item]:
        folder = self._find(request)
        if not folder.folder:
            raise rpc.RpcError(rpc.StatusCode.FAILED_PRECONDITION, f"{folder.path!r} is a file")
        for path in sorted(self.items):
            if path != folder.path and _parent(path) == folder.path:
                yield self.items[path]

    @rpc.policy("block")
    def item_changed(self, request: ItemChange, context: rpc.Received) -> None:
        # The daemon hears every change (any topic) and keeps its database
        # current: it must lose none, so a flood of changes (a file watcher
        # starting up) holds its publishers back instead of dropping.
        if request.kind == DELETED:
            self.items.pop(request.item.path, None)
        else:
            if request.old_path:
                self.items.pop(request.old_path, None)
            self._store(request.item)

    def log(self, request: LogLine, context: rpc.Context) -> None:
        self.log_lines.append(request)
        level = {INFO: logging.INFO, WARNING: logging.WARNING, ERROR: logging.ERROR}.get(
            request.level, logging.DEBUG)
        log.log(level, "[%s] %s", request.component or "?", request.message)

    def shutdown(self, request: ShutdownNotice, context: rpc.Received) -> None:
        # A component broadcast Shutdown: the others hear it from us; we stop.
        log.info("shutdown requested: %s", request.reason)
        if self.on_shutdown is not None:
            self.on_shutdown(request)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="The example OneDrive daemon.")
    parser.add_argument("url", help="where to listen, e.g. unix:///tmp/onedrive.sock")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="daemon: %(message)s")
    server = rpc.Server(args.url, name="onedrive-daemon", reflection=True)
    daemon = SyncDaemon()

    def stop(notice: ShutdownNotice) -> None:
        gevent.spawn(server.stop, float(notice.grace_seconds or 5))

    daemon.on_shutdown = stop
    server.add_service(daemon)
    server.start()
    gevent.signal_handler(signal.SIGTERM, lambda: stop(ShutdownNotice(reason="SIGTERM")))
    print(f"READY {server.url}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
