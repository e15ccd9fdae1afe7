"""What checking a message against its contract's rules costs, per message.

    python bench/validation.py [--number 200000] [--repeat 5]

Three messages: onedrive.sync.ItemRef (3 protovalidate rules: a pattern, a
prefix, a maximum length), onedrive.sync.ItemChange (a nested Item with its
own rules, an enum rule, two message-level CEL rules) and
onedrive_rpc.testing.Msg (no rules). For each, the best of `--repeat`
timings of:

  check     validation.check(message): what the server and the client run
            per message (a type without rules: one cached lookup, no work)
  parse     Message.FromString(bytes) of the same message, the baseline
            measured in the same run: every received message is parsed once
            anyway

and the ratio check/parse. No network: bench/reqresp.py's W1r row gives the
cost seen by calls end to end.
"""
from __future__ import annotations

import argparse
import os
import sys
import timeit
from typing import List, Optional

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "rpc", "python"))

from onedrive_rpc import validation  # noqa: E402
from onedrive_rpc.examples.onedrive.sync_pb2 import (CREATED, Item, ItemChange,  # noqa: E402
                                                     ItemRef)
from onedrive_rpc.testing.echo_pb2 import Msg  # noqa: E402

MESSAGES = [
    ("ItemRef, 3 rules", ItemRef(drive_id="d1", path="/Documents/report.docx")),
    ("ItemChange, nested + CEL", ItemChange(kind=CREATED, item=Item(
        drive_id="d1", path="/Documents/report.docx", size=12004, modified_unix=1796000000))),
    ("Msg, no rules", Msg(text="hello", data=b"x" * 64)),
]


def best(stmt, number: int, repeat: int) -> float:
    """Best µs per call of `stmt` (the least disturbed run on a shared machine)."""
    return min(timeit.repeat(stmt, number=number, repeat=repeat)) / number * 1e6


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--number", type=int, default=200_000, help="calls per timing")
    parser.add_argument("--repeat", type=int, default=5, help="timings; the best is shown")
    args = parser.parse_args(argv)
    if not 1 <= args.number <= 10_000_000 or not 1 <= args.repeat <= 50:
        raise SystemExit("--number must be 1..10,000,000 and --repeat 1..50")
    print(f"{'message':28} {'check µs':>9} {'parse µs':>9} {'check/parse':>12}")
    for label, message in MESSAGES:
        validation.check(message)  # valid: raises otherwise; also compiles the rules once
        data, parse = message.SerializeToString(), type(message).FromString
        checked = best(lambda: validation.check(message), args.number, args.repeat)
        parsed = best(lambda: parse(data), args.number, args.repeat)
        print(f"{label:28} {checked:9.3f} {parsed:9.3f} {checked / parsed:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
