"""The handshake of a session: Hello, Welcome, and resuming an earlier session.

Rules (rpc/protos/README.md §4):

- The client's first frame is Hello; the server answers Welcome (or Close).
  Each names its protocol version: another version is refused with a Close
  (FAILED_PRECONDITION) naming both, and raises VersionMismatch.
- Each side announces the largest frame it accepts; absent, assume the peer
  takes what we take. Less than MIN_FRAME_LIMIT is a protocol error. Until
  the handshake is done, frames are held to HANDSHAKE_MAX_FRAME_SIZE: a
  Hello that would not fit is refused before it is sent.
- Hello metadata is held to the metadata limits (core/metadata.py): more is
  refused before it is sent, and by the server with a Close
  (RESOURCE_EXHAUSTED) naming the limit.
- Each side may announce the most Requests it serves at once
  (max_concurrent_calls; 0: none announced), as HTTP/2's
  MAX_CONCURRENT_STREAMS: the other side keeps no more than that many of
  its calls unanswered and queues the rest itself.
- The smaller heartbeat interval wins: the server decides and says so in
  Welcome, never below its own minimum (min_heartbeat_interval: a peer
  asking for a faster one gets the minimum, so a hundred peers asking for
  10 ms cannot keep the server busy ticking). Each side keeps its own
  misses. Less than 10 ms on the wire is a protocol error.
- A Hello may name a session to resume and the last seq the client
  received. The server reports ResumeRequested; its owner looks the session
  up and answers accept_resume(its Reliability), which resends what the
  client has not received, or refuse_resume(), which starts a new session.
  A session id is no secret (other peers see it): the Hello must also
  carry the session's resume token, which only the server's last Welcome
  of that session held; without it accept_resume raises ResumeRefused
  (UNAUTHENTICATED). Every Welcome carries the session's token: random
  for a new session, and the same for its life (a resume's Welcome may be
  lost with its connection; the client must still hold a token that works).
  A client told that its session is gone starts over with a new Reliability.
- With a shared secret (core/auth.py), the client's Hello carries its
  nonce and the server answers a Challenge before anything else; the
  client checks the server's proof and answers a Proof; only then does the
  server take the Hello (a resume included). Any failure, or a Hello
  without a nonce to a server that asks for the secret, or a Welcome
  without a Challenge to a client that has one, is AuthenticationFailed
  (UNAUTHENTICATED).
- Handshake frames are not sequenced and carry no ack: what a resuming side
  received is in the handshake's own fields.

Like the Session that holds it, this does no I/O. It reads and writes the
handshake frames and returns what the Session must do next (a Step), so that
the Session's own state changes stay in one place (Session._take).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple

import secrets

from . import auth
from . import events as ev
from . import wire_pb2
from . import metadata as md
from .errors import (AuthenticationFailed, LocalProtocolError, MetadataTooLarge,
                     RemoteProtocolError, ResumeRefused, VersionMismatch)
from .framing import HANDSHAKE_MAX_FRAME_SIZE, MIN_FRAME_LIMIT, Frame
from .liveness import Liveness
from .reliability import Reliability

__all__ = ["PROTOCOL_VERSION", "Negotiation", "Step"]

PROTOCOL_VERSION = wire_pb2.PROTOCOL_VERSION_1

_MAX_UINT32 = 2 ** 32 - 1

# Intervals below this would make a peer spend its time on heartbeats.
MIN_HEARTBEAT_MS = 10

_Envelope = wire_pb2.Envelope
_EMPTY: Mapping[str, str] = {}


class Step(NamedTuple):
    """What the Session does after a handshake frame or decision, in this order."""

    event: Optional[ev.Event]                  # Handshaken or ResumeRequested: reported
    peer: Optional[ev.PeerInfo] = None         # who the peer says it is
    peer_max_frame_size: int = 0               # the largest frame it takes (0: as assumed)
    reliability: Optional[Reliability] = None  # the session's state from now on
    session_id: Optional[str] = None
    interval: float = 0.0                      # > 0: OPEN, with this heartbeat interval
    reply: Optional[_Envelope] = None          # the handshake frame to queue (Welcome)
    resend_after: Optional[int] = None         # queue again every sequenced frame after this seq
    resume_token: bytes = b""                  # what resumes the session from now on


class Negotiation:
    """One side's part of the handshake, for the Session that holds it."""

    __slots__ = ("identity", "max_frame_size", "interval", "misses", "metadata", "resume_id",
                 "hello_sent", "peer", "agreed_interval", "hello_metadata", "resume_request",
                 "resent_through", "max_metadata_size", "max_metadata_entries",
                 "min_interval", "max_calls", "peer_max_calls", "token", "secret", "nonce",
                 "proven", "awaiting_proof", "publish_window", "peer_publish_window",
                 "session_grace", "peer_session_grace")

    def __init__(self, *, peer_id: str, name: str, pid: int, max_frame_size: int,
                 metadata: Optional[Mapping[str, str]], heartbeat_interval: float,
                 heartbeat_misses: int, resume_session_id: str,
                 max_metadata_size: int = md.DEFAULT_MAX_METADATA_SIZE,
                 max_metadata_entries: int = md.DEFAULT_MAX_METADATA_ENTRIES,
                 min_heartbeat_interval: float = 0.0, max_concurrent_calls: int = 0,
                 resume_token: bytes = b"", secret: Optional[bytes] = None,
                 publish_window: int = 0, session_grace: float = 0.0) -> None:
        if secret is not None and len(secret) < auth.MIN_SECRET:
            raise ValueError(f"a shared secret must be at least {auth.MIN_SECRET} bytes, "
                             f"not {len(secret)}")
        for setting, value in (("max_concurrent_calls", max_concurrent_calls),
                               ("publish_window", publish_window)):
            if not 0 <= value <= _MAX_UINT32:
                raise ValueError(f"{setting} must be in 0..{_MAX_UINT32}, not {value}")
        # Validates both before anything goes on the wire.
        Liveness(heartbeat_interval, heartbeat_misses, 0.0)
        md.validate_limits(max_metadata_size, max_metadata_entries)
        self.max_metadata_size = max_metadata_size
        self.max_metadata_entries = max_metadata_entries
        if metadata:
            found = md.excess(metadata, max_metadata_size, max_metadata_entries)
            if found is not None:
                raise MetadataTooLarge("hello", *found)
        self.identity = wire_pb2.PeerIdentity(peer_id=peer_id, name=name, pid=pid)
        self.max_frame_size = max_frame_size
        #: The Requests we serve at once, announced; the peer's (0: unlimited).
        self.max_calls = max_concurrent_calls
        self.peer_max_calls = 0
        #: Server: the publish window its Welcome announces (core/publish_window.py);
        #: client: the one the server announced (0: none).
        self.publish_window = publish_window
        self.peer_publish_window = 0
        #: Server: how long it keeps a session for a resume, as its Welcome
        #: says; client: what the server said (0: not said).
        self.session_grace = session_grace
        self.peer_session_grace = 0.0
        #: Server: the resume token its Welcome gives this session.
        self.token = resume_token
        #: The shared secret both sides must prove they know (None: no
        #: authentication), and our nonce for it.
        self.secret = secret
        self.nonce = secrets.token_bytes(auth.MIN_NONCE) if secret is not None else b""
        #: The peer proved it knows the secret (its Challenge, its Proof).
        self.proven = False
        #: Server: the Hello waiting for the client's Proof, and its session id.
        self.awaiting_proof: Optional[Tuple[wire_pb2.Hello, str]] = None
        self.interval = heartbeat_interval
        #: Our own misses: the peer's bound on our silence is its own.
        self.misses = heartbeat_misses
        self.metadata = dict(metadata or {})
        # Client: the session to resume (its Reliability is the Session's).
        self.resume_id = resume_session_id
        self.hello_sent = False
        # Server: what the Hello said, for the Welcome.
        self.peer: Optional[ev.PeerInfo] = None
        self.agreed_interval = heartbeat_interval
        #: Server: no peer gets a faster heartbeat than this (or our own).
        self.min_interval = min(min_heartbeat_interval, heartbeat_interval)
        self.hello_metadata: Dict[str, str] = {}
        # Server: the session the Hello asked to resume (id, the client's
        # received seq, its token), until answered.
        self.resume_request: Optional[Tuple[str, int, bytes]] = None
        # Resumed session: the last seq the handshake's resend covered.
        self.resent_through: Optional[int] = None

    # ---------------------------------------------------------------- client

    def hello(self, received: int, token: bytes = b"") -> _Envelope:
        """The Hello that opens the handshake; `received` is the last seq
        of the session to resume that we have, `token` its resume token
        (its Reliability's)."""
        if self.hello_sent:
            raise LocalProtocolError("only a connecting client sends Hello, once")
        env = _Envelope()
        hello = env.hello
        hello.version = PROTOCOL_VERSION
        hello.identity.CopyFrom(self.identity)
        hello.max_frame_size = self.max_frame_size
        hello.heartbeat.interval_ms = _ms(self.interval)
        hello.heartbeat.misses = self.misses
        hello.max_concurrent_calls = self.max_calls
        if self.secret is not None:
            hello.auth_nonce = self.nonce
        hello.metadata.update(self.metadata)
        if self.resume_id:
            hello.resume_session_id = self.resume_id
            hello.resume_received_seq = received
            hello.resume_token = token
        size = env.ByteSize()
        if size > HANDSHAKE_MAX_FRAME_SIZE:
            raise LocalProtocolError(
                f"hello of {size} bytes exceeds the {HANDSHAKE_MAX_FRAME_SIZE} bytes a peer "
                f"accepts before the handshake: its identity or metadata is too long")
        self.hello_sent = True
        return env

    def on_welcome(self, welcome: wire_pb2.Welcome) -> Step:
        """The server's answer: OPEN, in a resumed session or a new one."""
        if welcome.version != PROTOCOL_VERSION:
            raise VersionMismatch("server", welcome.version, PROTOCOL_VERSION)
        if self.secret is not None and not self.proven:
            raise AuthenticationFailed("the server did not prove it knows the shared secret: "
                                       "it sent no Challenge (it does not authenticate its clients)")
        limit = _peer_frame_limit(welcome.max_frame_size) if welcome.max_frame_size else 0
        peer = _peer_info(welcome.identity)
        self.peer_max_calls = welcome.max_concurrent_calls
        self.peer_publish_window = welcome.publish_window
        self.peer_session_grace = welcome.session_grace_ms / 1000
        fresh = None  # a new Reliability, when our session is gone
        if welcome.resumed:
            if welcome.session_id != self.resume_id or not self.resume_id:
                raise RemoteProtocolError(
                    f"server resumed session {welcome.session_id!r}, but this client asked "
                    f"for {self.resume_id or 'a new session'!r}")
        elif self.resume_id:
            # The server does not know our session (it restarted, or its
            # grace period passed): start over; the driver fails what was pending.
            fresh = Reliability()
        interval = self.interval
        if welcome.heartbeat.interval_ms:
            interval = _heartbeat_interval(welcome.heartbeat.interval_ms)
        return Step(ev.Handshaken(peer, welcome.session_id, _EMPTY, welcome.resumed), peer, limit,
                    fresh, welcome.session_id, interval,
                    resend_after=welcome.resume_received_seq if welcome.resumed else None,
                    resume_token=welcome.resume_token)

    # ---------------------------------------------------------------- server

    def on_challenge(self, challenge: wire_pb2.Challenge) -> Step:
        """Client: the server proves it knows the secret and asks us to;
        answer with a Proof (the Welcome comes next)."""
        if self.secret is None or not self.hello_sent or self.proven:
            raise RemoteProtocolError("challenge frame received by a client that offered no "
                                      "authentication, or a second one")
        if len(challenge.nonce) < auth.MIN_NONCE:
            raise AuthenticationFailed(f"the server's challenge nonce has {len(challenge.nonce)} "
                                       f"bytes; at least {auth.MIN_NONCE} are required")
        expected = auth.server_proof(self.secret, self.nonce, challenge.nonce)
        if not auth.proves(expected, challenge.server_proof):
            raise AuthenticationFailed("the server does not know the shared secret: its "
                                       "challenge's proof is wrong")
        self.proven = True
        reply = _Envelope()
        reply.proof.mac = auth.client_proof(self.secret, challenge.nonce, self.nonce)
        return Step(None, reply=reply)

    def on_hello(self, hello: wire_pb2.Hello, session_id: str) -> Step:
        """The client's Hello: a new session `session_id` is OPEN, or the
        Hello asks to resume one (ResumeRequested; answer it with
        accept_resume or refuse_resume); with a shared secret, first a
        Challenge (the Hello is taken once the client's Proof came)."""
        if hello.version != PROTOCOL_VERSION:
            raise VersionMismatch("client", hello.version, PROTOCOL_VERSION)
        if self.secret is None:
            return self._take_hello(hello, session_id)
        if self.awaiting_proof is not None:
            raise RemoteProtocolError("a second hello frame during the challenge")
        if len(hello.auth_nonce) < auth.MIN_NONCE:
            raise AuthenticationFailed(
                "this server requires authentication with a shared secret: the Hello carries "
                f"no auth_nonce (or one shorter than {auth.MIN_NONCE} bytes)")
        self.awaiting_proof = (hello, session_id)
        reply = _Envelope()
        reply.challenge.nonce = self.nonce
        reply.challenge.server_proof = auth.server_proof(self.secret, hello.auth_nonce, self.nonce)
        return Step(None, reply=reply)

    def on_proof(self, proof: wire_pb2.Proof) -> Step:
        """Server: the client's answer to our Challenge; the Hello is taken
        if it proves the secret."""
        pending = self.awaiting_proof
        if self.secret is None or pending is None or self.proven:
            raise RemoteProtocolError("proof frame received without a challenge")
        hello, session_id = pending
        expected = auth.client_proof(self.secret, self.nonce, hello.auth_nonce)
        if not auth.proves(expected, proof.mac):
            raise AuthenticationFailed("wrong shared secret: the proof does not match")
        self.proven = True
        return self._take_hello(hello, session_id)

    def _take_hello(self, hello: wire_pb2.Hello, session_id: str) -> Step:
        limit = _peer_frame_limit(hello.max_frame_size) if hello.max_frame_size else 0
        self.peer = peer = _peer_info(hello.identity)
        self.peer_max_calls = hello.max_concurrent_calls
        # The smaller interval wins; each side keeps its own misses.
        if hello.heartbeat.interval_ms:
            asked = _heartbeat_interval(hello.heartbeat.interval_ms)
            self.agreed_interval = max(self.min_interval, min(self.interval, asked))
        if len(hello.metadata):
            self.hello_metadata = md.received(hello.metadata, self.max_metadata_size,
                                              self.max_metadata_entries, "hello")
        if hello.resume_session_id:
            self.resume_request = (hello.resume_session_id, hello.resume_received_seq,
                                   hello.resume_token)
            return Step(ev.ResumeRequested(hello.resume_session_id, hello.resume_received_seq,
                                           peer, self.hello_metadata), peer, limit)
        return self._welcome(session_id, None, limit)

    def accept_resume(self, reliability: Reliability) -> Step:
        """Continue the session the Hello named, whose state is `reliability`:
        Welcome, then what the client has not received. ResumeRefused (and
        nothing changes) unless the Hello carried the session's token."""
        request = self.resume_request
        if request is not None and not reliability.may_resume(request[2]):
            raise ResumeRefused(request[0])
        if request is not None and request[1] >= reliability.next_seq:
            # Refused before any Welcome: the session stays as it was.
            raise RemoteProtocolError(
                f"cannot resume session {request[0]}: the Hello says it received seq "
                f"{request[1]}, but the last frame sent was {reliability.next_seq - 1}")
        session_id, peer_received, _ = self._take_resume_request()
        return self._welcome(session_id, reliability, resend_after=peer_received)

    def refuse_resume(self, session_id: str) -> Step:
        """The named session is unknown (or gone): start `session_id` instead."""
        self._take_resume_request()
        return self._welcome(session_id, None)

    def _take_resume_request(self) -> Tuple[str, int, bytes]:
        request = self.resume_request
        if request is None:
            raise LocalProtocolError("no resumption was requested")
        self.resume_request = None
        return request

    def _welcome(self, session_id: str, resumed: Optional[Reliability], limit: int = 0,
                 resend_after: Optional[int] = None) -> Step:
        """Welcome the client to session `session_id`: a new one, or the one
        whose state is `resumed`."""
        reply = _Envelope()
        welcome = reply.welcome
        welcome.version = PROTOCOL_VERSION
        welcome.identity.CopyFrom(self.identity)
        welcome.max_frame_size = self.max_frame_size
        welcome.session_id = session_id
        welcome.heartbeat.interval_ms = _ms(self.agreed_interval)
        welcome.heartbeat.misses = self.misses
        welcome.max_concurrent_calls = self.max_calls
        welcome.publish_window = self.publish_window
        if self.session_grace > 0:
            welcome.session_grace_ms = min(_MAX_UINT32, _ms(self.session_grace))
        token = resumed.resume_token if resumed is not None and resumed.resume_token else self.token
        welcome.resume_token = token
        if resumed is not None:
            welcome.resumed = True
            welcome.resume_received_seq = resumed.received
        assert self.peer is not None
        handshaken = ev.Handshaken(self.peer, session_id, self.hello_metadata, resumed is not None)
        return Step(handshaken, self.peer, limit, resumed, session_id, self.agreed_interval, reply,
                    resend_after, token)

    # ---------------------------------------------------------------- resend

    def resend(self, reliability: Reliability, peer_received: int) -> List[Frame]:
        """Every sequenced frame after `peer_received`, to queue again; an
        ack for frames never sent is a RemoteProtocolError."""
        buffers = reliability.resend_after(peer_received)
        self.resent_through = reliability.next_seq - 1
        return buffers

    def frames_sent_since_resend(self, reliability: Reliability) -> List[Frame]:
        """The sequenced frames the resend of this resumed session did not
        include (see Session.queue_frames_sent_since_resend); once."""
        last = self.resent_through
        self.resent_through = None
        if last is None:
            return []
        return [buffer for seq, buffers, _ in reliability.unacked if seq > last for buffer in buffers]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _heartbeat_interval(ms: int) -> float:
    if ms < MIN_HEARTBEAT_MS:
        raise RemoteProtocolError(f"peer asked for a heartbeat interval of {ms} ms; "
                                  f"the protocol requires at least {MIN_HEARTBEAT_MS} ms")
    return ms / 1000


def _peer_frame_limit(size: int) -> int:
    if size < MIN_FRAME_LIMIT:
        raise RemoteProtocolError(f"peer announced a maximum frame size of {size} bytes; "
                                  f"the protocol requires at least {MIN_FRAME_LIMIT}")
    return size


def _peer_info(identity: wire_pb2.PeerIdentity) -> ev.PeerInfo:
    return ev.PeerInfo(identity.peer_id, identity.name, identity.pid)
