"""The `onedrive-rpc` command: demo, call a method with JSON, ping, serve the test service.

    onedrive-rpc demo
    onedrive-rpc ping tcp://127.0.0.1:5000
    onedrive-rpc call tcp://127.0.0.1:5000 onedrive_rpc.testing.Echo/Echo '{"text": "hi"}'
    onedrive-rpc serve-echo unix:///tmp/echo.sock
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from typing import List, Optional

from google.protobuf import json_format
from google.protobuf.descriptor_pool import Default as default_pool

from .errors import RpcError

__all__ = ["main"]


def _load_modules(names: List[str]) -> None:
    # Importing a _pb2 module registers its services in the default pool.
    importlib.import_module("onedrive_rpc.testing.echo_pb2")
    for name in names:
        importlib.import_module(name)


def _method(path: str):
    service_name, _, method_name = path.strip("/").partition("/")
    if not method_name and "." in service_name:
        service_name, _, method_name = service_name.rpartition(".")
    try:
        service = default_pool().FindServiceByName(service_name)
    except KeyError:
        raise SystemExit(f"unknown service {service_name!r}: pass --module with its _pb2 module") from None
    method = service.methods_by_name.get(method_name)
    if method is None:
        raise SystemExit(f"service {service_name} has no method {method_name!r}; it has: "
                         f"{', '.join(m.name for m in service.methods)}")
    return service, method


def cmd_call(args: argparse.Namespace) -> int:
    from google.protobuf.message_factory import GetMessageClass

    from .peer import connect

    _load_modules(args.module)
    service, method = _method(args.method)
    request = json_format.Parse(args.json, GetMessageClass(method.input_type)())
    output_type = GetMessageClass(method.output_type)
    with connect(args.url, timeout=args.timeout) as peer:
        reply = peer.call(f"/{service.full_name}/{method.name}", request.SerializeToString(),
                          output_type.FromString, timeout=args.timeout)
    print(json_format.MessageToJson(reply, indent=2))
    return 0


def cmd_ping(args: argparse.Namespace) -> int:
    from .peer import connect

    for i in range(args.count):
        start = time.perf_counter()
        with connect(args.url, timeout=args.timeout) as peer:
            elapsed = (time.perf_counter() - start) * 1000
            info = peer.info
            print(f"{args.url}: handshake in {elapsed:.2f} ms with {info.name} "
                  f"(pid {info.pid}, peer id {info.peer_id}, session {peer.session_id})")
    return 0


def cmd_serve_echo(args: argparse.Namespace) -> int:
    from .testing.process import main as serve

    serve([args.url] + (["--tracebacks"] if args.tracebacks else []))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run

    return run(args.url)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="onedrive-rpc", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run a server process and a client talking to it")
    p.add_argument("--url", default="tcp://127.0.0.1:0", help="where the demo server listens")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("call", help="call a method: JSON request in, JSON reply out")
    p.add_argument("url")
    p.add_argument("method", help="package.Service/Method")
    p.add_argument("json", nargs="?", default="{}")
    p.add_argument("--module", action="append", default=[],
                   help="a _pb2 module defining the service (repeatable)")
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("ping", help="connect, handshake and report the peer")
    p.add_argument("url")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=5.0)
    p.set_defaults(func=cmd_ping)

    p = sub.add_parser("serve-echo", help="serve the test Echo service")
    p.add_argument("url")
    p.add_argument("--tracebacks", action="store_true")
    p.set_defaults(func=cmd_serve_echo)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RpcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except json.JSONDecodeError as exc:
        print(f"error: bad JSON: {exc}", file=sys.stderr)
        return 2
    except json_format.ParseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
