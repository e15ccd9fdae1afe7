"""tox -e typecheck: the generated .pyi stubs carry real types.

Generates the shop example into a temporary folder, then runs mypy on a
program that uses the stubs right, every pattern (must pass), and on one
that passes the wrong request type to a call and the wrong message type to
a publish (must fail with arg-type errors naming the expected types).
"""
import os
import sys
import tempfile
from pathlib import Path

from mypy import api

from onedrive_rpc.codegen.__main__ import main as codegen

HERE = Path(__file__).resolve().parent
INPUTS = HERE.parent / "inputs"


def mypy(program: Path, stubs: str):
    os.environ["MYPYPATH"] = stubs
    return api.run(["--follow-imports=silent", "--ignore-missing-imports", "--no-incremental",
                    str(program)])


def main() -> int:
    with tempfile.TemporaryDirectory() as out:
        if codegen(["-I", str(INPUTS), "--out", out,
                    str(INPUTS / "shop/orders.proto"), str(INPUTS / "shop/common/types.proto")]):
            print("code generation failed")
            return 1
        good, _, good_status = mypy(HERE / "good_program.py", out)
        bad, _, bad_status = mypy(HERE / "wrong_request_type.py", out)
    print("good_program.py:", good.strip())
    print("wrong_request_type.py:", bad.strip())
    if good_status != 0:
        print("FAIL: mypy rejected a correct use of the generated stubs")
        return 1
    if bad_status == 0 or 'expected "OrderRequest"' not in bad or 'expected "Item"' not in bad:
        print("FAIL: mypy accepted the wrong request type: the stubs carry no types")
        return 1
    print("ok: the stubs carry the request and response types")
    return 0


if __name__ == "__main__":
    sys.exit(main())
