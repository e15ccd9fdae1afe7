"""What a handler sees as the caller's identity: what the connection proved,
strongest first (a shared secret, a verified TLS client certificate, the
kernel's word on a unix peer), never what the Hello says."""
from __future__ import annotations

import onedrive_rpc as rpc
from onedrive_rpc.calls import ANONYMOUS
from onedrive_rpc.transport import PeerCredentials

CERT = {"subject": ((("commonName", "tray"),), (("organizationName", "OneDrive"),)),
        "issuer": ((("commonName", "ca"),),)}
UNIX = PeerCredentials(pid=7, uid=1000, gid=1000)


def test_a_shared_secret_wins():
    assert rpc.Identity.of(True, UNIX, CERT) == rpc.Identity("shared-secret", "")


def test_a_verified_client_certificate_names_its_subject():
    assert rpc.Identity.of(False, None, CERT) == rpc.Identity(
        "tls", "commonName=tray,organizationName=OneDrive")


def test_a_unix_peer_is_its_uid():
    assert rpc.Identity.of(False, UNIX, None) == rpc.Identity("unix", "uid 1000")


def test_nothing_checked_is_anonymous():
    assert rpc.Identity.of(False, None, None) is ANONYMOUS == rpc.Identity("none")
    assert rpc.Identity.of(False, None, {}) is ANONYMOUS  # a TLS client without a certificate
