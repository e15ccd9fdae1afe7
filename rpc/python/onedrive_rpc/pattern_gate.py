"""What a server's broker asks its interceptors (and so `authorize=`)
before a peer's publish, subscribe, produce, consume or broadcast, and
before a broadcast reaches a peer ("listen")."""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Hashable, Optional, Tuple, Type

from google.protobuf.message import Message

from .calls import CallOrigin
from .core import events as ev
from .core.pubsub import Policy
from .errors import RpcError, StatusCode
from .interceptors import Action, Interception

__all__ = ["PatternGate"]

log = logging.getLogger(__name__)

#: The action a pattern frame asks for (see interceptors.ACTIONS). Credit,
#: TaskDone, Unsubscribe and a consumer's stop only follow from an action
#: already allowed: they are not asked about.
_ACTIONS: Dict[type, str] = {
    ev.PublishReceived: "publish",
    ev.SubscribeReceived: "subscribe",
    ev.ProduceReceived: "produce",
    ev.ConsumeReceived: "consume",
    ev.BroadcastReceived: "broadcast",
}


def _target(kind: str, event: Any) -> str:
    """What the action is about: a topic, a pattern or a queue."""
    if kind == "publish":
        return str(event.topic)
    if kind == "subscribe":
        return str(event.pattern)
    if kind in ("produce", "consume"):
        return str(event.method)
    return ""


def _options(kind: str, event: Any) -> Optional[Dict[str, Any]]:
    """What a subscribe or consume asks for besides its target."""
    if kind == "subscribe":
        try:
            policy = Policy.from_wire(event.policy).api_name
        except ValueError:
            policy = str(event.policy)
        return {"policy": policy, "queue_limit": event.queue_limit}
    if kind == "consume":
        return {"prefetch": event.prefetch}
    return None


class PatternGate:
    """The interceptors around the pattern frames of peers. `message_type`
    tells the input type of a method (None if not served), for
    Action.request."""

    def __init__(self, interception: Interception,
                 message_type: Callable[[str], Optional[Type[Message]]]) -> None:
        self._interception = interception
        self._message_type = message_type
        # (connection, method) -> may its peer hear broadcasts of method?
        # Asked once per connection and method, at the first broadcast.
        self._listening: Dict[Tuple[Hashable, str], bool] = {}

    def run(self, origin: CallOrigin, event: Any, final: Callable[[], Any]) -> Any:
        """`final` (what `event` asks) through the interceptors; RpcError
        if they refuse it."""
        kind = _ACTIONS.get(type(event))
        if kind is None or (kind == "consume" and event.stop):
            return final()
        action = Action.of(kind, event.method, _target(kind, event), origin,
                           payload=getattr(event, "payload", None),
                           message_type=self._message_type(event.method),
                           options=_options(kind, event))
        return self._run(action, final)

    def may_listen(self, connection: Hashable, origin: CallOrigin, method: str,
                   payload: bytes) -> bool:
        """May `connection`'s peer hear the broadcasts of `method`?"""
        key = (connection, method)
        allowed = self._listening.get(key)
        if allowed is None:
            action = Action.of("listen", method, "", origin, payload=payload,
                               message_type=self._message_type(method))
            try:
                self._run(action, lambda: None)
                allowed = True
            except RpcError as exc:
                log.debug("not broadcasting %s to %s: %s", method, origin.who, exc.message)
                allowed = False
            self._listening[key] = allowed
        return allowed

    def forget(self, connection: Hashable) -> None:
        """`connection` ended: its answers go with it."""
        for key in [key for key in self._listening if key[0] is connection]:
            del self._listening[key]

    def _run(self, action: Action, final: Callable[[], Any]) -> Any:
        # An interceptor's own bug refuses the action (INTERNAL), logged.
        try:
            return self._interception.run(action, final)
        except (RpcError, ValueError):
            raise
        except Exception:
            log.exception("an interceptor failed on %s from %s", action.describe(),
                          action.who)
            raise RpcError(StatusCode.INTERNAL, f"{action.describe()}: an interceptor "
                                                f"failed (the server's log has the details)")
