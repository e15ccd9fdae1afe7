"""Rules live in the contract: a .proto may import protovalidate's
buf/validate/validate.proto, and `python -m onedrive_rpc.codegen` finds it by
itself (from the shipped buf.validate.validate_pb2), as it finds
onedrive_rpc/options.proto. These test the plumbing only: they call
protovalidate directly; checking messages on the wire is the runtime's.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import onedrive_rpc

pytest.importorskip("grpc_tools")
protovalidate = pytest.importorskip("protovalidate")

# The directory that holds the onedrive_rpc (and buf) this test runs against:
# a checkout's rpc/python, or site-packages.
PACKAGE_PARENT = str(Path(onedrive_rpc.__file__).resolve().parent.parent)

RULES_PROTO = """
syntax = "proto3";

package validateplumbing.v1;

import "buf/validate/validate.proto";
import "google/protobuf/empty.proto";
import "onedrive_rpc/options.proto";

message Rename {
  string path = 1 [(buf.validate.field).string.prefix = "/"];
  int64 size = 2 [(buf.validate.field).int64.gte = 0];
  repeated string tags = 3 [(buf.validate.field).repeated.max_items = 2];
}

service Files {
  rpc Move(Rename) returns (google.protobuf.Empty);
  rpc Moved(Rename) returns (google.protobuf.Empty) {
    option (onedrive_rpc.pattern) = PUBLISH_SUBSCRIBE;
  }
}
"""


def run(*args: str, cwd: Path, block_protovalidate: bool = False) -> subprocess.CompletedProcess:
    """python -m onedrive_rpc.codegen ARGS, on this test's package; with
    block_protovalidate, in a Python in which `import protovalidate` fails."""
    if block_protovalidate:
        command = [sys.executable, "-c", "import sys; sys.modules['protovalidate'] = None; "
                   "from onedrive_rpc.codegen.__main__ import main; sys.exit(main())", *args]
    else:
        command = [sys.executable, "-m", "onedrive_rpc.codegen", *args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [PACKAGE_PARENT, *filter(None, [os.environ.get("PYTHONPATH")])]))
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def codegen(tmp_path: Path, proto: str, name: str = "validateplumbing/v1/files.proto",
            extra_include: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    protos = tmp_path / "protos"
    (protos / name).parent.mkdir(parents=True, exist_ok=True)
    (protos / name).write_text(proto)
    includes = ["-I", str(extra_include)] if extra_include else []
    return run("-I", str(protos), *includes, "--out", str(tmp_path / "gen"), name, cwd=tmp_path,
               **kwargs)


@pytest.fixture
def generated(tmp_path):
    """Imports modules of tmp_path/gen, and forgets them afterwards."""
    sys.path.insert(0, str(tmp_path / "gen"))
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(str(tmp_path / "gen"))
        for name in [n for n in sys.modules if n.split(".")[0] == "validateplumbing"]:
            del sys.modules[name]


def test_a_contract_with_rules_compiles_and_its_rules_hold(tmp_path, generated):
    result = codegen(tmp_path, RULES_PROTO)
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in (tmp_path / "gen/validateplumbing/v1").iterdir())
    assert files == ["files_pb2.py", "files_pb2.pyi", "files_rpc.py", "files_rpc.pyi"]
    assert not (tmp_path / "gen/buf").exists()  # the rules' module comes from onedrive-rpc
    files_pb2 = generated("validateplumbing.v1.files_pb2")
    files_rpc = generated("validateplumbing.v1.files_rpc")
    assert hasattr(files_rpc, "FilesBase") and hasattr(files_rpc, "FilesClient")

    from buf.validate import validate_pb2
    assert validate_pb2.DESCRIPTOR in files_pb2.DESCRIPTOR.dependencies  # the shipped module's

    protovalidate.validate(files_pb2.Rename(path="/a", size=3, tags=["x"]))
    with pytest.raises(protovalidate.ValidationError) as caught:
        protovalidate.validate(files_pb2.Rename(path="a", size=-1, tags=["x", "y", "z"]))
    violations = sorted((v.proto.field.elements[0].field_name, v.proto.rule_id)
                        for v in caught.value.violations)
    assert violations == [("path", "string.prefix"), ("size", "int64.gte"),
                          ("tags", "repeated.max_items")]


def test_codegen_needs_no_protovalidate(tmp_path):
    result = codegen(tmp_path, RULES_PROTO, block_protovalidate=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "gen/validateplumbing/v1/files_pb2.py").is_file()


def test_a_validate_proto_of_the_users_own_on_the_include_path_wins(tmp_path):
    # A stand-in with an option the real validate.proto lacks: compiling
    # against protovalidate's copy would fail on it.
    own = tmp_path / "own"
    (own / "buf/validate").mkdir(parents=True)
    (own / "buf/validate/validate.proto").write_text(textwrap.dedent("""
        syntax = "proto3";
        package buf.validate;
        import "google/protobuf/descriptor.proto";
        extend google.protobuf.FieldOptions { string only_in_the_users_copy = 51234; }
    """))
    proto = textwrap.dedent("""
        syntax = "proto3";
        package validateplumbing.own;
        import "buf/validate/validate.proto";
        message Thing { string name = 1 [(buf.validate.only_in_the_users_copy) = "x"]; }
    """)
    result = codegen(tmp_path, proto, name="validateplumbing/own/thing.proto", extra_include=own)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "gen/validateplumbing/own/thing_pb2.py").is_file()

    result = codegen(tmp_path / "without", proto, name="validateplumbing/own/thing.proto")
    assert result.returncode != 0 and "only_in_the_users_copy" in result.stderr


def test_the_example_contract_carries_rules_its_own_components_keep():
    from onedrive_rpc.examples.onedrive import sync_pb2 as pb

    def rule_ids(message):
        try:
            protovalidate.validate(message)
        except protovalidate.ValidationError as exc:
            return sorted(v.proto.rule_id for v in exc.violations)
        return []

    drive = "b!demo"
    # what the demo and the example's tests send
    assert rule_ids(pb.ItemRef(drive_id=drive, path="/Documents/report.docx")) == []
    assert rule_ids(pb.ItemChange(kind=pb.CREATED, item=pb.Item(drive_id=drive, path="/a", size=3))) == []
    assert rule_ids(pb.Upload(drive_id=drive, remote_path="/Documents/new.txt")) == []
    assert rule_ids(pb.Upload(drive_id=drive, local_path="/home/me/a.pdf", remote_path="/a.pdf",
                              size=1000)) == []
    assert rule_ids(pb.LogLine(level=pb.INFO, component="uploader", message="done")) == []
    assert rule_ids(pb.ShutdownNotice(reason="the user quit", grace_seconds=1)) == []
    # and what breaks the contract
    assert rule_ids(pb.ItemRef(drive_id="b.demo", path="Documents")) == ["string.pattern",
                                                                         "string.prefix"]
    assert rule_ids(pb.ItemRef()) == ["string.pattern", "string.prefix"]
    assert rule_ids(pb.Item(drive_id=drive, path="/a", id="i", modified_unix=-1)) == ["int64.gte"]
    assert rule_ids(pb.ItemChange()) == ["enum.not_in", "item_change.item_id", "required"]
    assert rule_ids(pb.ItemChange(kind=pb.MOVED, item=pb.Item(drive_id=drive, path="/a", id="i"))) == [
        "item_change.old_path"]
    assert rule_ids(pb.ItemChange(kind=pb.MOVED, item=pb.Item(drive_id=drive, path="/a", id="i"),
                                  old_path="/b")) == []
    assert rule_ids(pb.Upload(drive_id=drive, remote_path="/a", size=5)) == ["upload.local_path"]
    assert rule_ids(pb.LogLine(level=pb.INFO)) == ["string.min_len"]
    assert rule_ids(pb.ShutdownNotice(grace_seconds=86400)) == ["uint32.lte"]
