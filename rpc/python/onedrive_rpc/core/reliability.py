"""Sequence numbers, cumulative acknowledgements, duplicate suppression and
the resend buffer of one session. No I/O, no clock of its own.

Delivery guarantee: every sequenced frame we send stays in the resend
buffer until the peer acknowledges it (cumulatively: ack N covers every
seq <= N), so a later connection of the same session can resend exactly
what the peer has not got; every sequenced frame we receive is delivered
once, in order, and a copy (a resend that crossed an ack) is dropped.
The buffer is bounded by its owner, who stops sending while it is full.
"""
from __future__ import annotations

import hmac
from collections import deque
from typing import Deque, Dict, List, Optional, Sequence, Tuple, Union

from .errors import RemoteProtocolError

__all__ = ["Reliability", "ACK_DELAY"]

# How long an acknowledgement may wait for an outgoing frame to ride on
# before it is sent alone: short enough to keep the peer's resend buffer
# small, long enough that busy connections never send bare acks.
ACK_DELAY = 0.025

Buffer = Union[bytes, memoryview]
_Entry = Tuple[int, Sequence[Buffer], int]  # seq, the frame's buffers, its size


class Reliability:
    """What one side of a session sent, received and owes."""

    __slots__ = ("next_seq", "received", "peer_acked", "unacked", "unacked_bytes",
                 "ack_owed_since", "ack_sent", "calls_in", "requests_in", "requests_in_bytes",
                 "requests_out", "resume_token")

    def __init__(self) -> None:
        #: Sequence number of the next frame we send (the first is 1).
        self.next_seq = 1
        #: Highest seq received in order: what our next ack says.
        self.received = 0
        #: Highest seq the peer acknowledged.
        self.peer_acked = 0
        self.unacked: Deque[_Entry] = deque()
        self.unacked_bytes = 0
        #: When we first received a frame not yet covered by an ack we sent;
        #: None when we owe nothing.
        self.ack_owed_since: Optional[float] = None
        #: The ack value last put on the wire.
        self.ack_sent = 0
        #: Calls the peer made that we have not answered yet: each gets
        #: exactly one answer, whichever connection carries it.
        self.calls_in: set = set()
        #: Of those, the Requests that count against our max_concurrent_calls
        #: and call byte limits, with their payload sizes: neither answered
        #: nor cancelled (HTTP/2 counts streams the same way).
        self.requests_in: Dict[int, int] = {}
        self.requests_in_bytes = 0
        #: Our Requests that count against the peer's limit: neither
        #: answered nor cancelled by us.
        self.requests_out: set = set()
        #: The secret that resumes this session (the server's last Welcome
        #: gave it): the server checks it, the client presents it.
        self.resume_token = b""

    def may_resume(self, token: bytes) -> bool:
        """Does `token` resume this session? (compared in constant time)"""
        return bool(self.resume_token) and hmac.compare_digest(self.resume_token, token)

    # ------------------------------------------------------------- sending

    def stamp(self) -> int:
        """The seq for the next sequenced frame."""
        seq = self.next_seq
        self.next_seq = seq + 1
        return seq

    def keep(self, seq: int, buffers: Sequence[Buffer], size: int) -> None:
        """Hold a sent frame until the peer acknowledges it."""
        self.unacked.append((seq, buffers, size))
        self.unacked_bytes += size

    def replace(self, seq: int, frame: Buffer) -> bool:
        """Hold `frame` instead of sequenced frame `seq`, which keeps its
        place in the sequence; False if `seq` is no longer held (acknowledged)
        or was never sent."""
        unacked = self.unacked
        if not unacked or seq < unacked[0][0]:
            return False
        index = seq - unacked[0][0]  # the buffer holds consecutive seqs
        if index >= len(unacked):
            return False
        self.unacked_bytes += len(frame) - unacked[index][2]
        unacked[index] = (seq, [frame], len(frame))
        return True

    def forget(self) -> None:
        """The session ended for good: nothing will be resent."""
        self.unacked.clear()
        self.unacked_bytes = 0

    def acking(self) -> int:
        """The ack to put on an outgoing frame; it settles what we owe."""
        self.ack_owed_since = None
        self.ack_sent = self.received
        return self.received

    # ----------------------------------------------------------- receiving

    def on_ack(self, ack: int) -> None:
        """The peer has every frame up to `ack`: forget them."""
        if ack <= self.peer_acked:
            return  # old news (acks on resent frames are stale)
        if ack >= self.next_seq:
            raise RemoteProtocolError(
                f"peer acknowledged seq {ack}, but the last frame sent was {self.next_seq - 1}")
        self.peer_acked = ack
        unacked = self.unacked
        while unacked and unacked[0][0] <= ack:
            self.unacked_bytes -= unacked.popleft()[2]

    def on_sequenced(self, seq: int, now: float) -> bool:
        """A sequenced frame arrived: True to deliver it, False for a copy."""
        if seq <= self.received:
            return False
        if seq != self.received + 1:
            raise RemoteProtocolError(
                f"frame seq {seq} skips ahead: expected {self.received + 1}")
        self.received = seq
        if self.ack_owed_since is None:
            self.ack_owed_since = now
        return True

    def ack_wanted_now(self) -> None:
        """The peer asked for an immediate ack (ack_now)."""
        self.ack_owed_since = float("-inf")

    def ack_due(self, now: float) -> bool:
        return self.ack_owed_since is not None and now - self.ack_owed_since >= ACK_DELAY

    def ack_deadline(self) -> Optional[float]:
        if self.ack_owed_since is None:
            return None
        return self.ack_owed_since + ACK_DELAY

    # ------------------------------------------------------------ resuming

    def resend_after(self, peer_received: int) -> List[Buffer]:
        """The peer has everything up to `peer_received`: the buffers of the
        frames after it, in order, to send again on a new connection."""
        if peer_received:
            self.on_ack(peer_received)
        return [buffer for _, buffers, _ in self.unacked for buffer in buffers]
