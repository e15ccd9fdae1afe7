"""Errors users catch, and protocol errors named by whose fault they are.

Errors cross the wire as a status (code, message, details); inside the
library, exceptions say who broke the protocol: us (LocalProtocolError) or
the other side (RemoteProtocolError), as in h11. The protocol errors and
StatusCode are defined by the sans-IO core (core/errors.py) and are the
same objects here.
"""
from __future__ import annotations

from typing import Optional

from .core.errors import (AuthenticationFailed, FrameTooLarge, LocalProtocolError, MessageTooLarge,
                          MetadataTooLarge, PeerMetadataTooLarge, ProtocolError,
                          ReadBudgetExceeded, RemoteProtocolError, ResumeRefused, StatusCode,
                          VersionMismatch)

__all__ = [
    "StatusCode",
    "RpcError",
    "PeerLost",
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
    "TransportError",
]


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

    @classmethod
    def from_status(cls, code: int, message: str = "",
                    details: Optional[str] = None) -> "RpcError":
        """The error for a status the peer ended a connection with: PeerLost
        for UNAVAILABLE and OK (it went away, nothing failed on its side),
        else an RpcError with the code (numbers we do not know: UNKNOWN)."""
        status = StatusCode.from_wire(code)
        if status == StatusCode.UNAVAILABLE or status == StatusCode.OK:
            return PeerLost(message, details)
        return RpcError(status, message, details)

    @classmethod
    def from_close(cls, code: int, message: str = "") -> "RpcError":
        """The error for a Close frame the peer sent (in the handshake or
        later): from_status, saying that the peer closed the connection
        when it went away in order."""
        error = cls.from_status(code, message)
        if isinstance(error, PeerLost):
            return PeerLost(f"peer closed the connection: {message}")
        return error

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


class TransportError(OSError):
    """A connection could not be made, or broke; wraps the OS error."""
