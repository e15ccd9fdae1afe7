"""Regenerate the committed _pb2.py/.pyi files from rpc/protos, or check them.

    python rpc/protos/generate.py          # rewrite the generated files
    python rpc/protos/generate.py --check  # fail if any differs (tox -e protos)

Uses grpc_tools.protoc, pinned in tox.ini, so a new protoc release cannot
change the output on its own.
"""
import filecmp
import pathlib
import sys
import tempfile

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent
OUT = ROOT.parent / "python"
PROTOS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "onedrive_rpc").rglob("*.proto"))


def generate(out_dir: pathlib.Path) -> None:
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    args = ["protoc", f"-I{ROOT}", f"-I{include}",
            f"--python_out={out_dir}", f"--pyi_out={out_dir}", *PROTOS]
    if protoc.main(args) != 0:
        sys.exit(f"protoc failed: {' '.join(args)}")


def generated_files(base: pathlib.Path):
    for proto in PROTOS:
        stem = proto[:-len(".proto")]
        for suffix in ("_pb2.py", "_pb2.pyi"):
            yield pathlib.Path(stem + suffix)


def main() -> int:
    check = "--check" in sys.argv[1:]
    if not check:
        generate(OUT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = pathlib.Path(tmp)
        generate(fresh)
        stale = [str(name) for name in generated_files(fresh)
                 if not (OUT / name).exists()
                 or not filecmp.cmp(fresh / name, OUT / name, shallow=False)]
    if stale:
        print("stale generated files (run python rpc/protos/generate.py):", *stale, sep="\n  ")
        return 1
    print(f"{len(PROTOS)} protos: generated files are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
