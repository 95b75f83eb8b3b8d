"""Command line: ``reservation serve`` (also ``python server.py``) and ``reservation migrate``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import socket
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from reservation.cluster import join_ray
from reservation.config import Settings

log = logging.getLogger("reservation")


def _apply_flags(args: argparse.Namespace) -> None:
    """Flags win over the environment: write them where Settings reads."""
    for flag, env in (
        ("host", "RESERVATION_HOST"),
        ("port", "RESERVATION_PORT"),
        ("workers", "RESERVATION_WORKERS"),
        ("database_url", "RESERVATION_DATABASE_URL"),
        ("ray_address", "RESERVATION_RAY_ADDRESS"),
        ("data_dir", "RESERVATION_DATA_DIR"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            os.environ[env] = str(value)


@contextlib.contextmanager
def _port_held(host: str, port: int) -> Iterator[None]:
    """Listen on the server's address while Ray starts, so that none of the ports Ray's
    processes pick for themselves can be this one; a port already taken stops the
    server here, before anything started."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            held.bind(address)
            held.listen()
        except OSError as exc:
            sys.exit(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        yield
    # Closed here; uvicorn binds the same address at once.


def http_protocol(settings: Settings) -> Any:
    """uvicorn's HTTP protocol for the front ends (see ``reservation/api/http.py``)."""
    if not settings.coalesce_writes:
        return "auto"
    from reservation.api.http import CoalescingHttpToolsProtocol

    return CoalescingHttpToolsProtocol


def serve(settings: Settings) -> None:
    """Migrate the store, make sure Ray runs, and start the uvicorn workers."""
    import uvicorn

    from reservation.store.db import migrate

    data_dir = settings.resolved_data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    settings.signing_key()  # made once here, so every worker signs with the same key
    migrate(settings.store_url)  # once, before any worker starts: workers never race on it
    with _port_held(settings.host, settings.port):
        # Without an address, a local Ray head starts inside this process.
        ray_address = settings.ray_address or join_ray(settings)
    os.environ["RESERVATION_RAY_ADDRESS"] = ray_address
    os.environ["RESERVATION_DATA_DIR"] = str(data_dir)
    if settings.workers > 1:
        metrics_dir = data_dir / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    store = settings.store_url.split("://", 1)[0]
    print(
        f"reservation server listening on http://{settings.host}:{settings.port} "
        f"({settings.workers} worker(s), store {store}, Ray at {ray_address}); "
        f"API docs at http://{settings.host}:{settings.port}/docs",
        flush=True,
    )
    uvicorn.run(
        "reservation.api.app:app",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        http=http_protocol(settings),
        log_level="warning",
        access_log=False,
        # Nothing reads the client's address (no access log, no per-client rules), so
        # uvicorn's X-Forwarded-For rewrite would cost every request for nothing.
        proxy_headers=False,
        server_header=False,  # no "server: uvicorn" on every answer
        timeout_graceful_shutdown=5,
        timeout_keep_alive=settings.keep_alive_s,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="reservation", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the HTTP front ends (starts a local Ray unless RAY_ADDRESS is set)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int, help="uvicorn worker processes (default: one per core)")
    s.add_argument("--database-url", help="e.g. mysql+aiomysql://user:pass@db:3306/reservation")
    s.add_argument("--ray-address", help="Ray cluster to join (default: start a local one)")
    s.add_argument("--data-dir", help="where the SQLite store and local state live")
    m = sub.add_parser("migrate", help="bring the store's schema up to date and exit")
    m.add_argument("--database-url")
    m.add_argument("--data-dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    _apply_flags(args)
    try:
        settings = Settings()
    except ValueError as exc:
        sys.exit(f"configuration error: {exc}")
    if args.command == "migrate":
        from reservation.store.db import migrate

        migrate(settings.store_url)
        print(f"schema up to date at {settings.store_url.split('://', 1)[0]}")
    else:
        serve(settings)


def serve_main() -> None:
    main(["serve", *sys.argv[1:]])
