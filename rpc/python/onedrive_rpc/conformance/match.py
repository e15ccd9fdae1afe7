"""Partial matching of received frames, `${var}` substitution, field paths.

Pure functions over protobuf messages and JSON values: no sockets, no
clock. Scenario files write Envelopes in protobuf's JSON mapping; an
expectation names only the fields it checks (README.md in
rpc/protos/conformance says exactly how they compare).
"""
from __future__ import annotations

import json
import re
from typing import Any, Dict, Optional, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.descriptor_pool import Default as default_pool
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from ..core import wire_pb2

__all__ = ["ScenarioError", "Mismatch", "substitute", "to_envelope", "payload_message",
           "mismatch", "resolve", "is_present", "capture_value", "describe", "check_paths"]

#: The key that stands for `payload` as a readable, typed message.
PAYLOAD_MSG = "payload_msg"

_M = TypeVar("_M", bound=Message)

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")


class ScenarioError(Exception):
    """The scenario itself is wrong (a bad field name, an unknown variable):
    the scenario's fault, not the server's."""


class Mismatch(Exception):
    """What the server sent is not what the scenario expects: the server's fault."""


def substitute(value: Any, variables: Dict[str, Any]) -> Any:
    """`value` with every "${name}" replaced: a string that is exactly one
    reference becomes the captured value itself (any JSON type); references
    inside longer strings are replaced by the value's text."""
    if isinstance(value, dict):
        return {k: substitute(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, variables) for v in value]
    if not isinstance(value, str):
        return value
    whole = _VAR.fullmatch(value)
    if whole:
        return _lookup(whole.group(1), variables)
    return _VAR.sub(lambda m: _text(_lookup(m.group(1), variables)), value)


def _lookup(name: str, variables: Dict[str, Any]) -> Any:
    if name not in variables:
        raise ScenarioError(f"unknown variable ${{{name}}} (captured so far: {sorted(variables)})")
    return variables[name]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def payload_message(spec: Any) -> Message:
    """An empty message of the type {"type": "pkg.Msg", ...} names."""
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ScenarioError(f'{PAYLOAD_MSG} must be {{"type": "<full message name>", "value": {{...}}}}')
    try:
        descriptor = default_pool().FindMessageTypeByName(spec["type"])
    except KeyError:
        raise ScenarioError(f"unknown message type {spec['type']!r} in {PAYLOAD_MSG}") from None
    return GetMessageClass(descriptor)()


def _parse(value: Dict[str, Any], message: _M, where: str) -> _M:
    try:
        return json_format.ParseDict(value, message)
    except json_format.ParseError as exc:
        raise ScenarioError(f"{where}: {exc}") from None


def to_envelope(step_value: Dict[str, Any]) -> wire_pb2.Envelope:
    """The Envelope a `send` step describes (payload_msg serialized into payload)."""
    fields = dict(step_value)
    typed = fields.pop(PAYLOAD_MSG, None)
    env = _parse(fields, wire_pb2.Envelope(), "send")
    if typed is not None:
        if "payload" in fields:
            raise ScenarioError(f"send has both payload and {PAYLOAD_MSG}")
        message = _parse(typed.get("value", {}), payload_message(typed), PAYLOAD_MSG)
        for name, size in typed.get("fill", {}).items():
            field = _field(message.DESCRIPTOR, name, f"{PAYLOAD_MSG}.fill")
            if field.type != FieldDescriptor.TYPE_BYTES or not isinstance(size, int) or size < 0:
                raise ScenarioError(f"{PAYLOAD_MSG}.fill: {name} must be a bytes field and its "
                                    f"size a non-negative number")
            setattr(message, field.name, b"x" * size)
        env.payload = message.SerializeToString()
    return env


def _field(descriptor: Any, name: str, where: str) -> FieldDescriptor:
    field = descriptor.fields_by_name.get(name)
    if field is None:
        field = next((f for f in descriptor.fields if f.json_name == name), None)
    if field is None:
        raise ScenarioError(f"{where}: {descriptor.full_name} has no field {name!r}")
    return field


def _is_message(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and not _is_repeated(field)


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _mismatch_in(expected: Dict[str, Any], want: Message, got: Message, path: str) -> Optional[str]:
    """The first difference between the fields `expected` names (parsed into
    `want`) and `got`, or None. Unnamed fields are not checked."""
    descriptor = got.DESCRIPTOR
    for name, value in expected.items():
        field = _field(descriptor, name, path or "expect")
        where = f"{path}{field.name}"
        if _is_message(field):
            if field.containing_oneof is not None and not got.HasField(field.name):
                return f"{where}: expected a {field.name}, the frame has {_kind(got, field)}"
            if not isinstance(value, dict):
                raise ScenarioError(f"{where}: a message field takes a JSON object")
            found = _mismatch_in(value, getattr(want, field.name), getattr(got, field.name), where + ".")
            if found:
                return found
            continue
        wanted, actual = _plain(getattr(want, field.name)), _plain(getattr(got, field.name))
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            missing = {k: v for k, v in wanted.items() if actual.get(k) != v}
            if missing:
                return f"{where}: expected to contain {missing}, is {actual}"
        elif wanted != actual:
            return f"{where} is {_show(got, field)}, expected {_show(want, field)}"
    return None


def _kind(message: Message, field: FieldDescriptor) -> str:
    assert field.containing_oneof is not None
    kind = message.WhichOneof(field.containing_oneof.name)
    return f"{kind}" if kind else "none"


def _plain(value: Any) -> Any:
    if hasattr(value, "items"):
        return dict(value.items())
    if hasattr(value, "__len__") and not isinstance(value, (str, bytes)):
        return list(value)
    return value


def _show(message: Message, field: FieldDescriptor) -> str:
    value = json_format.MessageToDict(message, preserving_proto_field_name=True,
                                      always_print_fields_with_no_presence=True).get(field.name)
    return json.dumps(value)


def mismatch(expected: Dict[str, Any], got: wire_pb2.Envelope) -> Optional[str]:
    """Why `got` does not match the partial Envelope `expected` (None if it does)."""
    fields = dict(expected)
    typed = fields.pop(PAYLOAD_MSG, None)
    want = _parse(fields, wire_pb2.Envelope(), "expect")
    found = _mismatch_in(fields, want, got, "")
    if found or typed is None:
        return found
    decoded = payload_message(typed)
    try:
        decoded.ParseFromString(got.payload)
    except DecodeError as exc:
        return f"payload does not parse as {typed['type']}: {exc}"
    value = typed.get("value", {})
    return _mismatch_in(value, _parse(value, payload_message(typed), PAYLOAD_MSG), decoded,
                        f"{PAYLOAD_MSG}.")


def resolve(path: str, env: wire_pb2.Envelope, payload_type: Optional[Dict[str, Any]] = None):
    """(message, field) that a dotted path of proto field names names in
    `env`; a path starting with "payload_msg." reads the decoded payload."""
    parts = path.split(".")
    message: Message = env
    if parts[0] == PAYLOAD_MSG:
        if payload_type is None:
            raise ScenarioError(f"path {path!r} needs a {PAYLOAD_MSG} in the same step")
        message = payload_message(payload_type)
        try:
            message.ParseFromString(env.payload)
        except DecodeError as exc:
            raise Mismatch(f"payload does not parse as {payload_type['type']}: {exc}") from None
        parts = parts[1:]
    for name in parts[:-1]:
        field = _field(message.DESCRIPTOR, name, path)
        if not _is_message(field):
            raise ScenarioError(f"path {path!r}: {name} is not a message")
        message = getattr(message, field.name)
    return message, _field(message.DESCRIPTOR, parts[-1], path)


def is_present(message: Message, field: FieldDescriptor) -> bool:
    """Set (fields with presence) or not the default (the others)."""
    if not _is_repeated(field) and field.has_presence:
        return message.HasField(field.name)
    value = getattr(message, field.name)
    return len(value) > 0 if _is_repeated(field) else value != field.default_value


def capture_value(message: Message, field: FieldDescriptor) -> Any:
    """A field's value as protobuf's JSON mapping writes it (uint64 as a
    string, bytes as base64), ready to be substituted into a later frame."""
    return json.loads(_show(message, field))


def describe(env: wire_pb2.Envelope) -> str:
    """One frame as compact JSON, for messages (payload shortened)."""
    shown = json_format.MessageToDict(env, preserving_proto_field_name=True)
    payload = shown.get("payload")
    if isinstance(payload, str) and len(payload) > 80:
        shown["payload"] = payload[:60] + f"...({len(env.payload)} bytes)"
    return json.dumps(shown, separators=(",", ":"))


def check_paths(step: Dict[str, Any], env: wire_pb2.Envelope) -> Optional[str]:
    """The step's "contains", "present" and "absent" checks on `env`."""
    typed = step.get("expect", {}).get(PAYLOAD_MSG) if isinstance(step.get("expect"), dict) else None
    for path, text in step.get("contains", {}).items():
        message, field = resolve(path, env, typed)
        value = getattr(message, field.name)
        if not isinstance(value, str):
            raise ScenarioError(f"contains: {path} is not a string field")
        if text not in value:
            return f"{path} is {json.dumps(value)}, expected it to contain {json.dumps(text)}"
    for path in step.get("present", []):
        message, field = resolve(path, env, typed)
        if not is_present(message, field):
            return f"{path} is absent, expected it present"
    for path in step.get("absent", []):
        message, field = resolve(path, env, typed)
        if is_present(message, field):
            return f"{path} is {_show(message, field)}, expected it absent"
    return None
