"""Message validation: the rules a contract writes with protovalidate
(`buf.validate` options in the .proto), checked as messages come and go.

    import "buf/validate/validate.proto";
    message ItemRef {
      string path = 2 [(buf.validate.field).string.prefix = "/"];
    }

A server checks every message a peer sends to a method whose input type
carries rules (calls, streams, notifications, publishes before they fan
out, produced tasks before they are queued, broadcasts) and answers
INVALID_ARGUMENT with the violations (RpcError.violations: field, rule,
message) without running the handler; `rpc.Server(url,
validate_responses=True)` also checks what handlers return or yield
(INTERNAL, logged, instead of sending it). A client built on a service
with rules checks each request before it sends it: the same error at
once, no round trip. Both are on by default (`rpc.Server(url,
validate=False)`, `rpc.connect(url, validate=False)` turn them off) and
are the interceptor `Validation`, innermost (after `authorize`), so the
other interceptors see its refusals; with validate=False, put
`Validation()` where you want it in `interceptors=`.

Types without rules cost nothing: whether a type has any is decided once,
from its descriptor, and a server or client with none never runs the
interceptor at all.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, Iterator, List, Optional, Set, Type

from google.protobuf.descriptor import FieldDescriptor, ServiceDescriptor
from google.protobuf.descriptor_pool import Default as default_pool
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from .errors import RpcError, StatusCode, Violation
from .interceptors import Action, Interceptor, Proceed, parse
from .logs import Throttled

__all__ = ["Validation", "has_rules", "service_has_rules", "violations_of", "check"]

log = logging.getLogger(__name__)
#: A peer can ask, again and again, for what makes a handler answer badly.
throttled = Throttled(log)

#: The actions whose payload is a message of the method's input type.
_INBOUND = frozenset(("call", "call_future", "stream", "notify", "publish", "produce",
                      "broadcast"))

_RULES_PACKAGE = "buf.validate."

# Message full name -> does it, or a message it holds, carry rules?
_has_rules: Dict[str, bool] = {}


def has_rules(descriptor: Any) -> bool:
    """Does a message of this type carry protovalidate rules: on itself, a
    oneof or a field, or on a message it holds (at any depth)? Decided
    once per type."""
    known = _has_rules.get(descriptor.full_name)
    if known is None:
        known = _has_rules[descriptor.full_name] = _walk(descriptor, set())
    return known


def _ruled(element: Any) -> bool:
    return element.has_options and any(
        field.full_name.startswith(_RULES_PACKAGE) for field, _ in element.GetOptions().ListFields())


def _walk(descriptor: Any, seen: Set[str]) -> bool:
    if descriptor.full_name in seen:
        return False  # recursive types: what it holds is being looked at already
    seen.add(descriptor.full_name)
    if _ruled(descriptor) or any(_ruled(oneof) for oneof in descriptor.oneofs):
        return True
    for field in descriptor.fields:
        if _ruled(field):
            return True
        if field.type == FieldDescriptor.TYPE_MESSAGE and _walk(field.message_type, seen):
            return True
    return False


def service_has_rules(service: ServiceDescriptor, responses: bool = False) -> bool:
    """Does a method of `service` take (or, with `responses`, return) a
    message with rules?"""
    return any(has_rules(method.input_type) or (responses and has_rules(method.output_type))
               for method in service.methods)


class _Engine:
    """protovalidate, imported on first use (~50 ms: a process whose types
    have no rules never pays it)."""

    def __init__(self) -> None:
        import protovalidate
        self.validator = protovalidate.Validator()
        self.not_compiling = protovalidate.CompilationError
        self.broken_rules = (protovalidate.CompilationError, protovalidate.EvaluationError)


_engine: Optional[_Engine] = None


def _the_engine() -> _Engine:
    global _engine
    if _engine is None:
        _engine = _Engine()
    return _engine


def violations_of(message: Message) -> List[Violation]:
    """What in `message` breaks the rules of its type (empty: nothing).
    RpcError INTERNAL if the rules themselves are broken (a CEL rule that
    does not compile or fails to run): the contract's fault, not the
    sender's."""
    engine = _the_engine()
    try:
        found = engine.validator.collect_violations(message)
    except engine.broken_rules as exc:
        raise RpcError(StatusCode.INTERNAL, f"the rules of {message.DESCRIPTOR.full_name} "
                                            f"cannot be checked: {exc}") from None
    return [_violation(found_one) for found_one in found]


def _violation(found: Any) -> Violation:
    from buf.validate import validate_pb2  # google.protobuf's, shipped with onedrive-rpc
    proto = validate_pb2.Violation.FromString(found.proto.to_binary())
    return Violation(_field_path(proto.field), proto.rule_id, proto.message)


def _field_path(path: Any) -> str:
    """"items[2].path", 'labels["k"]', "" (a rule of the message itself)."""
    parts = []
    for element in path.elements:
        which = element.WhichOneof("subscript")
        if which is None:
            parts.append(element.field_name)
        elif which == "string_key":
            parts.append(f'{element.field_name}["{element.string_key}"]')
        elif which == "bool_key":
            parts.append(f"{element.field_name}[{str(element.bool_key).lower()}]")
        else:
            parts.append(f"{element.field_name}[{getattr(element, which)}]")
    return ".".join(parts)


def check(message: Message, code: StatusCode = StatusCode.INVALID_ARGUMENT) -> None:
    """Raise RpcError `code` with the violations if `message` breaks its
    type's rules; nothing for a type without rules."""
    if not has_rules(message.DESCRIPTOR):
        return
    found = violations_of(message)
    if found:
        raise invalid(message.DESCRIPTOR.full_name, found, code)


def invalid(type_name: str, found: List[Violation],
            code: StatusCode = StatusCode.INVALID_ARGUMENT) -> RpcError:
    """The error for a message of `type_name` that breaks its rules."""
    first = found[0]
    where = f"{first.field}: " if first.field else ""
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return RpcError(code, f"invalid {type_name}: {where}{first.message}{more}",
                    violations=tuple(found))


def warm(service: ServiceDescriptor, responses: bool) -> None:
    """Compile the rules of `service`'s types now, so that a rule that does
    not compile fails where the service is added, not on a peer's first
    message (ValueError naming it). A rule that fails only on some values
    (a division by a field that may be 0) is legal: it is INTERNAL for
    those messages, not a reason to refuse the service."""
    engine = _the_engine()
    for method in service.methods:
        for descriptor in (method.input_type, method.output_type) if responses else (
                method.input_type,):
            if has_rules(descriptor):
                try:
                    engine.validator.collect_violations(GetMessageClass(descriptor)())
                except engine.not_compiling as exc:
                    raise ValueError(f"{method.full_name}: the rules of {descriptor.full_name} "
                                     f"do not compile: {exc}") from None
                except Exception:  # an evaluation error on the empty message: see above
                    pass


class Validation(Interceptor):
    """The interceptor that checks messages against their rules (see the
    module docstring). On a server: requests, INVALID_ARGUMENT; with
    `responses`, replies and stream items too, INTERNAL. On a client:
    what it sends, INVALID_ARGUMENT before it goes."""

    def __init__(self, responses: bool = False) -> None:
        self.responses = responses
        # Client side: method path -> its input type if it has rules, else None.
        self._client_types: Dict[str, Optional[Type[Message]]] = {}

    def intercept(self, action: Action, proceed: Proceed) -> Any:
        if action.kind not in _INBOUND or action.payload is None:
            return proceed()
        if action.identity is None:  # a client: what it sends
            message_type = self._sent_type(action.method)
            if message_type is not None:
                check(parse(message_type, action.payload))
            return proceed()
        message_type = action.message_type
        if message_type is None:
            return proceed()  # not served: the server says so
        if has_rules(message_type.DESCRIPTOR):
            check(action.request)
        result = proceed()
        if not self.responses or result is None or action.kind not in ("call", "stream"):
            return result
        if action.kind == "stream" or (action.context is not None and action.context.streaming):
            return _checked_items(result, action.method)
        _check_response(result, action.method)
        return result

    def _sent_type(self, method: str) -> Optional[Type[Message]]:
        """The input type of `method` if it has rules (None: it has none,
        or this process does not know the method), found once."""
        if method in self._client_types:
            return self._client_types[method]
        found: Optional[Type[Message]] = None
        service, _, name = method.lstrip("/").partition("/")
        try:
            descriptor = default_pool().FindServiceByName(service).methods_by_name.get(name)
        except KeyError:
            descriptor = None
        if descriptor is not None and has_rules(descriptor.input_type):
            found = GetMessageClass(descriptor.input_type)
        if len(self._client_types) < _MAX_KNOWN_METHODS:
            self._client_types[method] = found
        return found


#: Method paths a client remembers (it sends what its code names: a bound
#: against code that makes up names).
_MAX_KNOWN_METHODS = 10_000


def _check_response(message: Any, method: str) -> None:
    if isinstance(message, Message) and has_rules(message.DESCRIPTOR):
        found = violations_of(message)
        if found:
            error = invalid(message.DESCRIPTOR.full_name, found, StatusCode.INTERNAL)
            throttled.error("bad answer", "%s: the handler's answer breaks the contract, not "
                            "sent: %s", method, error)
            raise RpcError(StatusCode.INTERNAL, f"{method}: the server's answer breaks its own "
                                                f"contract (its log has the details)")


def _checked_items(items: Iterable[Any], method: str) -> Iterator[Any]:
    iterator = iter(items)
    try:
        for item in iterator:
            _check_response(item, method)
            yield item
    finally:  # stopped early (cancelled, failed): the handler's own finally runs now
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
