"""Opening a session with a server: dial, handshake, and say what came of it.

One Dialer serves both `rpc.connect()` and every reconnect of the Peer it
made, so the URL, timeout and identity of a peer live in one place and a
new session and a resumed one are opened the same way.
"""
from __future__ import annotations

from typing import Any, Callable, List, NamedTuple, Optional

from .core import events as ev
from .core.session import Session
from .handshake import perform_handshake
from .tls import TlsSetting
from .transport import Stream, connect_stream

__all__ = ["Dialer", "Dialed"]


class Dialed(NamedTuple):
    """A stream whose handshake is done: `handshaken.resumed` says whether
    the server resumed the session asked for."""

    stream: Stream
    session: Session
    handshaken: ev.Handshaken
    events: List[ev.Event]


class Dialer:
    """Connects to `url` and handshakes a session from `open_session`."""

    def __init__(self, url: str, timeout: Optional[float],
                 open_session: Callable[..., Session], tls: Optional[TlsSetting] = None) -> None:
        self.url = url
        self.timeout = timeout
        self._open_session = open_session
        #: TLS settings of a tls:// URL: every reconnect uses them too.
        self.tls = tls

    def dial(self, resume: Optional[Session] = None) -> Dialed:
        """Connect and handshake; ask to resume `resume`'s session if given.
        Raises OSError when nothing answers, RpcError when the handshake
        fails (the stream is then closed)."""
        stream = connect_stream(self.url, self.timeout, tls=self.tls)
        fields: Any = {}
        if resume is not None:
            fields = dict(reliability=resume.reliability, resume_session_id=resume.session_id)
        session = self._open_session(**fields)
        handshaken, events = perform_handshake(stream, session, self.timeout)
        return Dialed(stream, session, handshaken, events)
