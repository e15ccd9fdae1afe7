"""rpc.TLS: the certificate settings of a tls:// server or client.

    server = rpc.Server("tls://0.0.0.0:7000",
                        tls=rpc.TLS(certfile="server.pem", keyfile="server.key"))
    peer = rpc.connect("tls://db.example:7000")                    # system CAs
    peer = rpc.connect("tls://10.0.0.5:7000", tls=rpc.TLS(cafile="ca.pem"))

Secure by default, as gRPC and NATS clients are: a client verifies the
server's certificate (against `cafile`, else the system's CAs) and that it
names the host of the URL (or `server_hostname`); TLS 1.2 is the oldest
version either side speaks. Mutual TLS: the server sets
`require_client_cert=True` and the `cafile` that issued the client
certificates; each client gives its `certfile` and `keyfile`. Handlers
see the client's certificate as `context.certificate` (ssl's
`getpeercert()`: "subject", "issuer", "notAfter", ...).

A ready `ssl.SSLContext` is taken as it is wherever a TLS is.
"""
from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Callable, Optional, Tuple, Union

__all__ = ["TLS", "TlsSetting", "client_context", "server_context"]

#: The oldest protocol either side accepts: TLS 1.0 and 1.1 are deprecated
#: (RFC 8996) and have no cipher suite still considered safe.
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class TLS:
    """Certificates for one side of a tls:// connection.

    `certfile`/`keyfile`: this side's certificate chain and private key (PEM;
    `keyfile` may be omitted when `certfile` holds both). A server needs
    them; a client gives them for mutual TLS.
    `cafile`: the CAs this side trusts to have signed the other side's
    certificate (PEM); None: the system's default CAs (clients).
    `require_client_cert` (servers): refuse clients without a certificate
    signed by `cafile` (mutual TLS).
    `server_hostname` (clients): the name the server's certificate must
    carry, when it is not the host in the URL (e.g. connecting by address).
    """

    certfile: Optional[PathLike] = None
    keyfile: Optional[PathLike] = None
    cafile: Optional[PathLike] = None
    require_client_cert: bool = False
    server_hostname: Optional[str] = None

    def __post_init__(self) -> None:
        for name in ("certfile", "keyfile", "cafile"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"TLS {name} must be a path, not {value!r}")
            if value is not None and not os.fspath(value):
                raise ValueError(f"TLS {name} is empty: give a path or None")
        if self.keyfile is not None and self.certfile is None:
            raise ValueError("TLS keyfile given without certfile")
        if not isinstance(self.require_client_cert, bool):
            raise TypeError(f"TLS require_client_cert must be a bool, "
                            f"not {self.require_client_cert!r}")
        if self.require_client_cert and self.cafile is None:
            raise ValueError("TLS require_client_cert=True needs cafile=: the CA that "
                             "issued the client certificates (the system's CAs would "
                             "let anyone with a public certificate in)")
        if self.server_hostname is not None and (
                not isinstance(self.server_hostname, str) or not self.server_hostname):
            raise ValueError(f"TLS server_hostname must be a non-empty name, "
                             f"not {self.server_hostname!r}")


#: What `tls=` takes: our settings, or a context the caller built.
TlsSetting = Union[TLS, ssl.SSLContext]


def client_context(tls: Optional[TlsSetting]) -> Tuple[ssl.SSLContext, Optional[str]]:
    """The context a client connects with, and the server name it checks
    (None: the URL's host)."""
    if isinstance(tls, ssl.SSLContext):
        return tls, None
    tls = tls if tls is not None else TLS()
    if not isinstance(tls, TLS):
        raise TypeError(f"tls= takes rpc.TLS(...) or an ssl.SSLContext, not {tls!r}")
    if tls.require_client_cert:
        raise ValueError("require_client_cert is a server setting; a client sends its "
                         "certificate when given certfile=")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if tls.cafile is not None:
        # Only the CAs asked for, not the system's as well.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        _load("cafile", tls.cafile, lambda: context.load_verify_locations(cafile=tls.cafile))
    context.minimum_version = MINIMUM_VERSION
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    certfile, keyfile = tls.certfile, tls.keyfile
    if certfile is not None:
        _load("certfile", certfile, lambda: context.load_cert_chain(certfile, keyfile))
    return context, tls.server_hostname


def server_context(tls: TlsSetting) -> ssl.SSLContext:
    """The context a server accepts connections with."""
    if isinstance(tls, ssl.SSLContext):
        return tls
    if not isinstance(tls, TLS):
        raise TypeError(f"tls= takes rpc.TLS(...) or an ssl.SSLContext, not {tls!r}")
    certfile, keyfile = tls.certfile, tls.keyfile
    if certfile is None:
        raise ValueError("a tls:// server needs its certificate: "
                         "tls=rpc.TLS(certfile=..., keyfile=...)")
    if tls.server_hostname is not None:
        raise ValueError("server_hostname is a client setting")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    _load("certfile", certfile, lambda: context.load_cert_chain(certfile, keyfile))
    if tls.cafile is not None:
        _load("cafile", tls.cafile, lambda: context.load_verify_locations(cafile=tls.cafile))
        # Verify a client certificate whenever one is given; demand one for mTLS.
        context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    return context


def _load(what: str, path: PathLike, load: Callable[[], None]) -> None:
    """Run `load`; a missing or bad file is a ValueError naming it."""
    try:
        load()
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load TLS {what} {os.fspath(path)!r}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from exc
