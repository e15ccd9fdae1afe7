"""python -m onedrive_rpc.codegen -I PROTO_DIR --out DIR FILE.proto...

Runs protoc (from grpcio-tools: pip install "onedrive-rpc[codegen]") with
the standard Python output (_pb2.py + .pyi) and ours (_rpc.py + .pyi). The
include path gets onedrive_rpc/options.proto, the wire contract,
protobuf's well-known types and protovalidate's buf/validate/validate.proto
(message rules) by itself.
"""
from __future__ import annotations

import argparse
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

__all__ = ["main", "proto_include_dir"]

_PACKAGE = Path(__file__).resolve().parent.parent


def proto_include_dir() -> str:
    """Where `onedrive_rpc/options.proto` lives: shipped in the package, or in a checkout."""
    for candidate in (_PACKAGE / "_protos", _PACKAGE.parent.parent / "protos"):
        if (candidate / "onedrive_rpc" / "options.proto").is_file():
            return str(candidate)
    raise SystemExit("cannot find onedrive_rpc/options.proto: is onedrive-rpc installed completely?")


def _validate_descriptor_set(directory: str) -> str:
    """buf/validate/validate.proto for protoc, as a FileDescriptorSet file.

    No .proto source of it ships on PyPI; its descriptor does, in the
    google.protobuf module this distribution ships (buf.validate.validate_pb2,
    which every generated _pb2 importing the file imports too). protoc reads
    a file it cannot find on -I from --descriptor_set_in, so a user's own
    buf/validate/validate.proto on -I wins. The well-known types it imports
    come from the include path.
    """
    from google.protobuf import descriptor_pb2
    try:
        from buf.validate import validate_pb2
    except ImportError as exc:
        raise SystemExit(f"cannot import buf.validate.validate_pb2 ({exc}): "
                         f"is onedrive-rpc installed completely?")
    files = descriptor_pb2.FileDescriptorSet()
    files.file.add().ParseFromString(validate_pb2.DESCRIPTOR.serialized_pb)  # protoc's own bytes
    path = os.path.join(directory, "validate.binpb")
    with open(path, "wb") as f:
        f.write(files.SerializeToString())
    return path


def _plugin_shim(directory: str) -> str:
    """An executable protoc can run that is our plugin, in this very Python."""
    path = os.path.join(directory, "protoc-gen-onedrive_rpc")
    with open(path, "w") as f:
        f.write(f"#!{sys.executable}\n"
                f"import sys\n"
                f"sys.path.insert(0, {str(_PACKAGE.parent)!r})\n"
                f"from onedrive_rpc.codegen.plugin import main\n"
                f"main()\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onedrive_rpc.codegen",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("-I", "--proto_path", action="append", default=[], help="where imports are found")
    parser.add_argument("--out", required=True, help="directory for the generated modules")
    parser.add_argument("--module-prefix", default="",
                        help="Python package the output lives in (e.g. myapp.gen): the "
                             "generated _rpc.py imports its _pb2 modules from there")
    parser.add_argument("files", nargs="+", help=".proto files to compile")
    args = parser.parse_args(argv)
    try:
        from grpc_tools import protoc
    except ImportError:
        print("error: needs grpcio-tools: pip install \"onedrive-rpc[codegen]\"", file=sys.stderr)
        return 2
    well_known = str(Path(protoc.__file__).resolve().parent / "_proto")
    includes = [*args.proto_path, proto_include_dir(), well_known]
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        command = ["protoc", *[f"-I{d}" for d in includes],
                   f"--descriptor_set_in={_validate_descriptor_set(tmp)}",
                   f"--python_out={args.out}", f"--pyi_out={args.out}",
                   f"--plugin=protoc-gen-onedrive_rpc={_plugin_shim(tmp)}",
                   f"--onedrive_rpc_out={args.out}", *args.files]
        if args.module_prefix:
            command.insert(-len(args.files), f"--onedrive_rpc_opt=module_prefix={args.module_prefix}")
        return protoc.main(command)


if __name__ == "__main__":
    sys.exit(main())
