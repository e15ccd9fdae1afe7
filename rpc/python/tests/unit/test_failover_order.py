"""The order a peer tries its servers in (failover.py), without sockets,
and what connect() refuses in a list of URLs."""
from __future__ import annotations

import pytest

import onedrive_rpc as rpc
from onedrive_rpc.failover import PICK_FIRST, ROUND_ROBIN, Addresses

URLS = ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2", "tcp://127.0.0.1:3"]


def test_pick_first_starts_at_the_first_and_after_a_loss_at_the_server_it_was_on():
    addresses = Addresses(URLS, PICK_FIRST)
    assert addresses.initial() == [0, 1, 2]
    addresses.home = 1
    assert addresses.round(resumable=True) == [1, 2, 0]  # resume there first, then wrap
    assert addresses.round(resumable=False) == [1, 2, 0]
    assert addresses.url == URLS[1]


def test_round_robin_rotates_first_connections_and_moves_on_after_a_loss():
    urls = [f"tcp://127.0.0.1:{port}" for port in (11, 12, 13)]  # a rotation of its own
    starts = [Addresses(urls, ROUND_ROBIN).initial()[0] for _ in range(6)]
    assert sorted(starts) == [0, 0, 1, 1, 2, 2]
    assert starts[:3] == starts[3:]  # one after the other, from wherever it began
    addresses = Addresses(urls, ROUND_ROBIN)
    addresses.home = 2
    assert addresses.round(resumable=True) == [2, 0, 1]  # the session lives on 2
    assert addresses.round(resumable=False) == [0, 1, 2]  # a new session: the next first


def test_one_url_is_one_address_whatever_the_policy():
    assert Addresses("tcp://127.0.0.1:1", ROUND_ROBIN).initial() == [0]
    assert Addresses(["tcp://127.0.0.1:1"]).round(resumable=False) == [0]


@pytest.mark.parametrize("urls, error, text", [
    ([], ValueError, "empty list"),
    (["tcp://127.0.0.1:1", 7], TypeError, "URL string"),
    (b"tcp://127.0.0.1:1", TypeError, "list of URLs"),
    ([URLS[0], URLS[0]], ValueError, "listed twice"),
])
def test_a_bad_list_is_refused_before_anything_is_dialled(urls, error, text):
    with pytest.raises(error, match=text):
        rpc.connect(urls)


def test_settings_that_apply_to_no_address_are_refused():
    with pytest.raises(ValueError, match="balance must be one of"):
        rpc.connect(URLS, balance="least_request")
    with pytest.raises(ValueError, match="tls= is for tls:// URLs"):
        rpc.connect(URLS, tls=rpc.TLS())
    with pytest.raises(ValueError, match="server_uid= is for unix:// URLs"):
        rpc.connect(URLS, server_uid=0)
    with pytest.raises(ValueError, match="no transport for scheme"):
        rpc.connect([URLS[0], "udp://127.0.0.1:4"])
