"""Run a session's handshake over a fresh stream, before any Connection exists.

Doing the handshake first lets a server decide which session a stream
belongs to (a new one, or a suspended one it resumes) before any call is
served, and lets a reconnecting client know whether its calls in flight
survived.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Callable, Deque, List, Mapping, Optional, Sequence, Tuple

import gevent

from .core import events as ev
from .core.reliability import Reliability
from .core.session import Role, Session
from .errors import PeerLost, RemoteProtocolError, RpcError, StatusCode
from .transport.base import Buffer, ConnectionClosed, Stream

__all__ = ["perform_handshake", "write_all", "refuse"]

_monotonic = time.monotonic

ResumeResolver = Callable[[ev.ResumeRequested], Optional[Reliability]]
#: Server: vets the client's Hello (who it says it is, its metadata) once
#: the core's own checks passed, before any Welcome goes out; raises an
#: RpcError to turn the client away with that status.
HelloVetter = Callable[[ev.PeerInfo, Mapping[str, str]], None]


def write_all(stream: Stream, buffers: Sequence[Buffer]) -> None:
    """Write everything, waiting cooperatively while the stream is full."""
    pending = [memoryview(b) for b in buffers if len(b)]
    while pending:
        sent = stream.send_nowait(pending)
        while sent and pending:
            head = pending[0]
            if sent >= len(head):
                sent -= len(head)
                pending.pop(0)
            else:
                pending[0] = head[sent:]
                sent = 0
        if pending:
            stream.wait_writable()


def perform_handshake(stream: Stream, session: Session, timeout: Optional[float],
                      resolve_resume: Optional[ResumeResolver] = None,
                      vet_hello: Optional[HelloVetter] = None
                      ) -> Tuple[ev.Handshaken, List[ev.Event]]:
    """Handshake `session` over `stream`; return its Handshaken event and the
    events that arrived right behind it. Raises RpcError (PeerLost if the
    stream ends; DEADLINE_EXCEEDED after `timeout`; the peer's status if it
    sends a Close) after telling the peer why where it can; the stream is
    then closed and the session released (its buffers, and what they held
    of a shared read budget)."""
    try:
        with gevent.Timeout(timeout, RpcError(
                StatusCode.DEADLINE_EXCEEDED,
                f"no handshake within {timeout}s with {stream.address or 'the peer'}")):
            try:
                return _handshake(stream, session, resolve_resume, vet_hello)
            except ConnectionClosed as exc:
                raise PeerLost(f"connection lost during the handshake: {exc}") from None
    except RpcError as exc:
        if exc.code == StatusCode.DEADLINE_EXCEEDED and session.role is Role.SERVER:
            refuse(stream, session, StatusCode.DEADLINE_EXCEEDED, exc.message)
        stream.close()
        session.release()
        raise
    except BaseException:  # killed (GreenletExit) or a bug: never leak the socket
        stream.close()
        session.release()
        raise


def _handshake(stream: Stream, session: Session, resolve_resume: Optional[ResumeResolver],
               vet_hello: Optional[HelloVetter]) -> Tuple[ev.Handshaken, List[ev.Event]]:
    if session.role is Role.CLIENT:
        session.start(_monotonic())
        write_all(stream, session.data_to_send(_monotonic()))
    events: Deque[ev.Event] = deque()
    while True:
        try:
            n = stream.recv_into(session.get_buffer())
            if n == 0:
                raise PeerLost(f"{stream.address or 'the peer'} closed the connection "
                               f"during the handshake")
            events.extend(session.buffer_updated(n, _monotonic()))
        except RemoteProtocolError as exc:
            _send_what_is_queued(stream, session)  # the Close saying why
            raise RpcError(exc.status, str(exc)) from None
        while events:
            event = events.popleft()
            if vet_hello is not None and type(event) in (ev.ResumeRequested, ev.Handshaken):
                # Before a resume changes anything, or a Welcome goes out.
                _vet(stream, session, vet_hello, event.peer, event.metadata)  # type: ignore
            if type(event) is ev.ResumeRequested:
                reliability = resolve_resume(event) if resolve_resume is not None else None
                try:
                    event = (session.accept_resume(reliability) if reliability is not None
                             else session.refuse_resume())
                except RemoteProtocolError as exc:
                    _send_what_is_queued(stream, session)  # the Close saying why
                    raise RpcError(exc.status, str(exc)) from None
            if type(event) is ev.Handshaken:
                write_all(stream, session.data_to_send(_monotonic()))
                return event, list(events)
            if type(event) is ev.CloseReceived:
                raise RpcError.from_close(event.code, event.message, event.violations)
        _send_what_is_queued(stream, session)


def _vet(stream: Stream, session: Session, vet_hello: HelloVetter, peer: ev.PeerInfo,
         metadata: Mapping[str, str]) -> None:
    try:
        vet_hello(peer, metadata)
    except RpcError as exc:
        session.refuse_hello(exc.code, exc.message)
        _send_what_is_queued(stream, session)  # the Close saying why, not the Welcome
        raise


def refuse(stream: Stream, session: Session, code: StatusCode, message: str) -> None:
    """Tell a peer in the handshake why it is turned away (best effort)."""
    session.send_close(code, message)
    _send_what_is_queued(stream, session)


def _send_what_is_queued(stream: Stream, session: Session) -> None:
    data = session.data_to_send()
    if data:
        try:
            with gevent.Timeout(1.0, False):
                write_all(stream, data)
        except ConnectionClosed:
            pass
