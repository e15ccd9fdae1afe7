"""Errors carry their status (h11's error_status_hint), and a status from the
wire maps to an error in one place (RpcError.from_status).

Pure: no sockets, no greenlets, no clocks.
"""
from __future__ import annotations

import pytest

from onedrive_rpc.core import session as session_module
from onedrive_rpc.core import wire_pb2
from onedrive_rpc.core.errors import (FrameTooLarge, LocalProtocolError, MessageTooLarge,
                                      RemoteProtocolError, StatusCode, VersionMismatch)
from onedrive_rpc.core.session import Role, Session
from onedrive_rpc.errors import PeerLost, RpcError
from onedrive_rpc.testing.helpers import framed, wire


def test_protocol_errors_default_to_internal():
    assert RemoteProtocolError.status is StatusCode.INTERNAL
    assert RemoteProtocolError("bad frame").status is StatusCode.INTERNAL
    assert FrameTooLarge(2048, 1024).status is StatusCode.INTERNAL
    assert LocalProtocolError("not open").status is StatusCode.INTERNAL


def test_a_version_mismatch_is_a_failed_precondition_naming_both_versions():
    error = VersionMismatch("client", 7, 1)
    assert isinstance(error, RemoteProtocolError)
    assert error.status is StatusCode.FAILED_PRECONDITION
    assert (error.peer_version, error.version) == (7, 1)
    assert str(error) == ("protocol version mismatch: the client speaks version 7, "
                          "this server speaks version 1")
    assert str(VersionMismatch("server", 2, 1)) == (
        "protocol version mismatch: the server speaks version 2, this client speaks version 1")


def test_message_too_large_is_resource_exhausted_and_still_in_core_session():
    assert session_module.MessageTooLarge is MessageTooLarge
    assert issubclass(MessageTooLarge, LocalProtocolError)
    assert MessageTooLarge(5000, 1024).status is StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("role, version", [(Role.SERVER, 2), (Role.CLIENT, 3)])
def test_the_session_raises_version_mismatch(role, version):
    session = Session(role, peer_id="me", session_id="S")
    env = wire_pb2.Envelope()
    if role is Role.CLIENT:
        session.start(0.0)
        wire(session)
        env.welcome.version = version
    else:
        env.hello.version = version
    with pytest.raises(VersionMismatch) as info:
        session.receive_data(framed(env), 0.0)
    assert info.value.peer_version == version
    assert info.value.status is StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize("code", [StatusCode.UNAVAILABLE, StatusCode.OK, 14, 0])
def test_from_status_unavailable_and_ok_are_peer_lost(code):
    error = RpcError.from_status(code, "server stopped", "more")
    assert type(error) is PeerLost
    assert (error.code, error.message, error.details) == (StatusCode.UNAVAILABLE, "server stopped",
                                                          "more")


@pytest.mark.parametrize("code, expected", [(StatusCode.RESOURCE_EXHAUSTED, StatusCode.RESOURCE_EXHAUSTED),
                                            (9, StatusCode.FAILED_PRECONDITION),
                                            (999, StatusCode.UNKNOWN)])
def test_from_status_other_codes_are_rpc_errors(code, expected):
    error = RpcError.from_status(code, "why")
    assert type(error) is RpcError
    assert (error.code, error.message, error.details) == (expected, "why", None)
