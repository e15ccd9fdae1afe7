"""Errors users catch, and protocol errors named by whose fault they are.

Errors cross the wire as a status (code, message, details); inside the
library, exceptions say who broke the protocol: us (LocalProtocolError) or
the other side (RemoteProtocolError), as in h11.
"""
from __future__ import annotations

import enum
from typing import Optional

__all__ = [
    "StatusCode",
    "RpcError",
    "PeerLost",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "FrameTooLarge",
    "TransportError",
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


class RpcError(Exception):
    """A call failed: `code` says how, `message` says why for a human.

    Handlers raise it to return a status other than OK; callers catch it.
    `details` carries optional extra text (e.g. a remote traceback).
    """

    def __init__(self, code: StatusCode, message: str = "",
                 details: Optional[str] = None) -> None:
        self.code = StatusCode(code)
        self.message = message
        self.details = details
        super().__init__(code, message)

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        if self.details:
            text += "\n" + self.details
        return text

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.code.name}, {self.message!r}"
                f"{', details=...' if self.details else ''})")


class PeerLost(RpcError):
    """The connection to the peer is gone: what was pending on it failed."""

    def __init__(self, message: str = "peer lost",
                 details: Optional[str] = None) -> None:
        super().__init__(StatusCode.UNAVAILABLE, message, details)


class ProtocolError(Exception):
    """The wire protocol was broken; the connection cannot go on."""


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class FrameTooLarge(RemoteProtocolError):
    """A frame's length prefix exceeds the configured maximum frame size."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"frame of {size} bytes exceeds the maximum frame size of "
            f"{limit} bytes")


class TransportError(OSError):
    """A connection could not be made, or broke; wraps the OS error."""
