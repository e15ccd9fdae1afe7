"""Names the runtime and the code generator share; nothing here does I/O.

`snake_case` makes a method's Python attribute from its proto name, and the
pattern helpers read the `(onedrive_rpc.pattern)` method option. Both live
here, below everything else, so that services (service.py) and the protoc
plugin (codegen/) agree on them, and the plugin needs nothing but protobuf
to learn them. The pattern numbers come from options_pb2, generated from
options.proto: there is no second copy to keep in step.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Optional

from google.protobuf import descriptor_pb2

from . import options_pb2

__all__ = ["snake_case", "PATTERN_NAMES", "declared_pattern", "malformed_method"]

_WORD_BOUNDARY = re.compile(r"((?<=[a-z0-9])[A-Z]|(?<!^)[A-Z](?=[a-z]))")


_METHOD_PATH = re.compile(r"/[^/\s]+/[^/\s]+")


def malformed_method(path: str) -> Optional[str]:
    """Why `path` is not a method name as the wire carries it (spec §5.1:
    "/<package>.<Service>/<Method>"), or None if it is one."""
    if _METHOD_PATH.fullmatch(path):
        return None
    return f"method {path!r} is not of the form /<package>.<Service>/<Method>"


def snake_case(name: str) -> str:
    """GetItem -> get_item, ListHTTPItems -> list_http_items."""
    return _WORD_BOUNDARY.sub(r"_\1", name).lower()


#: Pattern number -> its name in options.proto: {0: "PATTERN_DEFAULT", 1: "REQUEST_RESPONSE", ...}.
PATTERN_NAMES: Dict[int, str] = {number: name for name, number in options_pb2.Pattern.items()}

# The extension; its stub types it as a plain FieldDescriptor.
_PATTERN_OPTION: Any = options_pb2.pattern


def declared_pattern(options: descriptor_pb2.MethodOptions) -> int:
    """The number `(onedrive_rpc.pattern)` is set to in a method's options;
    PATTERN_DEFAULT (0) when it is not set. Works on options parsed before
    options.proto was loaded too (protoc's request to a plugin), where the
    option is still an unknown field."""
    if not options.HasExtension(_PATTERN_OPTION):
        options = descriptor_pb2.MethodOptions.FromString(options.SerializeToString())
    return int(options.Extensions[_PATTERN_OPTION])
