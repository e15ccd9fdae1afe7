"""Limits.max_metadata_size / max_metadata_entries: defaults and validation."""
from __future__ import annotations

import pytest

import onedrive_rpc as rpc
from onedrive_rpc.core.metadata import DEFAULT_MAX_METADATA_ENTRIES, DEFAULT_MAX_METADATA_SIZE


def test_the_defaults_are_the_protocols():
    limits = rpc.Limits()
    assert (limits.max_metadata_size, limits.max_metadata_entries) == (8 * 1024, 64)
    assert (limits.max_metadata_size, limits.max_metadata_entries) == (DEFAULT_MAX_METADATA_SIZE,
                                                                       DEFAULT_MAX_METADATA_ENTRIES)


def test_zero_means_no_metadata_and_is_allowed():
    rpc.Limits(max_metadata_size=0, max_metadata_entries=0)


@pytest.mark.parametrize("field,value", [("max_metadata_size", -1), ("max_metadata_entries", -1),
                                         ("max_metadata_size", 8.5), ("max_metadata_entries", "64")])
def test_bad_values_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        rpc.Limits(**{field: value})
