"""The gevent driver: moves bytes between a Stream and a Session, runs calls.

    connection.py  Connection: lifecycle (Phase), the reader, event routing
    outbox.py      Outbox: coalesced non-blocking writes, the writer greenlet
    outgoing.py    OutgoingCalls: the calls, streams and notifications we make
    incoming.py    IncomingCalls: the calls we serve, answers, reader takeover
    ticker.py      Ticker: heartbeats and the silence bound, on one hub timer

Everything above the driver talks to a Connection; the parts are its own.
"""
from .connection import Connection, ConnectionOwner, End, Phase, refuse_pattern_event
from .outgoing import MAX_STREAM_WINDOW

__all__ = ["Connection", "ConnectionOwner", "End", "Phase", "MAX_STREAM_WINDOW",
           "refuse_pattern_event"]
