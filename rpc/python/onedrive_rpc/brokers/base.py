"""What a server's broker hands to a backend, and what a backend calls back.

The broker of a server has two parts. The *front* (broker.py's Broker)
faces this server's peers and its own process; the *backend* holds what
crosses servers. The front calls the Backend; the backend calls the front
through Inbound, always from the gevent hub (a backend that runs another
loop in another thread hands its calls over to the hub first). Both are
Protocols: a backend is any object with these methods.

Stays in the front, whatever the backend: sessions and their Outlets
(flow control towards peers never moves), the interceptors (PatternGate),
publish windows and PublisherHolds, the per-subscription PubSub with its
slow-consumer policies and queues, FanOut and the encoded Deliver cache,
this process's own receivers (patterns.Receivers), which consumer belongs
to which session, the check that a method is served with its pattern,
and inspect/admin/metrics (which read the backend's queue stats).

Goes to the backend: the work queues' state (tasks, credit, attempts, dead
letters), and the relay of publishes, holds and broadcasts to the other
servers of the same system (one copy per server: each server delivers to
its own subscribers itself, under its own policies).
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Protocol, Tuple

from ..core.workqueue import DeadLetter, QueueStats

__all__ = ["Backend", "Inbound", "ConsumerKey"]

#: A consumer: (owner, consumer id). The owner is the front's (a peer's
#: Outlet, or its token for this process); a backend only compares keys.
ConsumerKey = Tuple[object, int]


class Inbound(Protocol):
    """The front, as a backend calls it: from the gevent hub only. A
    backend may call on_task and on_dead from inside its own queue methods
    (the in-process one does: a task goes out as soon as it can)."""

    def on_task(self, key: ConsumerKey, task_id: int, attempt: int, payload: bytes) -> None:
        """Deliver task `task_id` to consumer `key`, which has credit for it
        (`attempt`: 1 the first time). The front pushes it to the peer or
        hands it to this process's consumer; a push that fails is fine:
        the front removes the consumer (lost) when its session ends."""
        ...

    def on_dead(self, method: str, key: ConsumerKey, letters: List[DeadLetter]) -> None:
        """`letters` became dead letters, the last attempt by consumer
        `key`: the front logs them, naming who that was."""
        ...

    def on_message(self, method: str, topic: str, payload: bytes, publisher: str,
                   seq: int) -> None:
        """A message another server's `publisher` published (its `seq`-th
        on `method`): the front delivers it to its own subscribers."""
        ...

    def on_hold(self, method: str, publisher: str, held: bool) -> None:
        """A block subscriber on another server is behind (`held`) or has
        caught up: `publisher`, a session of this server, is held back."""
        ...

    def on_broadcast(self, method: str, payload: bytes, origin: str) -> None:
        """A broadcast of another server's peer `origin`: the front sends
        it to its own peers and listeners."""
        ...


class Backend(Protocol):
    """Where a server's work queues live and how its publish/subscribe and
    broadcasts reach other servers: onedrive_rpc.brokers.InProcess (the
    default: one server, no relay) or a distributed one. One backend serves
    one server. Methods are called from the gevent hub; none may block the
    hub (`produce` may wait in its calling greenlet)."""

    # ------------------------------------------------------------ lifecycle

    def start(self, node_id: str, inbound: Inbound) -> None:
        """Begin serving the front `inbound` of the server `node_id`
        (the server's peer id: the origin of what it relays). Called once,
        when the server is built, before any other method; returns at once
        (a connection to a remote engine is made in the background)."""
        ...

    def close(self) -> None:
        """The server stopped: release what the backend holds (connections,
        threads); in-process state goes with it."""
        ...

    # ---------------------------------------- publish/subscribe, broadcasts
    # One copy per server crosses: the front delivers to its own
    # subscribers, with their policies, and so does every other server.

    def interest(self, method: str) -> None:
        """This server has its first subscription of `method`: from now on,
        relay other servers' messages of `method` here (on_message)."""
        ...

    def no_interest(self, method: str) -> None:
        """This server's last subscription of `method` ended: stop relaying
        its messages here."""
        ...

    def publish(self, method: str, topic: str, payload: bytes, publisher: str,
                seq: int) -> None:
        """A publish on this server (by a peer, or this process), already
        delivered here: relay it to the other servers, keeping each
        publisher's order (`seq` counts its messages of `method` from 1,
        so that a receiving server can tell a gap)."""
        ...

    def hold(self, method: str, publisher: str, held: bool) -> None:
        """A block subscription here is behind on messages of the remote
        `publisher` (`held`), or caught up: tell its server (on_hold)."""
        ...

    def broadcast(self, method: str, payload: bytes, origin: str) -> None:
        """A broadcast on this server (its peers and listeners have it):
        relay it to the other servers' peers and listeners."""
        ...

    # ---------------------------------------------------------- work queues
    # The front has checked that `method` is a PRODUCER_CONSUMER method;
    # refusals are RpcErrors (RESOURCE_EXHAUSTED for a full queue,
    # INVALID_ARGUMENT for a bad setting). Tasks go out through on_task.

    def configure_queue(self, method: str, **limits: int) -> None:
        """Set `max_attempts`, `max_tasks`, `max_bytes`, `max_dead_letters`
        or `max_dead_letter_bytes` of the queue of `method` (TypeError for
        an unknown name, ValueError for a value below 1)."""
        ...

    def produce(self, method: str, payload: bytes, timeout: Optional[float]) -> int:
        """Put a task on the queue of `method`; returns its id. May wait
        (in the calling greenlet) up to `timeout` seconds for a remote
        engine to take it."""
        ...

    def add_consumer(self, key: ConsumerKey, method: str, prefetch: int) -> None:
        """A consumer of `method` that may hold `prefetch` tasks at once
        (INVALID_ARGUMENT: a prefetch out of range, or a key in use)."""
        ...

    def grant(self, key: ConsumerKey, items: int) -> None:
        """More credit for `key` (ValueError past the maximum prefetch); an
        unknown key (one that withdrew) is ignored."""
        ...

    def done(self, key: ConsumerKey, task_id: int, ok: bool, error: str) -> None:
        """`key` finished task `task_id` (`error`: why not `ok`). Only the
        task's current holder counts: anything else is ignored."""
        ...

    def remove_consumer(self, key: ConsumerKey, lost: bool) -> None:
        """`key` withdrew (an attempt is used on its unfinished tasks only
        if it was `lost`); they go to other consumers. An unknown key is
        ignored."""
        ...

    def queue_stats(self, method: str) -> QueueStats:
        """The counts of the queue of `method`."""
        ...

    def every_queue_stats(self) -> Dict[str, QueueStats]:
        """The counts of every queue used so far, by method (for inspect,
        admin and metrics)."""
        ...

    def dead_letters(self, method: str) -> List[DeadLetter]:
        """The dead letters kept for `method`, oldest first."""
        ...

    def replay(self, method: str, task_ids: Optional[Iterable[int]]) -> int:
        """Put dead letters (all, or those named) back on the queue with
        fresh attempts; returns how many."""
        ...

    def purge(self, method: str) -> int:
        """Drop every dead letter of `method`; returns how many."""
        ...
