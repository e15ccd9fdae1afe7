"""`onedrive-rpc admin` and `onedrive-rpc top`: a server's admin service
(admin.py) as tables for people, JSON for scripts, and a live view.

    onedrive-rpc admin unix:///run/onedrive.sock peers
    onedrive-rpc admin unix:///run/onedrive.sock queues --json
    onedrive-rpc admin unix:///run/onedrive.sock replay onedrive.sync.Sync/Upload
    onedrive-rpc top unix:///run/onedrive.sock
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from typing import Any, Callable, Dict, Optional, Sequence, TextIO, Tuple

from google.protobuf.message import Message

from .admin_pb2 import (AdminListRequest, DeadLettersRequest, DisconnectRequest, PeerStatus,
                        QueueStatus, ReplayRequest)

__all__ = ["add_commands", "table", "cmd_admin", "cmd_top"]

LISTS = ("peers", "sessions", "subscriptions", "queues", "dead-letters")
ACTIONS = ("replay", "disconnect")

# ------------------------------------------------------------- formatting


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    cells = [list(headers)] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(widths[i]) if i < len(headers) - 1 else cell
                               for i, cell in enumerate(row)).rstrip() for row in cells)


def size(count: float) -> str:
    """Bytes for people: 512B, 1.5KiB, 12MiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f}{unit}" if unit == "B" or count >= 10 else f"{count:.1f}{unit}"
        count /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    """0.3s, 12s, 4m05s, 3h02m, 2d04h."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def short_id(session_id: str) -> str:
    """The first 12 characters: enough to tell sessions apart, and to name
    one to `disconnect`."""
    return session_id[:12]


def _heartbeat(peer: PeerStatus) -> str:
    return f"{duration(peer.last_heard)} ago/{peer.heartbeat_interval:g}s"


def peers_table(peers: Sequence[PeerStatus], now: float) -> str:
    return table(
        ("NAME", "PID", "IDENTITY", "SESSION", "TRANSPORT", "CONNECTED", "CALLS", "QUEUED",
         "HEARD"),
        [(p.name or "-", p.pid, p.identity, short_id(p.session_id), p.transport,
          duration(now - p.connected_at), p.calls_in_flight, size(p.bytes_queued),
          _heartbeat(p)) for p in peers])


def sessions_table(peers: Sequence[PeerStatus], now: float) -> str:
    return table(
        ("SESSION", "NAME", "STATE", "STARTED", "RESUMES", "UNACKED", "GRACE LEFT"),
        [(short_id(p.session_id), p.name or "-", p.state, duration(now - p.started_at), p.resumes,
          size(p.bytes_unacked), duration(p.grace_left) if p.HasField("grace_left") else "-")
         for p in peers])


def subscriptions_table(reply: Any) -> str:
    return table(
        ("METHOD", "PATTERN", "PEER", "SESSION", "POLICY", "LIMIT", "QUEUED", "DROPPED"),
        [(s.method, s.pattern, s.peer or "-", short_id(s.session_id) or "-", s.policy,
          s.queue_limit, s.queued, s.dropped) for s in reply.subscriptions]
    ) + _more(len(reply.subscriptions), reply.total)


def queues_table(queues: Sequence[QueueStatus]) -> str:
    return table(
        ("QUEUE", "READY", "IN FLIGHT", "CONSUMERS", "FAILED ATTEMPTS", "REDELIVERED", "DEAD"),
        [(q.method, q.ready, q.in_flight, q.consumers, q.failed_attempts, q.redelivered,
          q.dead_letters) for q in queues])


def dead_letters_table(reply: Any, now: float) -> str:
    text = table(
        ("QUEUE", "TASK", "ATTEMPTS", "DIED", "SIZE", "LAST ERROR"),
        [(d.queue, d.task_id, d.attempts, duration(max(0.0, now - d.died_at)) + " ago",
          size(d.payload_size), d.last_error) for d in reply.dead_letters])
    return text + _more(len(reply.dead_letters), reply.total)


def _more(listed: int, total: int) -> str:
    return f"\n({listed} of {total}: --limit shows more)" if total > listed else ""


def as_json(message: Message) -> str:
    """A reply as JSON for scripts: numbers as numbers (protobuf's own JSON
    writes 64-bit ones as strings), bytes in base64, an unset optional
    field as null."""
    return json.dumps(_plain(message), indent=2)


def _plain(message: Message) -> Dict[str, Any]:
    plain: Dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.has_presence and field.message_type is None and not message.HasField(field.name):
            value = None
        elif field.message_type is not None:
            value = [_plain(item) for item in value]  # admin replies: lists of records
        elif isinstance(value, bytes):
            value = base64.b64encode(value).decode("ascii")
        elif not isinstance(value, (str, int, float)):
            value = list(value)
        plain[field.name] = value
    return plain


# ------------------------------------------------------------- admin


def _admin(args: argparse.Namespace) -> Any:
    """A client of the server's admin service, connected (close it)."""
    from .admin import ADMIN
    from .client import Client
    from .config import Reconnect
    from .peer import connect

    peer = connect(args.url, timeout=args.timeout, reconnect=Reconnect(enabled=False),
                   name="onedrive-rpc admin", auth=_secret(args.secret_file),
                   tls=_tls(args.cafile, args.cert))
    return peer, Client(peer, ADMIN)


def _secret(path: Optional[str]) -> Any:
    """The shared secret in the file `path` (its first line; never on the
    command line, where `ps` shows it to every user)."""
    if not path:
        return None
    from .auth import SharedSecret
    try:
        with open(path, "rb") as file:
            secret = file.readline().rstrip(b"\r\n")
    except OSError as exc:
        raise SystemExit(f"cannot read the secret file: {exc}") from None
    return SharedSecret(secret)


def _tls(cafile: Optional[str], cert: Optional[str]) -> Any:
    """tls:// options: the CA of the server's certificate, and this side's
    certificate and key (one PEM file) for mutual TLS."""
    if not cafile and not cert:
        return None
    from .tls import TLS
    return TLS(cafile=cafile or None, certfile=cert or None)


def cmd_admin(args: argparse.Namespace) -> int:
    """Print one list, or do one action, of the server's admin service."""
    what = args.what
    if what in ACTIONS and not args.target:
        raise SystemExit(f"admin {what} needs a {'QUEUE' if what == 'replay' else 'PEER'}")
    peer, admin = _admin(args)
    with peer:
        now = time.time()
        if what in ("peers", "sessions"):
            ask = admin.peers if what == "peers" else admin.sessions
            reply = ask(AdminListRequest(), timeout=args.timeout)
            text = (peers_table if what == "peers" else sessions_table)(reply.peers, now)
        elif what == "subscriptions":
            reply = admin.subscriptions(AdminListRequest(limit=args.limit), timeout=args.timeout)
            text = subscriptions_table(reply)
        elif what == "queues":
            reply = admin.queues(AdminListRequest(), timeout=args.timeout)
            text = queues_table(reply.queues)
        elif what == "dead-letters":
            reply = admin.dead_letters(DeadLettersRequest(queue=args.target or "", limit=args.limit,
                                                          payloads=args.payloads),
                                       timeout=args.timeout)
            text = dead_letters_table(reply, now)
        elif what == "replay":
            reply = admin.replay(ReplayRequest(queue=args.target, task_ids=args.task),
                                 timeout=args.timeout)
            text = f"replayed {reply.replayed} dead letter{'s' if reply.replayed != 1 else ''}"
        else:
            reply = admin.disconnect(DisconnectRequest(peer=args.target, reason=args.reason),
                                     timeout=args.timeout)
            text = f"disconnected session {', '.join(reply.session_ids)}"
        print(as_json(reply) if args.json else text)
    return 0


# ------------------------------------------------------------- top


class Rates:
    """Per-second rates of totals between two samples, by key."""

    def __init__(self) -> None:
        self._last: Dict[Tuple[str, str], Tuple[float, float]] = {}

    def rate(self, key: str, field: str, total: float, now: float) -> Optional[float]:
        """The rate since the last sample of (key, field); None the first time."""
        last = self._last.get((key, field))
        self._last[(key, field)] = (now, total)
        if last is None or now <= last[0]:
            return None
        return max(0.0, total - last[1]) / (now - last[0])


def _per_second(rate: Optional[float], unit: Callable[[float], str] = lambda r: f"{r:.1f}") -> str:
    return "-" if rate is None else unit(rate)


def top_screen(url: str, peers: Sequence[PeerStatus], queues: Sequence[QueueStatus],
               subscriptions: Any, rates: Rates, now: float) -> str:
    """One refresh of `onedrive-rpc top`: the busiest peers first."""
    connected = [p for p in peers if p.state == "connected"]
    rows = []
    for p in peers:
        calls = rates.rate(p.session_id, "calls", p.calls_received, now)
        rx = rates.rate(p.session_id, "in", p.bytes_in, now)
        tx = rates.rate(p.session_id, "out", p.bytes_out, now)
        rows.append(((calls or 0.0, rx or 0.0), (
            p.name or "-", p.pid, short_id(p.session_id), p.state, _per_second(calls),
            _per_second(rx, lambda r: size(r) + "/s"), _per_second(tx, lambda r: size(r) + "/s"),
            p.calls_in_flight, size(p.bytes_queued), _heartbeat(p))))
    rows.sort(key=lambda row: row[0], reverse=True)
    queue_rows = []
    for q in queues:
        produced = rates.rate(q.method, "produced", q.produced, now)
        completed = rates.rate(q.method, "completed", q.completed, now)
        queue_rows.append((q.method, q.ready, q.in_flight, q.consumers, _per_second(produced),
                           _per_second(completed), q.redelivered, q.dead_letters))
    dropped = sum(s.dropped for s in subscriptions.subscriptions)
    queued = sum(s.queued for s in subscriptions.subscriptions)
    parts = [
        f"onedrive-rpc top - {url} - {time.strftime('%H:%M:%S', time.localtime(now))}",
        f"peers: {len(connected)} connected, {len(peers) - len(connected)} suspended; "
        f"subscriptions: {subscriptions.total} ({queued} queued, {dropped} dropped); "
        f"queues: {len(queues)}",
        "",
        table(("NAME", "PID", "SESSION", "STATE", "CALLS/S", "IN/S", "OUT/S", "IN FLIGHT", "QUEUED",
               "HEARD"), [row for _, row in rows]),
    ]
    if queue_rows:
        parts += ["", table(("QUEUE", "READY", "IN FLIGHT", "CONSUMERS", "PRODUCED/S",
                             "COMPLETED/S", "REDELIVERED", "DEAD"), queue_rows)]
    return "\n".join(parts)


def cmd_top(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Refresh a view of the server's peers, rates and queues every
    `--interval` seconds, `--count` times (0: until interrupted)."""
    import gevent

    peer, admin = _admin(args)
    rates = Rates()
    clear = "\x1b[H\x1b[2J" if out.isatty() else ""
    with peer:
        shown = 0
        while True:
            request = AdminListRequest()
            sessions = admin.sessions(request, timeout=args.timeout)
            queues = admin.queues(request, timeout=args.timeout)
            subscriptions = admin.subscriptions(request, timeout=args.timeout)
            screen = top_screen(args.url, sessions.peers, queues.queues, subscriptions, rates,
                                time.time())
            out.write(clear + screen + "\n" + ("" if clear else "\n"))
            out.flush()
            shown += 1
            if args.count and shown >= args.count:
                return 0
            gevent.sleep(args.interval)


# ------------------------------------------------------------- parsers


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--secret-file", help="a file whose first line is the server's shared "
                                              "secret (for a server built with auth=SharedSecret)")
    parser.add_argument("--cafile", help="tls://: the CA that signed the server's certificate "
                                         "(default: the system's)")
    parser.add_argument("--cert", help="tls://: this side's certificate and key, one PEM file "
                                       "(mutual TLS)")


def add_commands(sub: Any, described: Callable[..., argparse.ArgumentParser]) -> None:
    """The admin and top subcommands of `onedrive-rpc`."""
    p = described(
        sub, "admin", "what a server holds: peers, sessions, subscriptions, queues, dead letters",
        "Ask a server's admin service (rpc.Server(url, admin=True)):\n\n"
        "  peers                      connected peers: name, pid, identity, session, ...\n"
        "  sessions                   every session, suspended ones too (grace left)\n"
        "  subscriptions              per subscription: pattern, policy, queued, dropped\n"
        "  queues                     per work queue: ready, in flight, consumers, ...\n"
        "  dead-letters [QUEUE]       tasks that failed too often\n"
        "  replay QUEUE [--task ID]   give dead letters to the consumers again\n"
        "  disconnect PEER            close a peer's connection and end its session\n"
        "                             (PEER: a session id, or its first characters, or a name)\n\n"
        "Tables for people, --json for scripts. Without an authorize hook the server\n"
        "answers only peers it checked (unix socket, shared secret, TLS certificate).")
    p.add_argument("url")
    p.add_argument("what", choices=LISTS + ACTIONS)
    p.add_argument("target", nargs="?", default="", help="the QUEUE or PEER")
    p.add_argument("--json", action="store_true", help="print the reply as JSON")
    p.add_argument("--task", type=int, action="append", default=[],
                   help="replay: only this dead letter (repeatable)")
    p.add_argument("--limit", type=int, default=0,
                   help="dead-letters, subscriptions: at most this many (100, 1000)")
    p.add_argument("--payloads", action="store_true",
                   help="dead-letters: include the payloads (base64 in --json)")
    p.add_argument("--reason", default="", help="disconnect: what the peer is told")
    _connection_options(p)
    p.set_defaults(func=cmd_admin)

    p = described(
        sub, "top", "a live view of a server's peers, rates and queues (admin service)",
        "Refresh a view of the server's sessions (busiest first: calls/s, bytes\n"
        "in and out per second), work queues and subscriptions, like nats top.\n"
        "Needs rpc.Server(url, admin=True). Ctrl-C stops it.")
    p.add_argument("url")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    p.add_argument("--count", type=int, default=0, help="stop after this many refreshes (0: never)")
    _connection_options(p)
    p.set_defaults(func=cmd_top)
