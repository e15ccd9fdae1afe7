"""A reference Echo service: echo, cooperative sleep, failure on request."""
from __future__ import annotations

import collections
import json
import time
from typing import Iterator

import gevent

from ..calls import Context
from ..service import Service
from . import echo_pb2

__all__ = ["EchoService", "ECHO", "CheckerService", "CHECKER"]

ECHO = echo_pb2.DESCRIPTOR.services_by_name["Echo"]
CHECKER = echo_pb2.DESCRIPTOR.services_by_name["Checker"]


class CheckerService(Service):
    """onedrive_rpc.testing.Checker: its request carries rules, so a server
    serving it checks them (the conformance target serves it next to Echo;
    a server of Echo alone keeps its fast path)."""

    descriptor = CHECKER

    def check(self, request: echo_pb2.Checked, context: Context) -> echo_pb2.Msg:
        return echo_pb2.Msg(text=request.name)


class EchoService(Service):
    """Implements every Echo method but Missing, which stays UNIMPLEMENTED."""

    descriptor = ECHO

    def __init__(self) -> None:
        #: Handler executions by method name.
        self.calls: "collections.Counter[str]" = collections.Counter()
        #: Notes received, by text.
        self.notes: "collections.Counter[str]" = collections.Counter()
        #: Stream items sent, and streams stopped before their end.
        self.items_sent = 0
        self.streams_stopped = 0

    def echo(self, request: echo_pb2.Msg, context: Context) -> echo_pb2.Msg:
        self.calls["echo"] += 1
        return request

    def sleep(self, request: echo_pb2.Msg, context: Context) -> echo_pb2.Msg:
        self.calls["sleep"] += 1
        gevent.sleep(request.delay)
        return request

    def hog(self, request: echo_pb2.Msg, context: Context) -> echo_pb2.Msg:
        self.calls["hog"] += 1
        time.sleep(request.delay)  # blocks the event loop on purpose
        return request

    def fail(self, request: echo_pb2.Msg, context: Context) -> echo_pb2.Msg:
        self.calls["fail"] += 1
        raise RuntimeError(request.text or "failed on request")

    def count(self, request: echo_pb2.Msg, context: Context) -> Iterator[echo_pb2.Msg]:
        self.calls["count"] += 1
        finished = False
        try:
            for i in range(request.count):
                if request.delay:
                    gevent.sleep(request.delay)
                yield echo_pb2.Msg(text=str(i), data=request.data)
                self.items_sent += 1
            finished = True
        finally:
            if not finished:
                self.streams_stopped += 1
        if request.text == "fail":
            raise RuntimeError(f"failed after {request.count} items")

    def note(self, request: echo_pb2.Msg, context: Context) -> None:
        self.calls["note"] += 1
        self.notes[request.text] += 1

    def stats(self, request: echo_pb2.Msg, context: Context) -> echo_pb2.Msg:
        return echo_pb2.Msg(text=json.dumps({
            "calls": dict(self.calls), "notes": dict(self.notes),
            "items_sent": self.items_sent, "streams_stopped": self.streams_stopped}))
