"""`onedrive-rpc demo`: the example OneDrive daemon in its own process, and
the components around it (command line, tray, uploader) talking to it.

Shows every pattern of rpc/protos/examples/onedrive/sync.proto working:
calls (and a distinct status code for each failure), a server stream,
publish/subscribe, a work queue whose consumer's connection is cut in the
middle (and resumes: each upload done once), notifications, and a
broadcast that stops the daemon in order.
"""
from __future__ import annotations

from .examples.onedrive.client import run as walk_through
from .testing.process import ServerProcess

__all__ = ["run"]

DAEMON = "onedrive_rpc.examples.onedrive.daemon"


def run(url: str = "tcp://127.0.0.1:0") -> int:
    print(f"starting the example OneDrive daemon process on {url} ...", flush=True)
    with ServerProcess(url, module=DAEMON, args=["--log-level", "warning"]) as daemon:
        print(f"daemon pid {daemon.pid} listens on {daemon.url}", flush=True)
        status = walk_through(daemon.url)
        exit_code = daemon.wait(10)
    print(f"daemon exited with status {exit_code}", flush=True)
    print("demo done" if status == 0 else "demo FAILED", flush=True)
    return status
