"""The admin service (onedrive_rpc.Admin): what a server holds, and the
few operator actions that need no code, as `rabbitmqctl` or `nats server
report` give them. Served by `rpc.Server(url, admin=True)`; the command
line is `onedrive-rpc admin URL peers|sessions|subscriptions|queues|
dead-letters|replay QUEUE|disconnect PEER` and `onedrive-rpc top URL`.

Who may use it: its calls reach interceptors and `authorize` as the action
"admin" (not "call"), so a hook can keep it to operators. Without an
`authorize` hook, only a peer the server checked may use it (a unix
socket's kernel-checked user, the shared secret, a TLS client
certificate, or the authenticate hook's identity), never an anonymous one.
"""
from __future__ import annotations

import time
from typing import Iterable, List, Optional, Protocol

from .admin_pb2 import DESCRIPTOR as _FILE
from .admin_pb2 import (AdminListRequest, DeadLettersReply, DeadLettersRequest, DeadLetterStatus,
                        DisconnectReply, DisconnectRequest, PeersReply, QueuesReply, ReplayReply,
                        ReplayRequest, SubscriptionsReply)
from .calls import ANONYMOUS, Context
from .core.workqueue import DeadLetter
from .errors import RpcError, StatusCode
from .inspection import Inspection
from .service import Service

__all__ = ["AdminService", "ADMIN", "DEFAULT_DEAD_LETTER_LIMIT", "queue_method"]

ADMIN = _FILE.services_by_name["Admin"]

#: The shortest start of a session id that may name it (the tables show 12).
MIN_PREFIX = 6

#: Subscriptions listed when the request names no limit (peers can make millions).
DEFAULT_LIST_LIMIT = 1000

#: Payload bytes one DeadLetters reply carries at most (a frame is 16 MiB
#: by default): past them it lists fewer than asked, `total` says how many.
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024

#: Dead letters listed when the request names no limit.
DEFAULT_DEAD_LETTER_LIMIT = 100


def queue_method(name: str) -> str:
    """"pkg.Svc/Method" or "/pkg.Svc/Method" as the method path."""
    return name if name.startswith("/") else "/" + name


class Administered(Protocol):
    """What the admin service needs of its server (rpc.Server)."""

    def inspect(self, subscription_limit: Optional[int] = None) -> Inspection: ...

    def dead_letters(self, method: str) -> List[DeadLetter]: ...

    def replay_dead_letters(self, method: str, task_ids: Optional[Iterable[int]] = None) -> int: ...

    def disconnect(self, session_id: str, reason: str = ...) -> bool: ...


class AdminService(Service):
    """Serves `server`'s admin view. `open_to_anyone`: the server has an
    authorize hook, which decides alone (see the module docstring)."""

    descriptor = ADMIN
    action = "admin"

    def __init__(self, server: Administered, open_to_anyone: bool) -> None:
        self._server = server
        self._open_to_anyone = open_to_anyone

    def _inspect(self, context: Context) -> Inspection:
        """Sessions and queues (no subscriptions: there may be millions)."""
        self._check(context)
        return self._server.inspect(subscription_limit=0)

    def _check(self, context: Context) -> None:
        if not self._open_to_anyone and context.identity == ANONYMOUS:
            raise RpcError(StatusCode.PERMISSION_DENIED,
                           "the admin service needs a checked peer (a unix socket, the shared "
                           "secret, a TLS client certificate or the authenticate hook), or an "
                           "authorize hook on the server that allows the action 'admin'")

    def peers(self, request: AdminListRequest, context: Context) -> PeersReply:
        return PeersReply(peers=self._inspect(context).connected)

    def sessions(self, request: AdminListRequest, context: Context) -> PeersReply:
        return PeersReply(peers=self._inspect(context).peers)

    def subscriptions(self, request: AdminListRequest, context: Context) -> SubscriptionsReply:
        self._check(context)
        seen = self._server.inspect(request.limit or DEFAULT_LIST_LIMIT)
        return SubscriptionsReply(subscriptions=seen.subscriptions, total=seen.subscription_count)

    def queues(self, request: AdminListRequest, context: Context) -> QueuesReply:
        return QueuesReply(queues=self._inspect(context).queues)

    def dead_letters(self, request: DeadLettersRequest, context: Context) -> DeadLettersReply:
        queues = [self._known_queue(request.queue, context)] if request.queue else [
            queue.method for queue in self._inspect(context).queues]
        limit = request.limit or DEFAULT_DEAD_LETTER_LIMIT
        now, wall = time.monotonic(), time.time()
        reply = DeadLettersReply()
        payload_bytes = 0
        for method in queues:
            letters = self._server.dead_letters(method)
            reply.total += len(letters)
            for letter in letters[:max(0, limit - len(reply.dead_letters))]:
                if request.payloads:
                    payload_bytes += len(letter.payload)
                    if payload_bytes > MAX_PAYLOAD_BYTES and reply.dead_letters:
                        limit = 0  # the reply must fit in a frame: the rest on request
                        break
                reply.dead_letters.append(DeadLetterStatus(
                    queue=method, task_id=letter.task_id, attempts=letter.attempts,
                    last_error=letter.last_error, died_at=wall - (now - letter.died_at),
                    payload_size=len(letter.payload),
                    payload=letter.payload if request.payloads else b""))
        return reply

    def replay(self, request: ReplayRequest, context: Context) -> ReplayReply:
        method = self._known_queue(request.queue, context)
        task_ids = list(request.task_ids) or None
        if task_ids is not None:
            dead = {letter.task_id for letter in self._server.dead_letters(method)}
            missing = [task_id for task_id in task_ids if task_id not in dead]
            if missing:
                raise RpcError(StatusCode.NOT_FOUND, f"queue {method} has no dead letter "
                                                     f"{', '.join(map(str, missing))}")
        return ReplayReply(replayed=self._server.replay_dead_letters(method, task_ids))

    def disconnect(self, request: DisconnectRequest, context: Context) -> DisconnectReply:
        peers = self._inspect(context).peers
        which = request.peer
        chosen = [peer for peer in peers if peer.session_id == which] or [
            peer for peer in peers if peer.name == which] or [
            peer for peer in peers if len(which) >= MIN_PREFIX and peer.session_id.startswith(which)]
        if not chosen:
            raise RpcError(StatusCode.NOT_FOUND, f"no session or peer named {request.peer!r}")
        if len(chosen) > 1:
            raise RpcError(StatusCode.FAILED_PRECONDITION,
                           f"{len(chosen)} sessions of peers named {request.peer!r}: name one "
                           f"by its session id ({', '.join(peer.session_id for peer in chosen)})")
        session_id = chosen[0].session_id
        reason = "disconnected by an operator" + (f": {request.reason}" if request.reason else "")
        self._server.disconnect(session_id, reason)
        return DisconnectReply(session_ids=[session_id])

    def _known_queue(self, name: str, context: Context) -> str:
        method = queue_method(name)
        known = [queue.method for queue in self._inspect(context).queues]
        if method not in known:
            raise RpcError(StatusCode.NOT_FOUND,
                           f"no work queue {method} (queues: {', '.join(known) or 'none'})")
        return method
