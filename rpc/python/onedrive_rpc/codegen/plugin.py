"""protoc-gen-onedrive_rpc: protoc's CodeGeneratorRequest on stdin, files out.

Set ONEDRIVE_RPC_CODEGEN_DUMP=path to save the request, so a generation
bug can be replayed with `protoc-gen-onedrive_rpc < path`.
"""
from __future__ import annotations

import os
import sys
from typing import Dict

from google.protobuf.compiler import plugin_pb2

from .model import build_file
from .render import output_name, render_module, render_stub

__all__ = ["generate", "main"]


def _options(parameter: str) -> Dict[str, str]:
    """`--onedrive_rpc_opt=module_prefix=my.pkg` (comma-separated key=value)."""
    options = {}
    for item in filter(None, parameter.split(",")):
        key, sep, value = item.partition("=")
        if key not in _OPTIONS or not sep:
            raise ValueError(f"unknown option {item!r} (known: {', '.join(_OPTIONS)}=...)")
        options[key] = value
    return options


_OPTIONS = ("module_prefix",)


def generate(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    response = plugin_pb2.CodeGeneratorResponse()
    response.supported_features = plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    files = {f.name: f for f in request.proto_file}
    try:
        options = _options(request.parameter)
        for name in request.file_to_generate:
            model = build_file(files[name], files, options.get("module_prefix", ""))
            if not model.services:
                continue
            for suffix, render in ((".py", render_module), (".pyi", render_stub)):
                out = response.file.add()
                out.name = output_name(name, suffix)
                out.content = render(model)
    except Exception as exc:  # protoc shows this to the user
        response.error = f"protoc-gen-onedrive_rpc: {type(exc).__name__}: {exc}"
    return response


def main() -> None:
    data = sys.stdin.buffer.read()
    dump = os.environ.get("ONEDRIVE_RPC_CODEGEN_DUMP")
    if dump:
        with open(dump, "wb") as f:
            f.write(data)
    request = plugin_pb2.CodeGeneratorRequest()
    request.ParseFromString(data)
    sys.stdout.buffer.write(generate(request).SerializeToString())


if __name__ == "__main__":
    main()
