"""Ingest benchmark: the receiver's front door against a bare Starlette 202, same load.

Both run as one uvicorn process (uvloop, httptools) under wrk (64 connections, one
single-item Graph notification per request). The receiver validates every item against the
subscription registry and answers only after Redis (a private redis-server) stored it.

    .venv/bin/python -m tests.benchmarks.ingest [--duration 10] [--connections 64]

Last line: ingest_ratio=<receiver requests/s / bare requests/s> (target >= 0.5 on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

import redis as redis_sync

from receiver.store.keys import Keys
from tests.benchmarks._common import wrk
from tests.fixtures.deploy import Proc, role_command, write_config
from tests.fixtures.redis_server import free_port, private_redis
from tests.fixtures.settings import base_settings_data
from tests.fixtures.web import notification, register


def _bare(port: int) -> list[str]:
    """The baseline: a bare Starlette app answering 202, as uvicorn runs the receiver's web."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "tests.benchmarks._bare:app",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        "--backlog",
        "4096",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)

    with private_redis() as server, tempfile.TemporaryDirectory() as tmp:
        data = base_settings_data()
        data["redis"]["url"] = server.url
        data["logging"] = {"level": "WARNING", "format": "text"}
        config = write_config(Path(tmp) / "receiver.yaml", data)
        from receiver.config.loader import load_settings

        settings = load_settings(config, environ={})
        record = asyncio.run(register(server.url, settings))
        payload = json.dumps({"value": [notification(record, "da637551227677560813_-9614")]})

        results = {}
        for name, ready, command in (
            ("bare", "healthz", _bare),
            ("receiver", "readyz", lambda port: role_command("web", config, port=port)),
        ):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            with Proc(name, command(port), Path(tmp) / f"{name}.log", f"{url}/{ready}"):
                results[name] = wrk(
                    f"{url}/webhooks/graph",
                    body=payload.encode(),
                    connections=args.connections,
                    duration_s=args.duration,
                )
        with redis_sync.Redis.from_url(server.url) as client:
            stored = client.xlen(Keys(settings.redis.key_prefix).notifications)

    for name, r in results.items():
        print(
            f"{name}: {r.rps:.0f} requests/s, p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms, "
            f"errors {r.errors}"
        )
    receiver = results["receiver"]
    completed = receiver.rps * args.duration
    print(f"receiver stored {stored} notifications for ~{completed:.0f} answered requests")
    if receiver.errors:
        print(f"error: {receiver.errors} requests failed", file=sys.stderr)
        return 1
    if stored < 0.95 * completed:
        print("error: fewer notifications stored than answered", file=sys.stderr)
        return 1
    print(f"ingest_ratio={receiver.rps / results['bare'].rps:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
