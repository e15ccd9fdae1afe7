"""Messages to payloads, with large bytes fields kept away from protobuf's
encoder.

protobuf's encoder (upb) writes into a buffer that doubles as it grows
and then copies it out, so a message holding a 1 MiB bytes field passes
through 3 MiB of fresh memory. Under glibc's default malloc thresholds that
memory is mapped and given back on every call: about 740 page faults and
2.4 ms per MiB on the 2-core test machine, twenty times the copying
(bench/reqresp.py W3; onedrive_rpc.tuning is the process-wide cure).

So a singular top-level bytes field of LARGE_FIELD bytes or more is not
encoded by protobuf: the payload is Pieces, the rest of the message as
protobuf encodes it, then the field's tag and length, then its bytes, all
written with one vectored send. Joining them instead would cost the page
faults again. A parser takes fields in any order, so the payload means
exactly what SerializeToString() would have given.

The rest of the message is a copy with the large fields cleared, which
copies their bytes once more (as does getting them out of the message).
Building it field by field instead saves that copy but leaves glibc free
to hand the heap back after each call: 256 page faults per 1 MiB echo, the
cost this module exists to avoid.

Only payloads bound for the wire (calls, replies, stream items,
notifications) take this form; what may be handed to this process's own
receivers (published, queued, broadcast messages) is plain bytes.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from .core.framing import Payload, Pieces, varint

__all__ = ["serialize", "LARGE_FIELD"]

#: A bytes field this long (or longer) is written by us, not by protobuf.
LARGE_FIELD = 64 * 1024

_LENGTH_DELIMITED = 2

# Message class -> its singular top-level bytes fields: (name, tag bytes).
_bytes_fields: Dict[type, Tuple[Tuple[str, bytes], ...]] = {}


def serialize(message: Message) -> Payload:
    """`message.SerializeToString()`, as Pieces when it holds large bytes."""
    fields = _bytes_fields.get(type(message))
    if fields is None:
        fields = _bytes_fields[type(message)] = _bytes_fields_of(message)
    large = None
    for name, tag in fields:
        value = getattr(message, name)
        if len(value) >= LARGE_FIELD:
            if large is None:
                large = []
            large.append((name, tag, value))
    if large is None or not message.IsInitialized():
        return message.SerializeToString()  # (raises for missing required fields)
    parts: List[bytes] = []
    rest = type(message)()
    rest.CopyFrom(message)
    for name, _, _ in large:
        rest.ClearField(name)
    head = rest.SerializePartialToString()
    for _, tag, value in large:
        parts += (b"".join((head, tag, varint(len(value)))), value)
        head = b""
    return Pieces(parts)


def _bytes_fields_of(message: Message) -> Tuple[Tuple[str, bytes], ...]:
    return tuple((f.name, varint(f.number << 3 | _LENGTH_DELIMITED))
                 for f in message.DESCRIPTOR.fields
                 if f.type == FieldDescriptor.TYPE_BYTES and not f.is_repeated)
