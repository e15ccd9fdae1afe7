"""The OneDrive example of rpc/protos/examples/onedrive/sync.proto: the
daemon serves every pattern in process, over every transport; and the
codegen command turns the example .proto into working code from scratch."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import onedrive_rpc as rpc
from onedrive_rpc.examples.onedrive import sync_pb2 as pb
from onedrive_rpc.examples.onedrive.daemon import DRIVE_ID, SyncDaemon, topic_for
from onedrive_rpc.examples.onedrive.sync_rpc import SyncClient
from onedrive_rpc.testing.helpers import wait_until

EXAMPLES = Path(__file__).resolve().parents[3] / "protos" / "examples"
# Where the onedrive_rpc under test (and the buf.validate it ships) lives, for
# a Python started in another directory.
PACKAGE_PARENT = str(Path(rpc.__file__).resolve().parent.parent)


@pytest.fixture
def daemon(url):
    server = rpc.Server(url, name="onedrive-daemon")
    service = SyncDaemon()
    stopped = []
    service.on_shutdown = stopped.append
    server.add_service(service)
    server.start()
    service.stopped = stopped
    yield server, service
    server.stop()


def test_topics_keep_each_path_level_in_its_level():
    assert topic_for("d1", "/Documents/report v2.docx") == "drive.d1.Documents.report%20v2%2Edocx"
    assert topic_for("d1", "/") == "drive.d1"
    rpc_topics = __import__("onedrive_rpc.core.topics", fromlist=["check_topic"])
    rpc_topics.check_topic(topic_for("d1", "/a.b/c*d/e>f/100%"))


def test_every_method_of_the_daemon(daemon, peers):
    server, service = daemon
    cli = SyncClient(peers(server.url))
    item = cli.get_item(pb.ItemRef(drive_id=DRIVE_ID, path="/Documents/report.docx"), timeout=5)
    assert item.size == 48_213 and not item.folder
    with pytest.raises(rpc.RpcError) as info:
        cli.get_item(pb.ItemRef(drive_id="other", path="/"), timeout=5)
    assert info.value.code == rpc.StatusCode.NOT_FOUND and "no drive 'other'" in info.value.message
    children = [c.path for c in cli.list_children(pb.ItemRef(drive_id=DRIVE_ID, path="/"), timeout=5)]
    assert children == ["/Documents", "/Pictures"]
    changes = cli.item_changed.subscribe(f"drive.{DRIVE_ID}.Documents.*", timeout=5)
    done = []
    cli.upload_queue.consume(lambda task, ctx: done.append(task.remote_path), prefetch=1, timeout=5)
    cli.upload_queue.produce(pb.Upload(drive_id=DRIVE_ID, remote_path="/Documents/new.txt"), timeout=5)
    wait_until(lambda: done == ["/Documents/new.txt"])
    new = pb.Item(drive_id=DRIVE_ID, path="/Documents/new.txt", size=3)
    cli.item_changed.publish(topic_for(DRIVE_ID, new.path), pb.ItemChange(kind=pb.CREATED, item=new),
                             confirm=True, timeout=5)
    assert changes.get(timeout=5).message.item.path == "/Documents/new.txt"
    wait_until(lambda: "/Documents/new.txt" in service.items)  # the daemon heard it too
    assert cli.get_item(pb.ItemRef(drive_id=DRIVE_ID, path="/Documents/new.txt"), timeout=5).size == 3
    cli.log(pb.LogLine(level=pb.INFO, component="test", message="hello"), confirm=True, timeout=5)
    assert [line.message for line in service.log_lines] == ["hello"]
    other = SyncClient(peers(server.url)).shutdown.listen()
    cli.shutdown.broadcast(pb.ShutdownNotice(reason="bye"), confirm=True, timeout=5)
    assert other.get(timeout=5).message.reason == "bye"
    assert [notice.reason for notice in service.stopped] == ["bye"]


def test_the_codegen_command_turns_the_example_into_working_code(tmp_path):
    pytest.importorskip("grpc_tools")
    out = tmp_path / "gen"
    result = subprocess.run([sys.executable, "-m", "onedrive_rpc.codegen", "-I", str(EXAMPLES),
                             "--out", str(out), "onedrive/sync.proto"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (out / "onedrive").iterdir()) == [
        "sync_pb2.py", "sync_pb2.pyi", "sync_rpc.py", "sync_rpc.pyi"]
    program = textwrap.dedent("""
        import onedrive_rpc as rpc
        from onedrive import sync_pb2
        from onedrive.sync_rpc import SyncBase, SyncClient

        class Daemon(SyncBase):
            def get_item(self, request, context):
                return sync_pb2.Item(drive_id=request.drive_id, path=request.path, size=7)

        server = rpc.Server("inproc://generated-sync")
        server.add_service(Daemon())
        server.start()
        with rpc.connect(server.url) as peer:
            client = SyncClient(peer)
            print(client.get_item(sync_pb2.ItemRef(drive_id="d", path="/x"), timeout=5).size)
            try:
                list(client.list_children(sync_pb2.ItemRef(drive_id="d", path="/"), timeout=5))
            except rpc.RpcError as exc:
                print(exc.code.name)
        server.stop()
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [PACKAGE_PARENT, *filter(None, [os.environ.get("PYTHONPATH")])]))
    result = subprocess.run([sys.executable, "-c", program], cwd=out, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["7", "UNIMPLEMENTED"]
