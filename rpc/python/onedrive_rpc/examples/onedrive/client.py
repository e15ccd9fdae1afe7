"""The example OneDrive components around the daemon, one peer each: the
command line, the tray icon and an uploader. `run(url)` walks through every
pattern of onedrive.sync.Sync against a running daemon and says what
happened; `onedrive-rpc demo` starts a daemon process and runs it.
"""
from __future__ import annotations

import time
from typing import Callable, List

import gevent
from gevent.event import Event

import onedrive_rpc as rpc
from onedrive_rpc.testing.faults import FaultProxy

from .daemon import DRIVE_ID, topic_for
from .sync_pb2 import (CREATED, INFO, ChangeKind, Item, ItemChange, ItemRef, LogLine,
                       ShutdownNotice, Upload)
from .sync_rpc import SyncClient

__all__ = ["run"]


def _say(text: str) -> None:
    print(text, flush=True)


def _error(what: str, call: Callable[[], object]) -> None:
    try:
        call()
    except rpc.RpcError as exc:
        _say(f"  {what:<34} -> {exc.code.name}: {exc.message}")
    else:
        _say(f"  {what:<34} -> no error?!")


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        gevent.sleep(0.01)
    return True


def run(url: str) -> int:
    """Talk to the daemon at `url` as the CLI, the tray and an uploader."""
    cli_peer = rpc.connect(url, name="onedrive-cli")
    tray_peer = rpc.connect(url, name="onedrive-tray")
    proxy = FaultProxy(url).start()
    uploader_peer = rpc.connect(proxy.url, name="onedrive-uploader")
    try:
        cli, tray, uploader = SyncClient(cli_peer), SyncClient(tray_peer), SyncClient(uploader_peer)
        info = cli_peer.info
        assert info is not None  # known once connect() returned
        _say(f"the CLI connected to {info.name} (pid {info.pid}), session {cli_peer.session_id}")

        _say("request/response: cli.get_item(/Documents/report.docx)")
        item = cli.get_item(ItemRef(drive_id=DRIVE_ID, path="/Documents/report.docx"), timeout=5)
        _say(f"  -> {item.path} id={item.id} size={item.size} etag={item.etag}")
        start = time.perf_counter()
        futures = [cli.get_item.future(ItemRef(drive_id=DRIVE_ID, path="/Pictures/holiday.jpg"),
                                       timeout=10) for _ in range(500)]
        same = all(f.get(timeout=10).size == 2_311_582 for f in futures)
        _say(f"  500 concurrent calls on one connection: "
             f"{'all answered' if same else 'WRONG ANSWERS'} in {time.perf_counter() - start:.2f} s")
        _say("  each failure has its own status code:")
        _error("an item that is not there", lambda: cli.get_item(
            ItemRef(drive_id=DRIVE_ID, path="/nope.txt"), timeout=5))
        _error("listing a file", lambda: list(cli.list_children(
            ItemRef(drive_id=DRIVE_ID, path="/Documents/report.docx"), timeout=5)))
        _error("a method the daemon lacks", lambda: cli_peer.call(
            "/onedrive.sync.Sync/Rename", b"", Item.FromString, timeout=5))
        _error("a 1 µs deadline", lambda: cli.get_item(
            ItemRef(drive_id=DRIVE_ID, path="/"), timeout=1e-6))

        _say("server stream: cli.list_children(/Documents)")
        for child in cli.list_children(ItemRef(drive_id=DRIVE_ID, path="/Documents"), timeout=5):
            _say(f"  {'folder' if child.folder else 'file  '} {child.path} ({child.size} bytes)")

        changes: List[str] = []
        tray.item_changed.subscribe(f"drive.{DRIVE_ID}.>", lambda r: changes.append(
            f"{ChangeKind.Name(r.message.kind)} {r.message.item.path} (topic {r.topic})"),
            policy="block", timeout=5)
        _say(f"publish/subscribe: the tray subscribed to drive.{DRIVE_ID}.> (policy block: a "
             f"flood of changes waits for it, none is dropped)")

        uploaded: List[str] = []

        def upload(task: Upload, context: rpc.TaskContext) -> None:
            gevent.sleep(0.05)  # pretend to send the bytes to the cloud
            item = Item(drive_id=task.drive_id, path=task.remote_path, size=task.size,
                        modified_unix=int(time.time()))
            uploader.item_changed.publish(topic_for(task.drive_id, task.remote_path),
                                          ItemChange(kind=CREATED, item=item))
            uploader.log(LogLine(level=INFO, component="uploader",
                                 message=f"uploaded {task.remote_path} (attempt {context.attempt})"))
            uploaded.append(task.remote_path)

        uploader.upload_queue.consume(upload, prefetch=2, timeout=5)
        files = [f"/Documents/scan-{i}.pdf" for i in range(6)]
        for path in files:
            cli.upload_queue.produce(Upload(drive_id=DRIVE_ID, local_path=f"/home/me/OneDrive{path}",
                                            remote_path=path, size=1000), timeout=5)
        _say(f"producer/consumer: the CLI queued {len(files)} uploads; the uploader consumes them "
             f"(prefetch 2) and publishes a change for each")
        resumed = Event()
        uploader_peer.on_resumed(lambda session_id: resumed.set())
        _wait(lambda: len(uploaded) >= 2)
        proxy.cut()
        _say("  cut the uploader's connection (a fault proxy) in the middle of the uploads ...")
        done = _wait(lambda: sorted(uploaded) == sorted(files) and len(changes) >= len(files))
        _say(f"  uploader {'resumed its session; ' if resumed.is_set() else ''}"
             f"{'each upload done exactly once' if done and len(uploaded) == len(files) else 'NOT ALL DONE'}"
             f": {len(uploaded)} uploads, {len(changes)} changes seen by the tray")
        for change in sorted(changes)[:3]:
            _say(f"  tray saw: {change}")
        latest = cli.get_item(ItemRef(drive_id=DRIVE_ID, path=files[-1]), timeout=5)
        _say(f"  the daemon's database, updated from the changes it heard: {latest.path} "
             f"id={latest.id}")

        _say("notification: the uploader sent one Log line per upload (one-way); confirmed:")
        uploader.log(LogLine(level=INFO, component="uploader", message="all done"),
                     confirm=True, timeout=5)
        _say("  the daemon has it (acknowledged)")

        heard: List[str] = []

        def stop_on_shutdown(name: str, peer: rpc.Peer) -> Callable[[rpc.Received], None]:
            def hear(received: rpc.Received) -> None:
                heard.append(f"{name} heard Shutdown ({received.message.reason}) and stops")
                gevent.spawn(peer.close)
            return hear

        tray.shutdown.listen(stop_on_shutdown("tray", tray_peer))
        uploader.shutdown.listen(stop_on_shutdown("uploader", uploader_peer))
        gone = Event()
        cli_peer.on_disconnected(lambda reason: gone.set())
        _say("broadcast: the CLI broadcasts Shutdown to every component, through the daemon")
        cli.shutdown.broadcast(ShutdownNotice(reason="the user quit", grace_seconds=1),
                               confirm=True, timeout=5)
        _wait(lambda: len(heard) == 2)
        for line in sorted(heard):
            _say(f"  {line}")
        stopped = gone.wait(10)
        cli_peer.close()
        _say(f"  the daemon heard it too and {'stopped in order' if stopped else 'did NOT stop'}")
        return 0 if done and stopped and len(heard) == 2 else 1
    finally:
        for peer in (uploader_peer, tray_peer, cli_peer):
            peer.close()
        proxy.stop()
