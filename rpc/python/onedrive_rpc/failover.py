"""Which server a client tries, in what order: `rpc.connect([url, ...])`.

gRPC's client load-balancing policies are the reference, with one honest
difference: a gRPC channel spreads *calls* over connections to every
address, while a Peer here is one session over one connection, and a
session lives on the server that opened it. So a policy decides where each
new connection goes, and failing over means a new session on another
server (calls in flight fail UNAVAILABLE; subscriptions and consumers are
registered again, as after a server restart).

pick_first (the default)
    The first connection tries the addresses in the order given; the first
    that works wins. When the connection breaks, the server the peer was
    on is tried first, then the next ones, wrapping around.
round_robin
    Each new connection starts at the next address: the first one at the
    next of a process-wide rotation (so N peers of a process spread evenly
    over the servers, and processes start at random places), a new session
    after a failure at the address after the server just left (it is
    tried last). It spreads many peers' connections, not one peer's calls.

Both policies keep a session where it is while it may still resume: as
long as the lost session is suspended (its server refused nothing and the
grace period is not over) only its server is tried, so a connection that
comes back within the grace resumes, calls in flight complete, and the
session's resume token is only ever sent to the server that issued it.
The session is known gone when its server refuses the connection (the
process is gone), answers without it, or the grace period passes; then the
other addresses are tried at once, in the same round. A server that
answers without the session gives the new one there and then, whatever the
policy: it works. Between full rounds the peer waits as Reconnect says.

Pure: no I/O, no clock, so the rules are tested without sockets.
"""
from __future__ import annotations

import itertools
import random
from typing import Dict, Iterator, List, Sequence, Tuple, Union

__all__ = ["Addresses", "PICK_FIRST", "ROUND_ROBIN", "BALANCE_POLICIES"]

PICK_FIRST = "pick_first"
ROUND_ROBIN = "round_robin"
BALANCE_POLICIES = (PICK_FIRST, ROUND_ROBIN)

#: Where the next round_robin peer of this process starts, per address list.
_rotations: Dict[Tuple[str, ...], Iterator[int]] = {}

#: Address lists whose rotation is remembered: a program that makes peers
#: of ever new lists must not grow this without end (past it, lists start
#: again at random places).
MAX_ROTATIONS = 256


def _next_start(urls: Tuple[str, ...]) -> int:
    rotation = _rotations.get(urls)
    if rotation is None:
        if len(_rotations) >= MAX_ROTATIONS:
            _rotations.clear()
        # A random first place: many processes do not all start at one server.
        rotation = _rotations[urls] = itertools.count(random.randrange(len(urls)))
    return next(rotation) % len(urls)


class Addresses:
    """The servers of one peer, which of them holds its session (`home`),
    and the order to try them in (see the module's docstring)."""

    def __init__(self, urls: Union[str, Sequence[str]], balance: str = PICK_FIRST) -> None:
        if isinstance(urls, str):
            urls = [urls]
        elif isinstance(urls, (bytes, bytearray)) or not isinstance(urls, Sequence):
            raise TypeError(f"connect() takes a URL or a list of URLs, not {urls!r}")
        if not urls:
            raise ValueError("connect() needs at least one URL, not an empty list")
        for url in urls:
            if not isinstance(url, str):
                raise TypeError(f"every address must be a URL string, not {url!r}")
        if len(set(urls)) != len(urls):
            # Which server issued a session is told by its place in the list.
            raise ValueError(f"an address is listed twice in {list(urls)!r}")
        if balance not in BALANCE_POLICIES:
            raise ValueError(f"balance must be one of {', '.join(BALANCE_POLICIES)}, "
                             f"not {balance!r}")
        self.urls: Tuple[str, ...] = tuple(urls)
        self.balance = balance
        #: The index of the server the peer's session lives on.
        self.home = 0

    def __len__(self) -> int:
        return len(self.urls)

    @property
    def url(self) -> str:
        return self.urls[self.home]

    def initial(self) -> List[int]:
        """The order of the first connection's tries."""
        start = 0 if self.balance == PICK_FIRST or len(self.urls) == 1 else _next_start(self.urls)
        return self._from(start)

    def round(self, resumable: bool) -> List[int]:
        """The order of one reconnecting round. `resumable`: the lost
        session may still resume, so its server comes first (and alone,
        unless it turns out to be gone during the round)."""
        if resumable or self.balance == PICK_FIRST:
            return self._from(self.home)
        return self._from(self.home + 1)

    def _from(self, start: int) -> List[int]:
        n = len(self.urls)
        return [(start + i) % n for i in range(n)]
