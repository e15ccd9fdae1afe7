"""Broker backends: where a server's work queues live and how its
publish/subscribe and broadcasts reach other servers (see base.py for the
split between the server's broker front and its backend).

    rpc.Server(url)                         # InProcess(): one server, the default
    rpc.Server(url, broker=InProcess())     # the same, said out loud

A backend built on an asyncio library runs it in a thread of its own,
through brokers.bridge.Bridge (imported from there: asyncio is not loaded
for the default).
"""
from __future__ import annotations

from .base import Backend, ConsumerKey, Inbound
from .inprocess import InProcess

__all__ = ["Backend", "Inbound", "InProcess", "ConsumerKey"]
