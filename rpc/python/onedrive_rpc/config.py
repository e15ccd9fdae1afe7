"""Frozen, validated settings shared by servers and peers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .core.framing import ABSOLUTE_MAX_FRAME_SIZE, DEFAULT_MAX_FRAME_SIZE, MIN_FRAME_LIMIT
from .core.metadata import DEFAULT_MAX_METADATA_ENTRIES, DEFAULT_MAX_METADATA_SIZE
from .core.pubsub import DEFAULT_MAX_QUEUE_BYTES, DEFAULT_MAX_TOTAL_QUEUE_BYTES

__all__ = ["Limits", "Heartbeat", "Reconnect"]


#: The largest publish window (grants travel in a 32-bit Credit.items,
#: and a window plus one message must fit).
MAX_PUBLISH_WINDOW = 1024 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one side lets a peer cost it. Each default names its reason.

    max_frame_size: largest frame accepted; bigger is a protocol error that
        closes that one connection (a hostile length prefix cannot make us
        allocate more).
    max_concurrent_calls: Requests served at once per connection, announced
        in the handshake (HTTP/2's MAX_CONCURRENT_STREAMS): the peer's calls
        past it wait at the peer, ours past the peer's wait here, their
        deadlines counting. A Request past it anyway is answered
        RESOURCE_EXHAUSTED and reading goes on. Notifications and handlers
        still ending after a cancel get as many places again; past those
        the connection stops reading until one finishes (backpressure,
        bounded memory).
    max_call_bytes: bytes of request payloads a connection's calls in
        flight may hold at once (64 MiB): a Request past it is answered
        RESOURCE_EXHAUSTED without running its handler (one call alone
        always fits), so a peer that never reads its replies costs this,
        not max_concurrent_calls x its message size.
    max_server_call_bytes: the same summed over every connection of a
        server (512 MiB), so that many peers together cannot exceed it
        (RESOURCE_EXHAUSTED too; ignored by a client).
    max_server_read_bytes: bytes a server holds in the buffers of large
        frames being received (and spares kept for the next), over all
        connections (256 MiB): a connection whose next frame would take it
        past is closed RESOURCE_EXHAUSTED, so peers trickling 16 MiB frames
        cannot make a server hold 16 MiB each (ignored by a client).
    max_queued_bytes: bytes queued for a peer that does not read before the
        senders wait (32 MiB); a server's deliveries, tasks and broadcasts
        never wait: a peer past it is closed as a slow consumer
        (RESOURCE_EXHAUSTED).
    max_server_queued_bytes: the same summed over every connection of a
        server (256 MiB; ignored by a client): without it, peers that never
        read cost max_queued_bytes each (20 of them, 640 MiB). A push that
        finds the sum past it closes, as slow consumers (RESOURCE_EXHAUSTED),
        the peers holding the most until the rest fit; a peer that reads
        promptly holds little and is not among them. Each peer's copy
        counts, although large payloads of one broadcast are shared.
    max_subscription_bytes: payload bytes one subscription may have waiting
        on a server for the subscriber's credit (8 MiB; a message larger
        than that is queued alone). Past it, or past queue_limit messages,
        the subscription's slow-consumer policy applies: drop the oldest,
        drop the new message (both counted in Deliver.dropped) or close the
        subscriber's connection (RESOURCE_EXHAUSTED). Without it a
        subscriber that grants no credit made a server hold 1,024 (up to
        65,536) messages of any size: 1 GB at 1 MiB each.
    max_server_subscription_bytes: the same summed over every subscription
        of a server (256 MiB): a message that would take it past applies
        the receiving subscription's policy as if its queue were full, so
        many stalled subscriptions cannot multiply the bound above.
    publish_window: bytes of publish cost (a message's payload + 64) a
        client may have published that its server has not given back
        (1 MiB), announced in the Welcome: a server holds a publisher
        back by not giving it back while a `block` subscription the
        publisher's messages went to is past its limits (spec §8.3). What
        `block` queues hold past their limits is at most this plus one
        message per publishing connection. 0: no window, and `block`
        subscriptions are refused (ignored by a client).
    block_stall_timeout: seconds a `block` subscriber may hold publishers
        back without taking a message (30): then it ends as by
        `disconnect`, so a subscriber that is alive but stuck (or hostile)
        cannot hold publishers forever. One whose connection is lost ends
        at once (ignored by a client).
    max_connections: connections a server holds at once, handshakes
        included (suspended sessions do not count: see below); more are
        closed at once with RESOURCE_EXHAUSTED.
    max_connections_per_peer: of those, from one peer: one uid on a unix
        socket, one host on tcp (RESOURCE_EXHAUSTED past it).
    max_suspended_sessions: sessions a server keeps for a resume after
        their connection broke; past it the oldest is ended (its peer gets
        a new session when it comes back). Bounds what peers that reset
        right after their handshake can make a server hold.
    handshake_timeout: seconds a new connection has to finish its handshake.
    max_metadata_size: bytes of metadata (the UTF-8 of every key and value,
        summed) a Hello, Request or Notify may carry, either way. A peer's
        metadata is parsed and kept as a dict for every call before any
        handler runs; 8 KiB as gRPC's header list. Past it a Request is
        answered RESOURCE_EXHAUSTED without running its handler, a Hello or
        Notify closes the connection (RESOURCE_EXHAUSTED), and our own call,
        notification or connect fails locally with RESOURCE_EXHAUSTED.
    min_heartbeat_interval: the fastest heartbeat a server agrees to: a
        peer asking for less gets this (50 ms: a hundred peers asking for
        10 ms would otherwise keep a server core busy with heartbeats).
    max_metadata_entries: pairs of metadata, likewise (64: the count is
        checked before a map is copied). 0 for either: no metadata at all.
    """

    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_concurrent_calls: int = 1024
    max_call_bytes: int = 64 * 1024 * 1024
    max_server_call_bytes: int = 512 * 1024 * 1024
    max_server_read_bytes: int = 256 * 1024 * 1024
    max_queued_bytes: int = 32 * 1024 * 1024
    max_server_queued_bytes: int = 256 * 1024 * 1024
    max_subscription_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    max_server_subscription_bytes: int = DEFAULT_MAX_TOTAL_QUEUE_BYTES
    publish_window: int = 1024 * 1024
    block_stall_timeout: float = 30.0
    max_connections: int = 1024
    handshake_timeout: float = 10.0
    max_connections_per_peer: int = 1024
    max_suspended_sessions: int = 1024
    max_metadata_size: int = DEFAULT_MAX_METADATA_SIZE
    max_metadata_entries: int = DEFAULT_MAX_METADATA_ENTRIES
    min_heartbeat_interval: float = 0.05

    def __post_init__(self) -> None:
        if not MIN_FRAME_LIMIT <= self.max_frame_size <= ABSOLUTE_MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be in {MIN_FRAME_LIMIT}..{ABSOLUTE_MAX_FRAME_SIZE}, "
                             f"not {self.max_frame_size}")
        for name in ("max_concurrent_calls", "max_call_bytes", "max_server_call_bytes",
                     "max_server_read_bytes", "max_queued_bytes", "max_server_queued_bytes",
                     "max_subscription_bytes", "max_server_subscription_bytes", "max_connections",
                     "max_connections_per_peer", "max_suspended_sessions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not 0 <= self.publish_window <= MAX_PUBLISH_WINDOW:
            raise ValueError(f"publish_window must be in 0..{MAX_PUBLISH_WINDOW} bytes, "
                             f"not {self.publish_window}")
        if not self.block_stall_timeout > 0:
            raise ValueError(f"block_stall_timeout must be positive, not "
                             f"{self.block_stall_timeout}")
        if not self.handshake_timeout > 0:
            raise ValueError(f"handshake_timeout must be positive, not {self.handshake_timeout}")
        for name in ("max_metadata_size", "max_metadata_entries"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, not {value!r}")
        if not 0 <= self.min_heartbeat_interval <= MAX_HEARTBEAT_INTERVAL:
            raise ValueError(f"min_heartbeat_interval must be in 0..{MAX_HEARTBEAT_INTERVAL} s, "
                             f"not {self.min_heartbeat_interval}")


#: Fewer would race a healthy peer's heartbeat (spec §4.2).
MIN_MISSES = 2


@dataclass(frozen=True)
class Heartbeat:
    """How a side finds out that its peer died or hung.

    A side that has sent nothing for `interval` seconds sends a heartbeat;
    a peer silent for `interval * misses` seconds is declared lost. The
    defaults (1 s, 3 misses: lost within 3 s) follow the ZeroMQ guide's
    Paranoid Pirate and suit local IPC, where a healthy peer answers in
    microseconds; zerorpc waits 5 s x 2, gRPC keepalive minutes. The two
    sides agree on the smaller interval in the handshake; each keeps its own
    `misses`, so neither waits longer than it asked for. At least 2 misses
    (spec §4.2): with 1, a healthy peer's heartbeat, due one interval after
    its last frame, races the bound.
    """

    interval: float = 1.0
    misses: int = 3

    def __post_init__(self) -> None:
        if not MIN_HEARTBEAT_INTERVAL <= self.interval <= MAX_HEARTBEAT_INTERVAL:
            raise ValueError(f"heartbeat interval must be in {MIN_HEARTBEAT_INTERVAL}.."
                             f"{MAX_HEARTBEAT_INTERVAL} s, not {self.interval}")
        if not MIN_MISSES <= self.misses <= 1000:
            raise ValueError(f"heartbeat misses must be in {MIN_MISSES}..1000, not {self.misses}")

    @property
    def timeout(self) -> float:
        """Seconds of silence after which the peer is declared lost."""
        return self.interval * self.misses


# Heartbeat intervals the wire can carry (milliseconds) and a sane ceiling:
# below 10 ms a heartbeat is noise, above an hour it no longer finds anything.
MIN_HEARTBEAT_INTERVAL = 0.01
MAX_HEARTBEAT_INTERVAL = 3600.0


@dataclass(frozen=True)
class Reconnect:
    """How a client comes back after its connection breaks.

    It retries at once, then after `initial_delay`, doubling (`multiplier`)
    up to `max_delay`, each delay varied by +/- `jitter` so that many
    clients of a restarted server do not come back in lockstep. Within
    `grace` seconds it resumes the same session: calls in flight complete,
    nothing is lost or run twice. After that, or if the server lost the
    session (it restarted), pending calls fail with UNAVAILABLE and the
    client starts a new session. `enabled=False`: a broken connection ends
    the peer.
    """

    enabled: bool = True
    initial_delay: float = 0.05
    max_delay: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.2
    grace: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_delay <= self.max_delay:
            raise ValueError(f"need 0 < initial_delay <= max_delay, not {self.initial_delay}, "
                             f"{self.max_delay}")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be at least 1, not {self.multiplier}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), not {self.jitter}")
        if self.grace < 0:
            raise ValueError(f"grace must not be negative, not {self.grace}")

    def delays(self, rng) -> "Iterator[float]":
        """The waits between attempts: 0 first, then capped exponential with jitter."""
        yield 0.0
        delay = self.initial_delay
        while True:
            yield delay * (1 + self.jitter * (2 * rng.random() - 1))
            delay = min(delay * self.multiplier, self.max_delay)
