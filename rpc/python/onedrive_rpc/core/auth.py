"""The shared-secret challenge of the handshake (rpc/protos/README.md §4.2):
both sides prove they know the secret without sending it, each over a
nonce of its own and one of the other's, so no exchange can be replayed.

    Hello{auth_nonce: client_nonce}                       client -> server
    Challenge{nonce: server_nonce,
              server_proof: HMAC(secret, "server" || client_nonce || server_nonce)}
    Proof{mac: HMAC(secret, "client" || server_nonce || client_nonce)}
    Welcome (or Close UNAUTHENTICATED)

HMAC is SHA-256; proofs are compared in constant time. No I/O.
"""
from __future__ import annotations

import hashlib
import hmac

__all__ = ["MIN_NONCE", "MIN_SECRET", "server_proof", "client_proof", "proves"]

#: Bytes of a nonce at least (each side's; 16 random bytes by the Python side).
MIN_NONCE = 16
#: Bytes of a shared secret at least: anything shorter is guessable offline
#: from one recorded handshake.
MIN_SECRET = 16


def server_proof(secret: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    return hmac.new(secret, b"server" + client_nonce + server_nonce, hashlib.sha256).digest()


def client_proof(secret: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    return hmac.new(secret, b"client" + server_nonce + client_nonce, hashlib.sha256).digest()


def proves(expected: bytes, presented: bytes) -> bool:
    """Does `presented` equal `expected`? (constant time)"""
    return hmac.compare_digest(expected, presented)
