"""Interceptors: code that runs around every action, on the server around
what peers ask of it, on a client around what it sends (gRPC's
interceptors). Each sees the action (kind, method, target, identity,
metadata), and may let it go on (`proceed()`), refuse it by raising
RpcError with a status, answer it itself, or wrap what it returns.
Logging, metrics and authorization (`Server(authorize=fn)`) are all
interceptors.

    def timed(action, proceed):
        start = time.monotonic()
        try:
            return proceed()
        finally:
            log.info("%s %s took %.3f s", action.kind, action.method,
                     time.monotonic() - start)

    server = rpc.Server(url, interceptors=[timed], authorize=may)

The first interceptor of the list is the outermost. An interceptor is a
callable `(action, proceed) -> result`, or an object with such an
`intercept` method (rpc.Interceptor).
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Type, Union

from google.protobuf.message import DecodeError, Message

from .calls import CallOrigin, Context, Identity
from .core.events import PeerInfo
from .core.framing import Frame
from .errors import RpcError, StatusCode
from .logs import Throttled, fields, who

__all__ = ["Action", "ACTIONS", "Authorize", "Authorizer", "Interceptor", "Interception",
           "Proceed", "interception", "parse"]

log = logging.getLogger(__name__)
warn = Throttled(log)  # a peer can ask for what it may not have as often as it likes

#: What a peer can ask of a server, as interceptors and authorize see it.
#: On a client, interceptors also see "call_future" (proceed() returns the
#: CallFuture instead of the reply).
#: "admin" is any call to onedrive_rpc.Admin (Server(admin=True)).
ACTIONS = ("call", "stream", "notify", "publish", "subscribe", "produce", "consume",
           "broadcast", "listen", "admin")

#: What `target` names, by action (the others have none: "").
_TARGETS = {"publish": "topic", "subscribe": "pattern", "produce": "queue", "consume": "queue"}

_NO_METADATA: Mapping[str, str] = {}


class Action:
    """One action going through the interceptors.

    `kind`: one of ACTIONS. `method`: "/pkg.Service/Method", as sent (the
    server may not serve it). `target`: the topic (publish), the pattern
    (subscribe), the queue (produce, consume: the method's path), else "".
    `identity`: who the peer proved to be (server side; None on a client).
    `peer`: what the peer's Hello says it is (not checked) on the server,
    the server's on a client. `metadata`: the call's (calls, streams and
    notifications; a client's interceptors may change it before
    proceeding; the frames of the other patterns carry none). `context`:
    the handler's Context (server side calls, streams, notifications).
    `payload`: the serialized message (None for subscribe, consume and
    listen); `request` decodes it where this side knows the type (server
    side; None on a client). `options`: what a subscribe or consume asks
    for besides its target ({"policy": "block", "queue_limit": 1024},
    {"prefetch": 16}), so a server can keep `block` to whom it trusts.
    """

    __slots__ = ("kind", "method", "target", "identity", "peer", "address", "session_id",
                 "metadata", "context", "payload", "options", "_type", "_request")

    def __init__(self, kind: str, method: str, target: str = "", *,
                 identity: Optional[Identity] = None, peer: Optional[PeerInfo] = None,
                 address: str = "", session_id: str = "",
                 metadata: Optional[Mapping[str, str]] = None,
                 context: Optional[Context] = None, payload: Optional[Frame] = None,
                 message_type: Optional[Type[Message]] = None,
                 options: Optional[Mapping[str, Any]] = None) -> None:
        self.kind = kind
        self.method = method
        self.target = target
        self.identity = identity
        self.peer = peer
        self.address = address
        self.session_id = session_id
        self.metadata = metadata if metadata is not None else _NO_METADATA
        self.context = context
        self.payload = payload
        self.options = options if options is not None else _NO_METADATA
        self._type = message_type
        self._request: Any = None

    @classmethod
    def of(cls, kind: str, method: str, target: str, origin: CallOrigin, *,
           metadata: Optional[Mapping[str, str]] = None, context: Optional[Context] = None,
           payload: Optional[Frame] = None,
           message_type: Optional[Type[Message]] = None,
           options: Optional[Mapping[str, Any]] = None) -> "Action":
        """A server-side action from a peer's connection (`origin`)."""
        return cls(kind, method, target, identity=origin.identity, peer=origin.peer,
                   address=origin.address, session_id=origin.session_id, metadata=metadata,
                   context=context, payload=payload,
                   message_type=message_type, options=options)

    @property
    def message_type(self) -> Optional[Type[Message]]:
        """The method's input type, where this side knows it (a served
        method, server side); else None."""
        return self._type

    @property
    def request(self) -> Any:
        """The payload decoded as the method's input type (once, however
        often asked); None where there is no payload or the type is not
        known here. RpcError INVALID_ARGUMENT if it does not parse."""
        if self._request is None and self._type is not None and self.payload is not None:
            self._request = parse(self._type, self.payload)
        return self._request

    @property
    def served(self) -> bool:
        """Server side: does this server serve `method`? A peer may name
        any method; what counts actions by method (metrics) counts the
        others as one. Always False on a client."""
        return self._type is not None

    def describe(self) -> str:
        """"publish to /pkg.S/M (topic 'a.b')": for messages and logs."""
        what = f"{self.kind} {self.method}"
        label = _TARGETS.get(self.kind)
        if label is not None and self.target != self.method:
            what += f" ({label} {self.target!r})"
        return what

    @property
    def who(self) -> str:
        """The peer in a log line: name, session, address."""
        return who(self.peer, self.session_id, self.address)

    @property
    def fields(self) -> Dict[str, str]:
        """The peer as log record attributes (extra=): peer, session_id, peer_address."""
        return fields(self.peer, self.session_id, self.address)

    def __repr__(self) -> str:
        return f"<Action {self.describe()} by {self.identity}>"


#: What an interceptor calls to let the action go on: the next interceptor,
#: or the action itself. It returns what the action returns: on the server
#: the reply message of a call, the iterator of a stream's items, None for
#: the rest; on a client what the Peer method returns.
Proceed = Callable[[], Any]


def parse(message_type: Type[Message], payload: Any) -> Message:
    """`payload` as a `message_type`; INVALID_ARGUMENT if it does not parse."""
    try:
        return message_type.FromString(payload)
    except DecodeError as exc:
        raise RpcError(StatusCode.INVALID_ARGUMENT,
                       f"request does not parse as {message_type.DESCRIPTOR.full_name}: "
                       f"{exc}") from None


class Interceptor:
    """Base class of interceptors written as classes: override `intercept`
    (a plain function `(action, proceed)` does as well)."""

    def intercept(self, action: Action, proceed: Proceed) -> Any:
        return proceed()


InterceptorLike = Union[Interceptor, Callable[[Action, Proceed], Any]]
_Step = Callable[[Action, Proceed], Any]


def _step(interceptor: Any) -> _Step:
    intercept = getattr(interceptor, "intercept", None)
    if callable(intercept):
        return intercept  # type: ignore[no-any-return]
    if callable(interceptor):
        return interceptor  # type: ignore[no-any-return]
    raise TypeError(f"an interceptor is a callable (action, proceed) or has an intercept "
                    f"method, not {interceptor!r}")


class Interception:
    """A list of interceptors, run in order around an action."""

    __slots__ = ("_steps",)

    def __init__(self, interceptors: Iterable[InterceptorLike]) -> None:
        self._steps: Tuple[_Step, ...] = tuple(_step(i) for i in interceptors)

    def __len__(self) -> int:
        return len(self._steps)

    def run(self, action: Action, final: Proceed) -> Any:
        """Run the interceptors around `final` (the action itself)."""
        # Each step's proceed is the next step bound to the action (partial:
        # no Python frame of ours between two interceptors).
        steps = self._steps
        if not steps:
            return final()
        proceed = final
        for step in steps[:0:-1]:
            proceed = functools.partial(step, action, proceed)
        return steps[0](action, proceed)


def interception(interceptors: Sequence[InterceptorLike] = (),
                 authorize: Optional["Authorize"] = None,
                 innermost: Sequence[InterceptorLike] = ()) -> Optional[Interception]:
    """The chain of a server or client: `interceptors`, then `authorize`,
    then `innermost` (message validation), so the others see, and can
    count, their refusals; None when there is nothing to run (the fast
    path)."""
    steps = list(interceptors)
    if authorize is not None:
        steps.append(Authorizer(authorize))
    steps.extend(innermost)
    return Interception(steps) if steps else None


#: `rpc.Server(url, authorize=fn)`: `fn(identity, action, method, target)`
#: is asked before every action of a peer (see ACTIONS and Action.target):
#: truthy lets it go on; falsy refuses it with PERMISSION_DENIED (an
#: RpcError it raises is sent as it is; any other exception refuses, and
#: is logged). It runs in the connection's reader (and for "listen", in
#: whoever broadcasts): a lookup, not a network call.
Authorize = Callable[[Identity, str, str, str], Any]


class Authorizer(Interceptor):
    """The interceptor behind `authorize=`: refused actions get
    PERMISSION_DENIED and are logged (rate-limited)."""

    def __init__(self, authorize: Authorize) -> None:
        if not callable(authorize):
            raise TypeError(f"authorize must be a callable (identity, action, method, target), "
                            f"not {authorize!r}")
        self._authorize = authorize

    def intercept(self, action: Action, proceed: Proceed) -> Any:
        identity = action.identity
        assert identity is not None  # server side
        try:
            allowed = self._authorize(identity, action.kind, action.method, action.target)
        except RpcError as exc:
            warn.warning("denied", "refused %s to %s (%s %s): %s", action.describe(),
                         action.who, identity.method, identity.subject, exc.message,
                         extra=action.fields)
            raise
        except Exception:
            log.exception("the authorize hook failed for %s by %s", action.describe(),
                          action.who)
            allowed = False
        if not allowed:
            who = identity.method + (f" {identity.subject!r}" if identity.subject else "")
            message = f"permission denied: {who} may not {action.describe()}"
            warn.warning("denied", "refused %s to %s: %s", action.describe(), action.who, message,
                         extra=action.fields)
            raise RpcError(StatusCode.PERMISSION_DENIED, message)
        return proceed()
