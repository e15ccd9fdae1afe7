"""Connections over in-memory streams, for the driver's unit tests.

Both ends of a pair are real Connections (or one end is a `RawPeer`: a
bare Session on the stream that reads only when the test says so), their
sessions handshaken by `perform_handshake` over an inproc stream pair.
The owners are recording fakes of ConnectionOwner; handlers are plain
functions of (call, event) picked by method name.

Waits are bounded: gevent Events and AsyncResults with timeouts.
"""
from __future__ import annotations

import itertools
import os
import time
import uuid
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

import gevent
import pytest
from gevent.event import Event

from onedrive_rpc.calls import CallAborted, Context
from onedrive_rpc.config import Limits
from onedrive_rpc.core import events as ev
from onedrive_rpc.core.reliability import ACK_DELAY
from onedrive_rpc.core.session import Role, Session
from onedrive_rpc.driver import Connection
from onedrive_rpc.errors import PeerLost, RpcError, StatusCode
from onedrive_rpc.handshake import perform_handshake, write_all
from onedrive_rpc.transport import ConnectionClosed, Stream, connect_stream, listen

#: Seconds to wait for anything that should happen at once.
SOON = 5.0
#: Long enough that no heartbeat bound is reached within a test.
HEARTBEAT_INTERVAL = 5.0

_names = itertools.count()


def echo(call: Context, event: Any) -> None:
    call.reply(bytes(event.payload))


class Owner:
    """A ConnectionOwner that records what the connection told it."""

    def __init__(self) -> None:
        #: method -> handler(call, event); others echo.
        self.handlers: Dict[str, Callable[[Context, Any], None]] = {}
        self.served: List[Tuple[str, Context]] = []
        self.pattern_events: List[Any] = []
        self.suspensions: List[RpcError] = []
        self.closings = 0
        self.pattern_event = Event()
        self.suspended = Event()
        self.closed = Event()
        #: Set to a function to handle pattern events (e.g. refuse_pattern_event).
        self.on_pattern: Optional[Callable[[Connection, Any], None]] = None

    def serve(self, call: Context, event: Any) -> None:
        self.served.append((event.method, call))
        self.handlers.get(event.method, echo)(call, event)

    def on_pattern_event(self, connection: Connection, event: Any) -> None:
        self.pattern_events.append(event)
        self.pattern_event.set()
        if self.on_pattern is not None:
            self.on_pattern(connection, event)

    def on_suspended(self, connection: Connection, reason: RpcError) -> None:
        self.suspensions.append(reason)
        self.suspended.set()

    def on_closed(self, connection: Connection) -> None:
        self.closings += 1
        self.closed.set()

    def methods(self) -> List[str]:
        return [method for method, _ in self.served]


class Blocker:
    """A handler that blocks until `release` is set, then answers `reply`;
    records the CallAborted that stopped it, if one did."""

    def __init__(self, reply: bytes = b"done") -> None:
        self.reply = reply
        self.entered = Event()
        self.release = Event()
        self.finished = Event()
        self.calls: List[Context] = []
        self.aborted: Optional[CallAborted] = None

    def __call__(self, call: Context, event: Any) -> None:
        self.calls.append(call)
        self.entered.set()
        try:
            if not self.release.wait(SOON):
                raise RpcError(StatusCode.INTERNAL, "the test never released this handler")
        except CallAborted as exc:
            self.aborted = exc
            raise
        finally:
            self.finished.set()
        call.reply(self.reply)


class WrappedStream(Stream):
    """A Stream that records what it sends; the test can make it take
    little at a time, not be writable, or break its writes."""

    def __init__(self, inner: Stream) -> None:
        self.inner = inner
        self.address = inner.address
        self.credentials = inner.credentials
        #: The bytes each send_nowait call took.
        self.sends: List[bytes] = []
        #: At most this many bytes per send_nowait (None: what the pipe takes).
        self.max_send: Optional[int] = None
        #: Cleared: wait_writable blocks (a full kernel buffer).
        self.writable = Event()
        self.writable.set()
        #: Set when someone waits in wait_writable.
        self.waiting = Event()
        #: Writes raise ConnectionClosed (the reading side still works).
        self.broken = False

    def recv_into(self, buffer: memoryview) -> int:
        return self.inner.recv_into(buffer)

    def send_nowait(self, buffers: Sequence[Any]) -> int:
        if self.broken:
            raise ConnectionClosed("connection reset (test)")
        data = b"".join(bytes(b) for b in buffers)
        if self.max_send is not None:
            data = data[:self.max_send]
        sent = self.inner.send_nowait([data])
        if sent:
            self.sends.append(data[:sent])
        return sent

    def wait_writable(self) -> None:
        self.waiting.set()
        self.writable.wait()
        self.inner.wait_writable()

    def close(self) -> None:
        self.inner.close()


def stream_pair() -> Tuple[Stream, Stream]:
    """A connected (client, server) pair of inproc streams."""
    listener = listen(f"inproc://driver-tests-{os.getpid()}-{next(_names)}")
    try:
        client = connect_stream(listener.url)
        server = listener.accept()
    finally:
        listener.close()
    return client, server


def client_session(heartbeat_interval: float = HEARTBEAT_INTERVAL, **resume: Any) -> Session:
    return Session(Role.CLIENT, peer_id="client-id", name="client", pid=1,
                   heartbeat_interval=heartbeat_interval, **resume)


def server_session(max_concurrent_calls: int = 0) -> Session:
    return Session(Role.SERVER, peer_id="server-id", name="server", pid=2,
                   session_id=uuid.uuid4().hex, heartbeat_interval=HEARTBEAT_INTERVAL,
                   max_concurrent_calls=max_concurrent_calls)


def handshake(client_stream: Stream, server_stream: Stream, client: Session, server: Session,
              resolve: Any = None) -> Tuple[List[ev.Event], List[ev.Event]]:
    """Both handshakes at once; the events that followed each."""
    server_side = gevent.spawn(perform_handshake, server_stream, server, SOON, resolve)
    _, client_events = perform_handshake(client_stream, client, SOON)
    _, server_events = server_side.get(timeout=SOON)
    return client_events, server_events


class Pair:
    """Two Connections of one session, and their owners."""

    def __init__(self, client: Connection, server: Connection,
                 client_owner: Owner, server_owner: Owner) -> None:
        self.client = client
        self.server = server
        self.client_owner = client_owner
        self.server_owner = server_owner

    def resume(self, between: Callable[[], None] = lambda: None) -> None:
        """Both sides suspended: carry the session on over new streams
        (`between` runs after the handshake, before the Connections resume)."""
        client, server = self.client, self.server
        assert client.suspended and server.suspended

        def resolve(request: ev.ResumeRequested) -> Any:
            if request.session_id == server.session.session_id and server.suspended:
                return server.session.reliability
            return None

        client_stream, server_stream = stream_pair()
        new_client = client_session(reliability=client.session.reliability,
                                    resume_session_id=client.session.session_id)
        new_server = server_session()
        client_events, server_events = handshake(client_stream, server_stream, new_client,
                                                 new_server, resolve)
        between()
        server.resume(server_stream, new_server, server_events)
        client.resume(client_stream, new_client, client_events)


class RawPeer:
    """The server's end as a bare Session on its stream: it reads only when
    told, and acknowledges only when told."""

    def __init__(self, stream: Stream, session: Session, events: List[ev.Event]) -> None:
        self.stream = stream
        self.session = session
        self.events: Deque[ev.Event] = deque(events)

    def read_until(self, predicate: Callable[[Deque[ev.Event]], bool],
                   timeout: float = SOON) -> Deque[ev.Event]:
        """Read until predicate(all events read so far) holds."""
        with gevent.Timeout(timeout, AssertionError(f"not read within {timeout}s")):
            while not predicate(self.events):
                n = self.stream.recv_into(self.session.get_buffer())
                if n == 0:
                    raise AssertionError("the connection closed")
                self.events.extend(self.session.buffer_updated(n, time.monotonic()))
        return self.events

    def of_type(self, kind: type) -> List[Any]:
        return [event for event in self.events if type(event) is kind]

    def ack(self) -> None:
        """Acknowledge everything read so far (a heartbeat carries it)."""
        self.session.tick(time.monotonic() + ACK_DELAY)
        self.flush()

    def flush(self) -> None:
        write_all(self.stream, self.session.data_to_send(time.monotonic()))


@pytest.fixture
def blocker():
    """Blockers made through this are released after the test."""
    made: List[Blocker] = []

    def make(reply: bytes = b"done") -> Blocker:
        made.append(Blocker(reply))
        return made[-1]

    yield make
    for each in made:
        each.release.set()


@pytest.fixture
def connections():
    """Connections made through this fixture are aborted after the test."""
    made: List[Connection] = []
    yield made
    for conn in made:
        conn.abort(PeerLost("the test is over"))


@pytest.fixture
def connect(connections):
    """connect(...) -> a started Pair over a fresh inproc stream pair (with
    `wrap`, each side's stream is a WrappedStream)."""

    def connect(client_owner: Optional[Owner] = None, server_owner: Optional[Owner] = None, *,
                client_limits: Optional[Limits] = None, server_limits: Optional[Limits] = None,
                client_grace: float = 0.0, server_grace: float = 0.0,
                wrap: bool = False) -> Pair:
        client_owner = client_owner or Owner()
        server_owner = server_owner or Owner()
        client_stream, server_stream = stream_pair()
        if wrap:
            client_stream, server_stream = WrappedStream(client_stream), WrappedStream(server_stream)
        # Each side announces the calls it serves at once, as server.py and peer.py do.
        announced = (server_limits or Limits()).max_concurrent_calls
        csession, ssession = client_session(), server_session(announced)
        client_events, server_events = handshake(client_stream, server_stream, csession, ssession)
        server = Connection(server_stream, ssession, server_owner, limits=server_limits,
                            session_grace=server_grace)
        client = Connection(client_stream, csession, client_owner, limits=client_limits,
                            session_grace=client_grace)
        connections.extend((client, server))
        server.start(server_events)
        client.start(client_events)
        return Pair(client, server, client_owner, server_owner)

    return connect


@pytest.fixture
def connect_raw(connections):
    """connect_raw(...) -> (a started client Connection, the RawPeer it talks to)."""

    def connect_raw(owner: Optional[Owner] = None, *, limits: Optional[Limits] = None,
                    grace: float = 0.0, heartbeat_interval: float = HEARTBEAT_INTERVAL,
                    wrap: bool = False) -> Tuple[Connection, RawPeer]:
        client_stream, server_stream = stream_pair()
        if wrap:
            client_stream = WrappedStream(client_stream)
        csession, ssession = client_session(heartbeat_interval), server_session()
        client_events, server_events = handshake(client_stream, server_stream, csession, ssession)
        client = Connection(client_stream, csession, owner or Owner(), limits=limits,
                            session_grace=grace)
        connections.append(client)
        client.start(client_events)
        return client, RawPeer(server_stream, ssession, server_events)

    return connect_raw
