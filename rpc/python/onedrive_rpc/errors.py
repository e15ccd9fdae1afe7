"""Errors users catch, and protocol errors named by whose fault they are.

Errors cross the wire as a status (code, message, details); inside the
library, exceptions say who broke the protocol: us (LocalProtocolError) or
the other side (RemoteProtocolError), as in h11. The protocol errors and
StatusCode are defined by the sans-IO core (core/errors.py) and are the
same objects here.
"""
from __future__ import annotations

from typing import Iterable, Optional, Tuple

from .core.errors import (AuthenticationFailed, FrameTooLarge, LocalProtocolError, MessageTooLarge,
                          MetadataTooLarge, PeerMetadataTooLarge, ProtocolError,
                          ReadBudgetExceeded, RemoteProtocolError, ResumeRefused, StatusCode,
                          VersionMismatch, Violation)

__all__ = [
    "StatusCode",
    "RpcError",
    "Violation",
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
    `violations` (a tuple of Violation, usually with INVALID_ARGUMENT) say
    which fields of the message broke which rules, so that a program can
    point at them and a person sees them in str(); they cross the wire as
    the Status's BadRequest (spec §6.1).
    """

    def __init__(self, code: StatusCode, message: str = "",
                 details: Optional[str] = None,
                 violations: Iterable[Violation] = ()) -> None:
        self.code = StatusCode(code)
        self.message = message
        self.details = details
        self.violations: Tuple[Violation, ...] = _violations(violations) if violations else ()
        super().__init__(code, message)

    @classmethod
    def from_status(cls, code: int, message: str = "",
                    details: Optional[str] = None,
                    violations: Iterable[Violation] = ()) -> "RpcError":
        """The error for a status the peer ended a connection with: PeerLost
        for UNAVAILABLE and OK (it went away, nothing failed on its side),
        else an RpcError with the code (numbers we do not know: UNKNOWN)."""
        status = StatusCode.from_wire(code)
        if status == StatusCode.UNAVAILABLE or status == StatusCode.OK:
            return PeerLost(message, details)
        return RpcError(status, message, details, violations)

    @classmethod
    def from_close(cls, code: int, message: str = "",
                   violations: Iterable[Violation] = ()) -> "RpcError":
        """The error for a Close frame the peer sent (in the handshake or
        later): from_status, saying that the peer closed the connection
        when it went away in order."""
        error = cls.from_status(code, message, violations=violations)
        if isinstance(error, PeerLost):
            return PeerLost(f"peer closed the connection: {message}")
        return error

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        for violation in self.violations:
            text += "\n  " + describe(violation)
        if self.details:
            text += "\n" + self.details
        return text

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.code.name}, {self.message!r}"
                f"{', details=...' if self.details else ''}"
                f"{f', violations={list(self.violations)!r}' if self.violations else ''})")


def describe(violation: Violation) -> str:
    """One violation for people: "path: must have prefix `/` [string.prefix]"
    (a rule on the whole message: no field before it)."""
    where = f"{violation.field}: " if violation.field else ""
    rule = f" [{violation.rule}]" if violation.rule else ""
    return f"{where}{violation.message}{rule}"


def _violations(violations: Iterable[Violation]) -> Tuple[Violation, ...]:
    # Plain (field, rule, message) tuples are taken too, as Violations.
    return tuple(v if type(v) is Violation else Violation(*v) for v in violations)


class PeerLost(RpcError):
    """The connection to the peer is gone: what was pending on it failed."""

    def __init__(self, message: str = "peer lost",
                 details: Optional[str] = None) -> None:
        super().__init__(StatusCode.UNAVAILABLE, message, details)


class TransportError(OSError):
    """A connection could not be made, or broke; wraps the OS error."""
