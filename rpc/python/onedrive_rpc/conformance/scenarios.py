"""Finding, loading and checking the shape of scenario files.

The files live in rpc/protos/conformance/scenarios (one source of truth)
and are copied into the package (onedrive_rpc/_protos/conformance/...) when
it is built, so an installed package finds them too.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .match import ScenarioError

__all__ = ["Scenario", "STEP_KINDS", "SERVERS", "SECRET", "scenario_dir", "load", "load_all", "select"]

_PACKAGE = Path(__file__).resolve().parent.parent

#: Where scenarios are looked for: the installed copy, then a source checkout.
_CANDIDATES = (_PACKAGE / "_protos" / "conformance" / "scenarios",
               _PACKAGE.parent.parent / "protos" / "conformance" / "scenarios")

#: Each step has exactly one of these keys; its value says what to do.
STEP_KINDS = frozenset({"connect", "send", "send_raw", "expect", "expect_unordered", "expect_any",
                        "expect_close", "expect_eof", "expect_nothing_ms", "cut",
                        "expect_challenge", "send_proof"})

#: Keys a step may carry besides its kind, and which kinds take them.
_MODIFIERS: Dict[str, frozenset] = {
    "conn": frozenset(STEP_KINDS - {"connect", "cut"}),
    "within_ms": frozenset({"expect", "expect_unordered", "expect_any", "expect_close", "expect_eof",
                            "expect_challenge"}),
    "contains": frozenset({"expect"}),
    "present": frozenset({"expect"}),
    "absent": frozenset({"expect"}),
    "capture": frozenset({"expect", "expect_challenge"}),
    "comment": STEP_KINDS,
}

#: What a scenario's "server" may ask for: the Echo service of echo.proto
#: (onedrive_rpc.testing.Echo), with the target's default settings; and
#: the same with the shared secret SECRET (README: "The target server").
SERVERS = frozenset({"echo", "echo-secret"})

#: The echo-secret target's shared secret.
SECRET = b"conformance shared secret"

#: What the shared-secret steps take (all base64, as JSON writes bytes).
_AUTH_KEYS = {"expect_challenge": {"secret", "client_nonce"},
              "send_proof": {"secret", "client_nonce", "server_nonce"}}

_TOP = {"name", "description", "spec", "server", "steps", "expected_failure"}


@dataclass(frozen=True)
class Scenario:
    """One scenario file, its shape checked (its frames are checked when run)."""

    name: str
    description: str
    spec: List[str]
    server: str
    steps: List[Dict[str, Any]]
    path: str
    #: Why the reference (Python) server is known to fail it, if it is.
    expected_failure: Optional[str] = None


def scenario_dir() -> Path:
    """The directory of the scenario files shipped with this package."""
    for candidate in _CANDIDATES:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("no conformance scenarios found (looked in "
                            f"{', '.join(str(c) for c in _CANDIDATES)})")


def _fail(path: str, message: str) -> ScenarioError:
    return ScenarioError(f"{os.path.basename(path)}: {message}")


def _check_step(path: str, n: int, step: Any) -> None:
    if not isinstance(step, dict):
        raise _fail(path, f"step {n} is not an object")
    kinds = [k for k in step if k in STEP_KINDS]
    if len(kinds) != 1:
        raise _fail(path, f"step {n} must have exactly one of {sorted(STEP_KINDS)}, has {kinds}")
    kind = kinds[0]
    for key in step:
        if key != kind and kind not in _MODIFIERS.get(key, frozenset()):
            raise _fail(path, f"step {n} ({kind}) does not take {key!r}")
    value = step[kind]
    expected_type = {"connect": str, "cut": str, "send": dict, "send_raw": str, "expect": dict,
                     "expect_unordered": list, "expect_any": list, "expect_close": dict, "expect_eof": bool,
                     "expect_nothing_ms": int, "expect_challenge": dict, "send_proof": dict}[kind]
    if not isinstance(value, expected_type) or isinstance(value, bool) != (expected_type is bool):
        raise _fail(path, f"step {n}: {kind} takes a {expected_type.__name__}")
    if "within_ms" in step and not (isinstance(step["within_ms"], int) and step["within_ms"] > 0):
        raise _fail(path, f"step {n}: within_ms must be a positive integer")
    if kind == "expect_close" and not set(step[kind]) <= {"code", "message_contains", "end_session"}:
        raise _fail(path, f"step {n}: expect_close takes code, message_contains, end_session")
    if kind in _AUTH_KEYS and set(step[kind]) != _AUTH_KEYS[kind]:
        raise _fail(path, f"step {n}: {kind} takes {', '.join(sorted(_AUTH_KEYS[kind]))}")


def load(path: str) -> Scenario:
    """Read and shape-check one scenario file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise _fail(path, f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not _TOP >= set(data) or not {"name", "steps"} <= set(data):
        raise _fail(path, f"a scenario is an object with name and steps (and only {sorted(_TOP)})")
    name = data["name"]
    if name != Path(path).stem:
        raise _fail(path, f"name {name!r} differs from the file name")
    server = data.get("server", "echo")
    if server not in SERVERS:
        raise _fail(path, f"unknown server {server!r} (known: {sorted(SERVERS)})")
    steps = data["steps"]
    if not isinstance(steps, list) or not steps:
        raise _fail(path, "steps must be a non-empty list")
    for n, step in enumerate(steps, 1):
        _check_step(path, n, step)
    return Scenario(name=name, description=data.get("description", ""), spec=list(data.get("spec", [])),
                    server=server, steps=steps, path=str(path),
                    expected_failure=data.get("expected_failure"))


def load_all(directory: Optional[Path] = None) -> List[Scenario]:
    """Every scenario in `directory` (default: the shipped ones), by name."""
    directory = directory or scenario_dir()
    return [load(str(p)) for p in sorted(Path(directory).glob("*.json"))]


def select(scenarios: Sequence[Scenario], only: Sequence[str]) -> List[Scenario]:
    """The scenarios named in `only` (all if empty); unknown names are an error."""
    if not only:
        return list(scenarios)
    known = {s.name: s for s in scenarios}
    unknown = [n for n in only if n not in known]
    if unknown:
        raise ScenarioError(f"no scenario named {', '.join(unknown)}")
    return [known[n] for n in only]
