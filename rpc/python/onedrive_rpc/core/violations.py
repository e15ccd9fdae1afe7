"""Field violations on the wire: `Status.bad_request` (field 4), a
serialized BadRequest numbered as gRPC's google.rpc.BadRequest (spec §6.1).

Written and read by hand, both ways, and only for an error that has them:
a Status without field 4 is encoded and decoded exactly as before. What a
peer sends is decoded defensively, because it is the peer's to choose:

- bytes that are not a BadRequest (truncated, a bad wire type or length,
  text that is not UTF-8) give **no violations**: the error itself still
  arrives with its code and message, and the connection goes on;
- at most MAX_VIOLATIONS are decoded, the rest ignored: an empty field
  violation is 2 bytes on the wire but a Violation of three strings in
  memory, so an unbounded decode of a frame full of them would hold many
  times what was received. Their strings are slices of the bytes received,
  so what is kept is bounded by the frame and by this count.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

from .errors import Violation
from .framing import Frame, varint

__all__ = ["MAX_VIOLATIONS", "encode_violations", "decode_violations"]

#: The most field violations one error carries: sent (the rest are left
#: out) or decoded (the rest ignored). Enough for every field of any
#: message a person writes; small enough that a peer filling a frame with
#: empty violations makes us hold a few kilobytes, not a multiple of the frame.
MAX_VIOLATIONS = 100

# BadRequest.field_violations = 1; FieldViolation.field = 1,
# description = 2, reason = 3: all length-delimited (wire type 2).
_ITEM = b"\x0a"
_FIELD = b"\x0a"
_DESCRIPTION = b"\x12"
_REASON = b"\x1a"


def _text(tag: bytes, text: str) -> bytes:
    if not text:
        return b""
    data = text.encode("utf-8", "replace")  # a lone surrogate must not fail the answer
    return tag + varint(len(data)) + data


def encode_violations(violations: Sequence[Violation]) -> bytes:
    """`violations` (the first MAX_VIOLATIONS) as a serialized BadRequest;
    b"" for none."""
    parts = []
    for violation in violations[:MAX_VIOLATIONS]:
        item = (_text(_FIELD, violation.field) + _text(_DESCRIPTION, violation.message)
                + _text(_REASON, violation.rule))
        parts.append(_ITEM + varint(len(item)) + item)
    return b"".join(parts)


class _Malformed(ValueError):
    pass


def _varint(data: Frame, pos: int) -> Tuple[int, int]:
    """The varint at `pos` and the position after it."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed()
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _skip(data: Frame, pos: int, wire_type: int) -> int:
    """The position after a field (of wire type `wire_type`) we do not read."""
    if wire_type == 0:
        return _varint(data, pos)[1]
    if wire_type == 1:
        end = pos + 8
    elif wire_type == 2:
        length, pos = _varint(data, pos)
        end = pos + length
    elif wire_type == 5:
        end = pos + 4
    else:  # groups (3, 4) are not proto3; 6 and 7 do not exist
        raise _Malformed()
    if end > len(data):
        raise _Malformed()
    return end


def _delimited(data: Frame, pos: int) -> Tuple[int, int]:
    """The start and end of the length-delimited field at `pos`."""
    length, pos = _varint(data, pos)
    end = pos + length
    if end > len(data):
        raise _Malformed()
    return pos, end


def _violation(data: Frame, pos: int, end: int) -> Violation:
    """The FieldViolation in data[pos:end]; unknown fields skipped, the last
    of a repeated one wins (proto3)."""
    texts = ["", "", ""]  # field, description, reason
    while pos < end:
        tag, pos = _varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        if 1 <= number <= 3 and wire_type == 2:
            start, pos = _delimited(data, pos)
            if pos > end:
                raise _Malformed()
            texts[number - 1] = str(data[start:pos], "utf-8")
        elif number:
            pos = _skip(data, pos, wire_type)
            if pos > end:
                raise _Malformed()
        else:  # field number 0 does not exist
            raise _Malformed()
    field, description, reason = texts
    return Violation(field, reason, description)


def decode_violations(data: Frame) -> Tuple[Violation, ...]:
    """The violations of a serialized BadRequest from a peer: the first
    MAX_VIOLATIONS; () for b"" and for bytes that are not a BadRequest (see
    the module)."""
    if not data:
        return ()
    found: List[Violation] = []
    pos = 0
    try:
        while pos < len(data):
            tag, pos = _varint(data, pos)
            if tag == 0x0A:  # field_violations
                start, pos = _delimited(data, pos)
                found.append(_violation(data, start, pos))
                if len(found) == MAX_VIOLATIONS:
                    break
            elif tag >> 3:
                pos = _skip(data, pos, tag & 7)
            else:  # field number 0 does not exist
                raise _Malformed()
    except (_Malformed, UnicodeDecodeError):
        return ()
    return tuple(found)
