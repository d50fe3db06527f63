"""``bpmn-collab``: serve, migrate, mint development tokens, and benchmark."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from core.errors import CollabError
from server.auth import issue_user_token, load_or_create_secret
from server.logs import configure_logging
from server.services import open_services
from server.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "bench":
            from bench.cli import run as run_bench

            return run_bench(args)
        if args.command == "check":
            from bpmn.check import check_files

            return check_files(args.files, sys.stdout)
        settings = Settings()
        if args.command == "migrate":
            return asyncio.run(_migrate(settings))
        if args.command == "token":
            return _token(settings, args)
    except ValidationError as exc:
        print(f"bpmn-collab: bad configuration:\n{exc}", file=sys.stderr)
        return 2
    except CollabError as exc:
        print(f"bpmn-collab: {exc.detail}", file=sys.stderr)
        return 1
    parser.print_help()
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bpmn-collab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP and WebSocket server")
    serve.add_argument("--host", help="address to bind (SERVER_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (SERVER_PORT, default 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (SERVER_WORKERS, default 1)")

    commands.add_parser("migrate", help="create or update the database schema and blob bucket")

    check = commands.add_parser(
        "check", help="parse BPMN files, report errors and warnings, verify they round-trip"
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")

    from bench.cli import add_commands as add_bench_commands

    add_bench_commands(
        commands.add_parser("bench", help="load-test a server on loopback (see bench/README.md)")
    )

    token = commands.add_parser("token", help="print a user access token (development, tests)")
    token.add_argument("--user", required=True, help="user id (sub claim)")
    token.add_argument("--org", required=True, help="organization id (org claim)")
    token.add_argument("--role", choices=("editor", "viewer"), default="editor")
    token.add_argument("--name", help="display name (name claim)")
    token.add_argument("--ttl", type=int, help="lifetime in seconds (default 3600)")
    return parser


def _serve(args: argparse.Namespace) -> int:
    # Command-line flags win over the environment; worker processes re-read the
    # environment, so pass the flags on through it.
    for flag, variable in (
        ("host", "SERVER_HOST"),
        ("port", "SERVER_PORT"),
        ("workers", "SERVER_WORKERS"),
    ):
        value = getattr(args, flag)
        if value is not None:
            os.environ[variable] = str(value)
    settings = Settings()
    configure_logging(settings.server.log_level, json_lines=settings.server.log_json)

    import uvicorn

    # Everything imported so far lives as long as the process: keep it out of the garbage
    # collector's full passes, whose pauses grow with the heap (seen as a p99 spike every
    # few seconds with 1,000 connections, bench/README.md).
    gc.freeze()
    # A full collection walks every object of every connection: with 1,000 sockets it paused
    # the loop for 80-110 ms every dozen seconds (broadcast p99 59 -> 39 ms without them,
    # bench/README.md). Young collections of 10,000 objects take a few milliseconds, and
    # full ones come hundreds of times more rarely than with the default thresholds.
    gc.set_threshold(10_000, 20, 100)
    uvicorn.run(
        "server.app:app_from_env",
        factory=True,
        host=settings.server.host,
        port=settings.server.port,
        workers=settings.server.workers,
        log_level=settings.server.log_level,
        log_config=None,
        # The rooms enforce WS_MAX_MESSAGE_BYTES themselves (1009); uvicorn's cap is a backstop.
        ws_max_size=max(16 * 1024 * 1024, settings.ws.max_message_bytes * 2),
        ws_per_message_deflate=settings.ws.permessage_deflate,
        proxy_headers=True,
        timeout_keep_alive=settings.server.keep_alive_s,
        timeout_graceful_shutdown=10,
    )
    return 0


async def _migrate(settings: Settings) -> int:
    configure_logging(settings.server.log_level, json_lines=settings.server.log_json)
    # Nothing but the schema: no outbox processor polling tables that do not exist yet.
    settings.outbox.enabled = False
    async with open_services(settings) as services:
        await services.blobs.ensure_ready()
        await services.store.migrate()
    print("migrations applied")
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    secret = load_or_create_secret(settings.auth.jwt_secret, settings.server.data_dir)
    ttl = args.ttl if args.ttl is not None else settings.auth.default_token_ttl_s
    if ttl <= 0:
        print("bpmn-collab: --ttl must be positive", file=sys.stderr)
        return 2
    print(
        issue_user_token(
            secret, user_id=args.user, org_id=args.org, role=args.role, name=args.name, ttl_s=ttl
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
