"""How peers authenticate each other in the handshake, as configured on
`rpc.Server(url, auth=...)` and `rpc.connect(url, auth=...)`."""
from __future__ import annotations

from typing import Union

from .core.auth import MIN_SECRET

__all__ = ["SharedSecret"]


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
