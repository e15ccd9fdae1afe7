"""A reference Echo service: echo, cooperative sleep, failure on request."""
from __future__ import annotations

import collections
import time

import gevent

from ..calls import Context
from ..service import Service
from . import echo_pb2

__all__ = ["EchoService", "ECHO"]

ECHO = echo_pb2.DESCRIPTOR.services_by_name["Echo"]


class EchoService(Service):
    """Implements every Echo method but Missing, which stays UNIMPLEMENTED."""

    descriptor = ECHO

    def __init__(self) -> None:
        #: Handler executions by method name.
        self.calls: "collections.Counter[str]" = collections.Counter()

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
