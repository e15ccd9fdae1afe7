"""Regenerate the committed _pb2.py/.pyi files from rpc/protos, or check them.

    python rpc/protos/generate.py          # rewrite the generated files
    python rpc/protos/generate.py --check  # fail if any differs (tox -e protos)

Uses grpc_tools.protoc, pinned in tox.ini, so a new protoc release cannot
change the output on its own. So is protovalidate, whose descriptor of
buf/validate/validate.proto becomes the shipped buf.validate.validate_pb2.
"""
import contextlib
import filecmp
import io
import pathlib
import sys
import tempfile

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent
OUT = ROOT.parent / "python"
PROTOS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "onedrive_rpc").rglob("*.proto"))

# The example service, generated with our own plugin into the package
# (onedrive_rpc.examples.onedrive.sync_pb2 / sync_rpc).
EXAMPLES = ROOT / "examples"
EXAMPLE_PROTOS = sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*.proto"))
EXAMPLE_PACKAGE = "onedrive_rpc.examples"
EXAMPLE_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_rpc.py", "_rpc.pyi")
sys.path.insert(0, str(OUT))  # onedrive_rpc.codegen, from this checkout


# Generated modules that live somewhere other than where protoc puts them.
# The .proto keeps its own path and package, so the bytes on the wire and the
# descriptor names do not change: wire.proto is the sans-IO core's, which
# imports nothing from the package above it.
MOVED = {"onedrive_rpc/wire.proto": "onedrive_rpc/core/wire_pb2"}


def _protoc_stem(proto: str) -> str:
    return proto[:-len(".proto")] + "_pb2"


def module_stem(proto: str) -> str:
    """Where the generated module of `proto` goes, without the suffix."""
    return MOVED.get(proto, _protoc_stem(proto))


def _moved(text: bytes, source: str, target: str) -> bytes:
    """The generated module renamed: its classes' __module__ is the new name."""
    old = f"'{source.replace('/', '.')}'".encode()
    if text.count(old) != 1:
        sys.exit(f"cannot move {source}.py: expected its module name {old.decode()} once")
    text = text.replace(old, f"'{target.replace('/', '.')}'".encode())
    source_line = text.index(b"\n", text.index(b"# source: ")) + 1
    return (text[:source_line] + f"# moved to {target}.py by rpc/protos/generate.py\n".encode()
            + text[source_line:])


# protovalidate's rules (buf/validate/validate.proto) as a google.protobuf
# module, shipped under the name every generated _pb2 that imports the file
# expects: buf.validate.validate_pb2 (rpc/python/buf/validate/, namespace
# packages). No distribution on PyPI ships that module or the .proto source;
# protovalidate (pinned in tox.ini) embeds the file's serialized descriptor,
# which protoc compiles through --descriptor_set_in. The descriptor sits at a
# private path of protovalidate: a release that moves it fails here, loudly.
VALIDATE = "buf/validate/validate.proto"


def _validate_descriptor_set(path: pathlib.Path) -> None:
    """A FileDescriptorSet of protovalidate's validate.proto alone (the
    well-known types it imports come from grpc_tools' include path)."""
    from google.protobuf import descriptor_pb2
    try:
        # protobuf-py's descriptor (protovalidate's runtime), not google.protobuf's
        from protovalidate._gen.buf.validate import validate_pb
    except ImportError as exc:
        sys.exit(f"needs protovalidate, pinned in tox.ini (pip install protovalidate==2.1.0): {exc}")
    files = descriptor_pb2.FileDescriptorSet()
    files.file.add().ParseFromString(validate_pb.desc().proto.to_binary())
    if files.file[0].name != VALIDATE:
        sys.exit(f"protovalidate's embedded descriptor is {files.file[0].name!r}, not {VALIDATE!r}")
    path.write_bytes(files.SerializeToString())


def generate_validate(out_dir: pathlib.Path) -> None:
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        descriptor_set = pathlib.Path(tmp) / "validate.binpb"
        _validate_descriptor_set(descriptor_set)
        args = ["protoc", f"-I{include}", f"--descriptor_set_in={descriptor_set}",
                f"--python_out={out_dir}", f"--pyi_out={out_dir}", VALIDATE]
        if protoc.main(args) != 0:
            sys.exit(f"protoc failed: {' '.join(args)}")


def generate(out_dir: pathlib.Path) -> None:
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        raw = pathlib.Path(tmp) / "out"
        raw.mkdir()
        # onedrive_rpc/testing/echo.proto imports buf/validate/validate.proto.
        descriptor_set = pathlib.Path(tmp) / "validate.binpb"
        _validate_descriptor_set(descriptor_set)
        args = ["protoc", f"-I{ROOT}", f"-I{include}", f"--descriptor_set_in={descriptor_set}",
                f"--python_out={raw}", f"--pyi_out={raw}", *PROTOS]
        if protoc.main(args) != 0:
            sys.exit(f"protoc failed: {' '.join(args)}")
        for proto in PROTOS:
            source, target = _protoc_stem(proto), module_stem(proto)
            for suffix in (".py", ".pyi"):
                text = (raw / (source + suffix)).read_bytes()
                if target != source and suffix == ".py":
                    text = _moved(text, source, target)
                dest = out_dir / (target + suffix)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(text)


def generate_examples(out_dir: pathlib.Path) -> None:
    from onedrive_rpc.codegen.__main__ import main as codegen
    target = out_dir / EXAMPLE_PACKAGE.replace(".", "/")
    with contextlib.redirect_stdout(io.StringIO()):
        status = codegen(["-I", str(EXAMPLES), "--out", str(target),
                          "--module-prefix", EXAMPLE_PACKAGE, *EXAMPLE_PROTOS])
    if status != 0:
        sys.exit(f"generating the examples failed: {EXAMPLE_PROTOS}")


def generated_files(base: pathlib.Path):
    for proto in PROTOS:
        for suffix in (".py", ".pyi"):
            yield pathlib.Path(module_stem(proto) + suffix)
    for suffix in (".py", ".pyi"):
        yield pathlib.Path(_protoc_stem(VALIDATE) + suffix)
    for proto in EXAMPLE_PROTOS:
        stem = EXAMPLE_PACKAGE.replace(".", "/") + "/" + proto[:-len(".proto")]
        for suffix in EXAMPLE_SUFFIXES:
            yield pathlib.Path(stem + suffix)


def main() -> int:
    check = "--check" in sys.argv[1:]
    if not check:
        generate(OUT)
        generate_validate(OUT)  # first: the examples' codegen imports it
        generate_examples(OUT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = pathlib.Path(tmp)
        generate(fresh)
        generate_validate(fresh)
        generate_examples(fresh)
        stale = [str(name) for name in generated_files(fresh)
                 if not (OUT / name).exists()
                 or not filecmp.cmp(fresh / name, OUT / name, shallow=False)]
    left_over = [f"{_protoc_stem(proto)}{suffix}" for proto in MOVED for suffix in (".py", ".pyi")
                 if (OUT / (_protoc_stem(proto) + suffix)).exists()]
    if left_over:
        print("generated files left where protoc puts them (moved; delete them):",
              *left_over, sep="\n  ")
        return 1
    if stale:
        print("stale generated files (run python rpc/protos/generate.py):", *stale, sep="\n  ")
        return 1
    print(f"{len(PROTOS) + 1 + len(EXAMPLE_PROTOS)} protos: generated files are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
