"""Limits on metadata: the application's key/value pairs in Hello, Request
and Notify (rpc/protos/README.md §5.1).

The wire does not bound metadata, but a receiver parses it and keeps it as a
dict of str for every call it serves, before any handler runs. So each side
limits what it accepts, as gRPC does (8 KiB of header list by default):

- at most `max_entries` pairs (default 64), and
- at most `max_size` bytes (default 8 KiB): the UTF-8 lengths of every key
  and value, summed.

A receiver refuses more with RESOURCE_EXHAUSTED (PeerMetadataTooLarge): a
Request is answered so without running its handler; a Hello or a Notify,
which have no answer, with a Close. A sender checks against its own limits
before anything is queued and refuses locally (MetadataTooLarge).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

from .errors import PeerMetadataTooLarge

__all__ = ["DEFAULT_MAX_METADATA_SIZE", "DEFAULT_MAX_METADATA_ENTRIES", "excess", "received",
           "validate_limits"]

DEFAULT_MAX_METADATA_SIZE = 8 * 1024
DEFAULT_MAX_METADATA_ENTRIES = 64

# UTF-8 takes at most this many bytes for one character.
_MAX_UTF8 = 4


def excess(metadata: Mapping[str, str], max_size: int,
           max_entries: int) -> Optional[Tuple[int, int, str]]:
    """The first limit `metadata` exceeds, as (size, limit, unit); None
    when it is within both. The count is looked at before any entry."""
    count = len(metadata)
    if count > max_entries:
        return count, max_entries, "entries"
    chars = 0
    for key, value in metadata.items():
        chars += len(key) + len(value)
    if chars * _MAX_UTF8 <= max_size:
        return None  # within, whatever the characters
    size = 0
    for key, value in metadata.items():
        size += _utf8_len(key) + _utf8_len(value)
    return (size, max_size, "bytes") if size > max_size else None


def _utf8_len(text: str) -> int:
    # isascii() reads a flag: only text with other characters is encoded.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def received(field: Mapping[str, str], max_size: int, max_entries: int,
             where: str) -> Dict[str, str]:
    """A metadata map the peer sent, as a dict; PeerMetadataTooLarge if it
    exceeds our limits (too many entries: refused before any is copied)."""
    count = len(field)
    if count > max_entries:
        raise PeerMetadataTooLarge(where, count, max_entries, "entries")
    metadata = dict(field)
    found = excess(metadata, max_size, max_entries)
    if found is not None:
        raise PeerMetadataTooLarge(where, *found)
    return metadata


def validate_limits(max_size: int, max_entries: int) -> None:
    """ValueError unless both limits are non-negative ints (0: no metadata)."""
    for name, value in (("max_metadata_size", max_size), ("max_metadata_entries", max_entries)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, not {value!r}")
