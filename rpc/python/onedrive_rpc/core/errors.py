"""Protocol errors, named by whose fault they are, and the status codes.

The sans-IO core raises these; `onedrive_rpc.errors` re-exports them, so
`rpc.RemoteProtocolError` and `onedrive_rpc.core.errors.RemoteProtocolError`
are the same class. Errors cross the wire as a status (code, message,
details); inside the library, exceptions say who broke the protocol: us
(LocalProtocolError) or the other side (RemoteProtocolError), as in h11.
"""
from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = [
    "StatusCode",
    "Violation",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "FrameTooLarge",
    "VersionMismatch",
    "MessageTooLarge",
    "MetadataTooLarge",
    "PeerMetadataTooLarge",
    "ReadBudgetExceeded",
    "ResumeRefused",
    "AuthenticationFailed",
]


class StatusCode(enum.IntEnum):
    """Call outcome codes, numbered as gRPC's so people recognise them."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @classmethod
    def from_wire(cls, code: int) -> "StatusCode":
        """A code from a peer; numbers we do not know become UNKNOWN."""
        try:
            return cls(code)
        except ValueError:
            return cls.UNKNOWN


class Violation(NamedTuple):
    """One rule a message broke, as an INVALID_ARGUMENT error carries it
    (on the wire: a google.rpc.BadRequest field violation), so a caller
    learns which field to fix without parsing the message.

    `field`: the field's path from the message's root ("path",
    "items[2].path", 'labels["k"]'), "" for a rule on the whole message;
    `rule`: the rule's id ("string.prefix"); `message`: for people
    ("must have prefix `/`").
    """

    field: str
    rule: str
    message: str


class ProtocolError(Exception):
    """The wire protocol was broken; the connection cannot go on.

    `status` is the code to report it with where it becomes an RpcError or
    a Close (h11's error_status_hint): a subclass says what it means, so the
    edge does not read the message to find out.
    """

    status: StatusCode = StatusCode.INTERNAL


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class FrameTooLarge(RemoteProtocolError):
    """A frame's length prefix exceeds the configured maximum frame size
    (or, before the handshake, the smaller limit that applies until then)."""

    def __init__(self, size: int, limit: int, before_handshake: bool = False) -> None:
        self.size = size
        self.limit = limit
        when = " before the handshake" if before_handshake else ""
        super().__init__(
            f"frame of {size} bytes exceeds the maximum frame size of "
            f"{limit} bytes{when}")


class VersionMismatch(RemoteProtocolError):
    """The peer speaks a protocol version we do not; the message names both."""

    status = StatusCode.FAILED_PRECONDITION

    def __init__(self, peer: str, peer_version: int, version: int) -> None:
        self.peer_version = peer_version
        self.version = version
        us = "server" if peer == "client" else "client"
        super().__init__(f"protocol version mismatch: the {peer} speaks version "
                         f"{peer_version}, this {us} speaks version {version}")


class MessageTooLarge(LocalProtocolError):
    """We were asked to send a frame larger than the peer accepts."""

    status = StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"message of {size} bytes exceeds the peer's maximum "
                         f"frame size of {limit} bytes")


def _metadata_message(where: str, size: int, limit: int, unit: str) -> str:
    return f"{where} metadata of {size} {unit} exceeds the limit of {limit} {unit}"


class MetadataTooLarge(MessageTooLarge):
    """We were asked to send metadata (Hello, Request, Notify) beyond the
    limits on its entries or bytes (core/metadata.py); nothing was sent.
    A MessageTooLarge, so a caller gets RESOURCE_EXHAUSTED like for a
    payload that does not fit."""

    def __init__(self, where: str, size: int, limit: int, unit: str) -> None:
        self.size = size
        self.limit = limit
        self.unit = unit
        LocalProtocolError.__init__(self, _metadata_message(where, size, limit, unit))


class PeerMetadataTooLarge(RemoteProtocolError):
    """The peer sent metadata beyond our limits on its entries or bytes
    (core/metadata.py). RESOURCE_EXHAUSTED, as gRPC answers a header list
    over its limit: the limit is this side's, the request may be fine for
    another (INVALID_ARGUMENT would say it is wrong everywhere)."""

    status = StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, where: str, size: int, limit: int, unit: str) -> None:
        self.size = size
        self.limit = limit
        self.unit = unit
        super().__init__(_metadata_message(where, size, limit, unit))


class ReadBudgetExceeded(RemoteProtocolError):
    """A large frame would take the bytes a server holds for frames being
    received, over all its connections, past its budget
    (max_server_read_bytes): the connection that needs more is closed with
    RESOURCE_EXHAUSTED, so many peers sending large frames slowly cannot
    make the server hold more than the budget."""

    status = StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, needed: int, used: int, limit: int) -> None:
        self.needed = needed
        super().__init__(f"frames being received hold {used} bytes on this server; a buffer of "
                         f"{needed} bytes more would exceed its limit of {limit} bytes "
                         f"(max_server_read_bytes)")


class ResumeRefused(RemoteProtocolError):
    """A Hello asked to resume a session without its resume token: a
    session id is no secret (other peers see it), so it resumes nothing.
    UNAUTHENTICATED; the session itself, and its own client, go on."""

    status = StatusCode.UNAUTHENTICATED

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"cannot resume session {session_id}: the resume token does not match "
                         f"(only the client the session's Welcome went to can resume it)")


class AuthenticationFailed(RemoteProtocolError):
    """The handshake's authentication failed: the peer does not know the
    shared secret, did not offer to prove it, or (seen from a client) the
    server did not prove it. UNAUTHENTICATED; the connection is closed."""

    status = StatusCode.UNAUTHENTICATED
