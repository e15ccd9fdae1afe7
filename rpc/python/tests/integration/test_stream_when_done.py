"""ServerStream.when_done: what interceptors that time or trace a client's
stream hear, once, however the caller is done with it."""
from __future__ import annotations

import gc

import pytest

import onedrive_rpc as rpc
from onedrive_rpc.testing.echo_pb2 import Msg
from onedrive_rpc.testing.echo_service import ECHO


@pytest.fixture
def echo(served, peers):
    return rpc.Client(peers(served.url), ECHO)


def _watched(stream):
    heard = []
    stream.when_done(lambda error, items: heard.append((error, items)))
    return heard


def test_read_to_its_end(echo):
    stream = echo.count(Msg(count=3), timeout=5)
    heard = _watched(stream)
    assert [m.text for m in stream] == ["0", "1", "2"]
    assert heard == [(None, 3)]
    stream.cancel()  # after its end: nothing more
    assert heard == [(None, 3)]


def test_failed_on_the_server(echo):
    stream = echo.count(Msg(count=2, text="fail"), timeout=5)
    heard = _watched(stream)
    with pytest.raises(rpc.RpcError) as info:
        list(stream)
    assert heard == [(info.value, 2)] and info.value.code == rpc.StatusCode.INTERNAL


def test_cancelled_by_the_caller(echo):
    stream = echo.count(Msg(count=100, delay=0.05), timeout=5)
    heard = _watched(stream)
    next(stream)
    assert stream.cancel("enough")
    [(error, items)] = heard
    assert error.code == rpc.StatusCode.CANCELLED and items == 1


def test_dropped_unfinished(echo):
    stream = echo.count(Msg(count=100, delay=0.05), timeout=5)
    heard = _watched(stream)
    next(stream)
    del stream
    gc.collect()
    [(error, items)] = heard
    assert error.code == rpc.StatusCode.CANCELLED and items == 1
