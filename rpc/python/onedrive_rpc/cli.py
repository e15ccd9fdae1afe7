"""The `onedrive-rpc` command: demo, call a method or publish with JSON, subscribe, ping, health, admin, top.

    onedrive-rpc demo
    onedrive-rpc ping tcp://127.0.0.1:5000
    onedrive-rpc call tcp://127.0.0.1:5000 onedrive_rpc.testing.Echo/Echo '{"text": "hi"}'
    onedrive-rpc subscribe tcp://127.0.0.1:5000 onedrive_rpc.testing.Echo/Changed 'drive.>'
    onedrive-rpc publish tcp://127.0.0.1:5000 onedrive_rpc.testing.Echo/Changed drive.a '{"text": "x"}'
    onedrive-rpc serve-echo unix:///tmp/echo.sock
    onedrive-rpc conformance unix:///tmp/echo.sock
    onedrive-rpc admin unix:///tmp/echo.sock peers
    onedrive-rpc top unix:///tmp/echo.sock
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from typing import Any, List, Optional

from google.protobuf import json_format
from google.protobuf.descriptor_pool import Default as default_pool

from . import admin_cli, options_pb2
from .errors import RpcError, StatusCode
from .service import method_infos

__all__ = ["main"]


def _load_modules(names: List[str]) -> None:
    # Importing a _pb2 module registers its services in the default pool.
    importlib.import_module("onedrive_rpc.testing.echo_pb2")
    importlib.import_module("onedrive_rpc.examples.onedrive.sync_pb2")
    for name in names:
        importlib.import_module(name)


def _method(path: str, peer=None):
    """The service and method descriptors of "package.Service/Method": from
    the modules loaded here, else from the server's reflection (if `peer`)."""
    service_name, _, method_name = path.strip("/").partition("/")
    if not method_name and "." in service_name:
        service_name, _, method_name = service_name.rpartition(".")
    try:
        service = default_pool().FindServiceByName(service_name)
    except KeyError:
        service = _reflected(service_name, peer)
    method = service.methods_by_name.get(method_name)
    if method is None:
        raise SystemExit(f"service {service_name} has no method {method_name!r}; it has: "
                         f"{', '.join(m.name for m in service.methods)}")
    return service, method


def _reflected(service_name: str, peer):
    from . import reflection

    hint = f"unknown service {service_name!r}: pass --module with its _pb2 module"
    if peer is None:
        raise SystemExit(hint)
    try:
        services = reflection.list_services(peer)
    except RpcError as exc:
        if exc.code == StatusCode.UNIMPLEMENTED:
            raise SystemExit(f"{hint} (the server offers no reflection)") from None
        raise
    if service_name not in services.services:
        raise SystemExit(f"the server has no service {service_name!r}; it has: "
                         f"{', '.join(services.services)}")
    reflection.load(services)
    return default_pool().FindServiceByName(service_name)


def cmd_list(args: argparse.Namespace) -> int:
    """Print the services a server serves (it needs reflection=True)."""
    from . import reflection
    from .peer import connect

    with connect(args.url, timeout=args.timeout) as peer:
        try:
            services = reflection.list_services(peer, timeout=args.timeout)
        except RpcError as exc:
            if exc.code == StatusCode.UNIMPLEMENTED:
                print(f"error: {args.url} offers no reflection (rpc.Server(..., reflection=True))",
                      file=sys.stderr)
                return 1
            raise
        for service in reflection.load(services):
            print(service.full_name)
            for info, method in zip(method_infos(service), service.methods):
                shape = options_pb2.Pattern.Name(info.pattern)
                print(f"  {method.name}({method.input_type.full_name}) -> "
                      f"{method.output_type.full_name}  [{shape}]")
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    from google.protobuf.message_factory import GetMessageClass

    from .peer import connect

    _load_modules(args.module)
    with connect(args.url, timeout=args.timeout) as peer:
        service, method = _method(args.method, peer)
        request = json_format.Parse(args.json, GetMessageClass(method.input_type)())
        decode = GetMessageClass(method.output_type).FromString
        path = f"/{service.full_name}/{method.name}"
        pattern = method_infos(service)[list(service.methods).index(method)].pattern
        payload = request.SerializeToString()
        if pattern == options_pb2.SERVER_STREAM:
            for item in peer.open_stream(path, payload, decode, timeout=args.timeout):
                print(json_format.MessageToJson(item, indent=None), flush=True)
        elif pattern == options_pb2.NOTIFICATION:
            peer.notify(path, payload, confirm=True, timeout=args.timeout)
            print("delivered")
        elif pattern == options_pb2.REQUEST_RESPONSE:
            reply = peer.call(path, payload, decode, timeout=args.timeout)
            print(json_format.MessageToJson(reply, indent=2))
        else:
            raise SystemExit(f"{path} is a {options_pb2.Pattern.Name(pattern)} method: "
                             f"use publish/subscribe")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from google.protobuf.message_factory import GetMessageClass

    from .peer import connect

    _load_modules(args.module)
    service, method = _method(args.method)
    message = json_format.Parse(args.json, GetMessageClass(method.input_type)())
    with connect(args.url, timeout=args.timeout) as peer:
        peer.publish(f"/{service.full_name}/{method.name}", args.topic, message.SerializeToString(),
                     confirm=True, timeout=args.timeout)
    print("published")
    return 0


def cmd_subscribe(args: argparse.Namespace) -> int:
    """Print what is published on matching topics, one JSON object per line."""
    from google.protobuf.message_factory import GetMessageClass

    from .peer import connect

    _load_modules(args.module)
    service, method = _method(args.method)
    decode = GetMessageClass(method.input_type).FromString
    with connect(args.url, timeout=args.timeout) as peer:
        subscription = peer.subscribe(f"/{service.full_name}/{method.name}", args.pattern, decode,
                                      timeout=args.timeout)
        print(f"subscribed to {args.pattern!r}", file=sys.stderr, flush=True)
        for n, received in enumerate(subscription, 1):
            print(json.dumps({"topic": received.topic, "publisher": received.publisher,
                              "seq": received.publisher_seq, "dropped": received.dropped,
                              "message": json_format.MessageToDict(received.message)}), flush=True)
            if args.count and n >= args.count:
                break
    return 0


def cmd_ping(args: argparse.Namespace) -> int:
    from .peer import connect

    for i in range(args.count):
        start = time.perf_counter()
        with connect(args.url, timeout=args.timeout) as peer:
            elapsed = (time.perf_counter() - start) * 1000
            info = peer.info
            assert info is not None  # known once connect() returned
            # Name and pid are what the server says of itself (its Welcome).
            print(f"{args.url}: handshake in {elapsed:.2f} ms with a server that says it is "
                  f"{info.name} (pid {info.pid}); peer id {info.peer_id}, session "
                  f"{peer.session_id}")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """0 while SERVING; 1 NOT_SERVING or unknown; 2 when it could not ask."""
    from . import health
    from .client import Client
    from .config import Reconnect
    from .peer import connect

    try:
        with connect(args.url, timeout=args.timeout, reconnect=Reconnect(enabled=False)) as peer:
            if not args.watch:
                status = health.check(peer, args.service, args.timeout)
                print(health.status_name(status))
                return 0 if status == health.SERVING else 1
            for reply in Client(peer, health.HEALTH).watch(
                    health.HealthCheckRequest(service=args.service)):
                print(health.status_name(reply.status), flush=True)
            return 2  # the stream ends only with an error
    except RpcError as exc:
        if exc.code == StatusCode.NOT_FOUND:
            print(f"SERVICE_UNKNOWN: {exc.message}")
            return 1
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_serve_echo(args: argparse.Namespace) -> int:
    from .testing.process import main as serve

    serve([args.url] + (["--error-details"] if args.error_details else [])
          + (["--secret", args.secret] if args.secret else []))
    return 0


def cmd_conformance(args: argparse.Namespace) -> int:
    """Run the wire-protocol scenarios against a server; 0 only if all pass."""
    from pathlib import Path

    from . import conformance

    _load_modules(args.module)
    directory = Path(args.scenarios) if args.scenarios else None
    only = [name for part in args.only for name in part.split(",") if name]
    try:
        scenarios = conformance.select(conformance.load_all(directory), only)
    except conformance.ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    other = [s for s in scenarios if s.server != args.server]
    if only and other:
        print(f"error: {', '.join(f'{s.name} is for a server of kind {s.server}' for s in other)}; "
              f"this one is {args.server} (--server)", file=sys.stderr)
        return 2
    scenarios = [s for s in scenarios if s.server == args.server]
    if args.list:
        for scenario in scenarios:
            print(f"{scenario.name}  [{', '.join(scenario.spec)}]  {scenario.description}")
        return 0

    def report(result: "conformance.Result") -> None:
        label = {"pass": "PASS", "fail": "FAIL", "xfail": "XFAIL", "xpass": "XPASS"}[result.outcome]
        print(f"{label:5}  {result.name}  ({result.seconds:.2f}s)", flush=True)
        if result.outcome == "fail":
            print(f"       {result.message}", flush=True)
        elif result.outcome == "xfail":
            print(f"       known: {next(s for s in scenarios if s.name == result.name).expected_failure}",
                  flush=True)

    tls = conformance.client_tls(args.cafile) if args.url.startswith("tls://") else None
    results, ok = conformance.run_all(scenarios, args.url, report, int(args.within_ms), tls)
    counts = {o: sum(r.outcome == o for r in results) for o in ("pass", "fail", "xfail", "xpass")}
    print(f"{len(results)} scenarios: {counts['pass']} passed, {counts['fail']} failed, "
          f"{counts['xfail']} failed as expected, {counts['xpass']} passed unexpectedly")
    return 0 if ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run

    return run(args.url)


def _described(sub: Any, name: str, help: str, description: str) -> argparse.ArgumentParser:
    """A subcommand whose --help shows `description` with its lines as written."""
    return sub.add_parser(name, help=help, description=description,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="onedrive-rpc", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the example OneDrive daemon and its components")
    p.add_argument("--url", default="tcp://127.0.0.1:0", help="where the demo daemon listens")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("call", help="call a method (or read a stream, or send a notification): "
                                    "JSON in, JSON out")
    p.add_argument("url")
    p.add_argument("method", help="package.Service/Method (a leading / is fine too)")
    p.add_argument("json", nargs="?", default="{}")
    p.add_argument("--module", action="append", default=[],
                   help="a _pb2 module defining the service (repeatable)")
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("publish", help="publish a JSON message on a topic")
    p.add_argument("url")
    p.add_argument("method", help="package.Service/Method (a PUBLISH_SUBSCRIBE method)")
    p.add_argument("topic")
    p.add_argument("json", nargs="?", default="{}")
    p.add_argument("--module", action="append", default=[])
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("subscribe", help="print what is published on topics matching a pattern")
    p.add_argument("url")
    p.add_argument("method", help="package.Service/Method (a PUBLISH_SUBSCRIBE method)")
    p.add_argument("pattern", help='e.g. "drive.*.docs" or "drive.>"')
    p.add_argument("--count", type=int, default=0, help="stop after this many (0: never)")
    p.add_argument("--module", action="append", default=[])
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(func=cmd_subscribe)

    p = sub.add_parser("list", help="list a server's services and methods (reflection)")
    p.add_argument("url")
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("ping", help="connect, handshake and report the peer")
    p.add_argument("url")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=5.0)
    p.set_defaults(func=cmd_ping)

    p = _described(
        sub, "health", "is the server (or SERVICE) serving? exit 0 if so (onedrive_rpc.Health)",
        "Ask a server's onedrive_rpc.Health whether it, or one of its services, is\n"
        "serving; prints SERVING, NOT_SERVING or SERVICE_UNKNOWN. Exit status: 0\n"
        "SERVING, 1 NOT_SERVING or unknown service, 2 could not ask (no server,\n"
        "timeout, health=False). For systemd, supervisors and container probes.")
    p.add_argument("url")
    p.add_argument("service", nargs="?", default="",
                   help='a service\'s full name, e.g. onedrive.sync.Sync (default "": the server)')
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--watch", action="store_true",
                   help="print the status now and every change, until the server goes away")
    p.set_defaults(func=cmd_health)

    p = _described(
        sub, "serve-echo", "serve the test Echo service",
        "Serve the test Echo service (onedrive_rpc.testing.Echo) at URL, with\n"
        "reflection on (servers have it off unless asked), for trying a client.\n\n"
        "SIGTERM or SIGINT (Ctrl-C) stops it in order: new calls are refused,\n"
        "calls in flight get 5 s, then every peer gets Close{UNAVAILABLE,\n"
        "\"server stopped\", end_session: true}.\n\n"
        "Its Stats method answers a Msg whose text is JSON: {\"calls\": {handler\n"
        "name: times run}, \"notes\": {Note text: times received}, \"items_sent\":\n"
        "stream items sent, \"streams_stopped\": streams ended before their last item}.")
    p.add_argument("url")
    p.add_argument("--error-details", action="store_true",
                   help="send handler exception texts and tracebacks to callers")
    p.add_argument("--secret", help="require this shared secret of clients (at least 16 bytes; "
                                    "the conformance suite's echo-secret target uses "
                                    "'conformance shared secret')")
    p.set_defaults(func=cmd_serve_echo)

    admin_cli.add_commands(sub, _described)

    p = sub.add_parser("conformance", help="run the wire-protocol conformance scenarios against a server "
                                           "serving onedrive_rpc.testing.Echo (tcp://, tls://, unix://)")
    p.add_argument("url")
    p.add_argument("--only", action="append", default=[], metavar="NAME,...",
                   help="run only these scenarios (repeatable)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--scenarios", help="a directory of scenario files (default: the shipped ones)")
    p.add_argument("--within-ms", type=int, default=5000,
                   help="how long an expect step waits when it says no within_ms")
    p.add_argument("--module", action="append", default=[],
                   help="a _pb2 module defining payload_msg types (repeatable)")
    p.add_argument("--cafile", help="tls:// URLs: the CA that signed the server's certificate "
                                    "(default: the system's)")
    p.add_argument("--server", choices=["echo", "echo-secret"], default="echo",
                   help="what URL serves: echo (default), or echo-secret, the same with the shared "
                        "secret 'conformance shared secret' (serve-echo --secret); runs that kind's "
                        "scenarios")
    p.set_defaults(func=cmd_conformance)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RpcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except json.JSONDecodeError as exc:
        print(f"error: bad JSON: {exc}", file=sys.stderr)
        return 2
    except (json_format.ParseError, ValueError) as exc:  # ValueError: a bad topic or pattern
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
