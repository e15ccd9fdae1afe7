"""A forked child lets go of its parent's connections; the parent keeps them."""
from __future__ import annotations

import os

import pytest

import onedrive_rpc as rpc
from onedrive_rpc.testing import echo_pb2
from onedrive_rpc.testing.echo_service import ECHO, EchoService
from onedrive_rpc.testing.helpers import in_forked_child

Msg = echo_pb2.Msg


@pytest.mark.parametrize("scheme", ["tcp", "unix"])
def test_forked_child_cannot_use_the_parents_connections(scheme, tmp_path, peers):
    url = "tcp://127.0.0.1:0" if scheme == "tcp" else f"unix://{tmp_path}/fork.sock"
    server = rpc.Server(url)
    server.add_service(EchoService())
    server.start()
    try:
        peer = peers(server.url)
        client = rpc.Client(peer, ECHO)
        assert client.echo(Msg(text="before"), timeout=5).text == "before"

        def child():
            assert peer.closed
            try:
                client.echo(Msg(text="from the child"), timeout=1)
            except rpc.PeerLost as exc:
                return exc.message
            return "the call went through"

        outcome = in_forked_child(child)
        assert "this process forked" in outcome.get("ok", ""), outcome
        assert f"parent process (pid {os.getpid()})" in outcome["ok"]
        # The parent's connection and server are intact: same peer, new peers.
        assert client.echo(Msg(text="after"), timeout=5).text == "after"
        assert rpc.Client(peers(server.url), ECHO).echo(Msg(text="new"), timeout=5).text == "new"
        if scheme == "unix":
            assert (tmp_path / "fork.sock").exists()
    finally:
        server.stop()
