"""How peers authenticate each other in the handshake, as configured on
`rpc.Server(url, auth=...)` and `rpc.connect(url, auth=...)`."""
from __future__ import annotations

import os
from typing import Callable, Iterable, Mapping, Optional, Union

from .calls import Identity
from .core.auth import MIN_SECRET
from .core.events import PeerInfo
from .transport import PeerCredentials

__all__ = ["SharedSecret", "UnixPeers", "Auth", "Authenticate"]


class SharedSecret:
    """Both sides hold the same secret and prove it to each other in the
    handshake (HMAC challenge/response over a nonce from each side: the
    secret never crosses the wire and no exchange can be replayed). A
    server with one refuses clients without it, UNAUTHENTICATED; a client
    with one refuses a server that does not prove it. At least 16 bytes
    (str is taken as UTF-8); keep it out of logs: its repr hides it."""

    __slots__ = ("_secret",)

    def __init__(self, secret: Union[bytes, str]) -> None:
        value = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(value) < MIN_SECRET:
            raise ValueError(f"a shared secret must be at least {MIN_SECRET} bytes, not "
                             f"{len(value)}")
        self._secret = value

    @property
    def secret(self) -> bytes:
        return self._secret

    def __repr__(self) -> str:
        return "SharedSecret(<hidden>)"


class UnixPeers:
    """On a unix socket, the users (and groups) whose processes may connect,
    as the kernel reports them (SO_PEERCRED: not something the peer says).
    Others are refused with UNAUTHENTICATED before their Hello is read.
    The default of a unix server: its own uid, and root."""

    __slots__ = ("uids", "gids")

    def __init__(self, uids: Iterable[int] = (), gids: Iterable[int] = ()) -> None:
        self.uids = frozenset(uids)
        self.gids = frozenset(gids)
        if not self.uids and not self.gids:
            raise ValueError("UnixPeers needs at least one uid or gid to let in")

    @classmethod
    def default(cls) -> "UnixPeers":
        return cls(uids={os.getuid(), 0})

    def refusal(self, credentials: Optional[PeerCredentials]) -> Optional[str]:
        """Why a peer with `credentials` may not connect, or None."""
        if credentials is None:
            return None  # not a unix socket: this check does not apply
        if credentials.uid in self.uids or credentials.gid in self.gids:
            return None
        return (f"uid {credentials.uid} (gid {credentials.gid}) may not use this server: it "
                f"lets in uids {sorted(self.uids)} and gids {sorted(self.gids)} (UnixPeers)")

    def __repr__(self) -> str:
        return f"UnixPeers(uids={sorted(self.uids)}, gids={sorted(self.gids)})"


#: What `auth=` takes: one of these, or several together (all must pass).
Auth = Union[SharedSecret, UnixPeers, Iterable[Union[SharedSecret, UnixPeers]]]


def split_auth(auth: Optional[Auth]) -> "tuple[Optional[SharedSecret], Optional[UnixPeers]]":
    """The shared secret and the unix peers an `auth=` names (each or None)."""
    if auth is None:
        items: list = []
    elif isinstance(auth, (SharedSecret, UnixPeers)):
        items = [auth]
    else:
        items = list(auth)
    secrets = [item for item in items if isinstance(item, SharedSecret)]
    peers = [item for item in items if isinstance(item, UnixPeers)]
    unknown = [item for item in items if not isinstance(item, (SharedSecret, UnixPeers))]
    if unknown or len(secrets) > 1 or len(peers) > 1:
        raise TypeError(f"auth= takes a SharedSecret, a UnixPeers or one of each, not {auth!r}")
    return (secrets[0] if secrets else None), (peers[0] if peers else None)


#: `rpc.Server(url, authenticate=fn)`: `fn(peer, metadata)` is asked about
#: every client's Hello (a resuming one too), after the shared secret and
#: unix peers checks and before any Welcome: `peer` is what the Hello says
#: (not checked), `metadata` its metadata (a token, say). It returns the
#: rpc.Identity the client proved (handlers see it as context.identity); or
#: None, or raises rpc.RpcError (its code and message are sent), to turn
#: the client away, UNAUTHENTICATED. It runs in the connection's own
#: greenlet, within Limits.handshake_timeout: it may look a token up.
Authenticate = Callable[[PeerInfo, Mapping[str, str]], Optional[Identity]]
