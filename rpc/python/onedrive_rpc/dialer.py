"""Opening a session with a server: dial, handshake, and say what came of it.

One Dialer serves both `rpc.connect()` and every reconnect of the Peer it
made, so the URL, timeout and identity of a peer live in one place and a
new session and a resumed one are opened the same way.
"""
from __future__ import annotations

from typing import Any, Callable, List, NamedTuple, Optional

from .core import events as ev
from .core.session import Session
from .errors import RpcError, StatusCode
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
                 open_session: Callable[..., Session], server_uid: Optional[int] = None,
                 tls: Optional[TlsSetting] = None) -> None:
        self.url = url
        self.timeout = timeout
        self._open_session = open_session
        #: The uid the server's process must run as (unix sockets), or None.
        self.server_uid = server_uid
        #: TLS settings of a tls:// URL: every reconnect uses them too.
        self.tls = tls

    def dial(self, resume: Optional[Session] = None) -> Dialed:
        """Connect and handshake; ask to resume `resume`'s session if given.
        Raises OSError when nothing answers, RpcError when the handshake
        fails (the stream is then closed)."""
        stream = connect_stream(self.url, self.timeout, tls=self.tls)
        if self.server_uid is not None:
            self._check_server_uid(stream)
        fields: Any = {}
        if resume is not None:
            fields = dict(reliability=resume.reliability, resume_session_id=resume.session_id)
        session = self._open_session(**fields)
        handshaken, events = perform_handshake(stream, session, self.timeout)
        return Dialed(stream, session, handshaken, events)

    def _check_server_uid(self, stream: Stream) -> None:
        """Refuse a server that does not run as `server_uid` (kernel-checked,
        SO_PEERCRED): another user's process may hold the socket path."""
        credentials = stream.credentials
        if credentials is not None and credentials.uid == self.server_uid:
            return
        stream.close()
        if credentials is None:
            raise RpcError(StatusCode.UNAUTHENTICATED,
                           f"cannot check that the server at {self.url} runs as uid "
                           f"{self.server_uid}: server_uid needs a unix:// socket")
        raise RpcError(StatusCode.UNAUTHENTICATED,
                       f"refusing the server at {self.url}: it runs as uid {credentials.uid}, "
                       f"not {self.server_uid} (server_uid); another user's process may hold "
                       f"the socket path")
