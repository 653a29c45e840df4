"""Shared parts of the benchmarks: processes, wrk, a private Redis."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.fixtures.redis_server import MISSING, RedisServer, find_redis_server, free_port

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def private_redis() -> Iterator[RedisServer]:
    binary = find_redis_server()
    if binary is None:
        sys.exit(MISSING)
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        server = RedisServer(binary, Path(tmp))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def process(
    args: Sequence[str], ready_url: str, *, env: dict[str, str] | None = None, timeout_s: float = 30
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server process and wait until ``ready_url`` answers; stop it afterwards."""
    proc = subprocess.Popen(
        list(args),
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"{args[0]} exited with {proc.returncode}: {err[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready_url, timeout=1, verify=False).status_code < 500:  # noqa: S501
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ready_url} did not answer within {timeout_s}s")
            time.sleep(0.05)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unparsed wrk latency {text!r}")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def _lua(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def wrk(
    url: str,
    *,
    body: bytes = b"",
    method: str = "POST",
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    paths: Sequence[str] = (),
    connections: int = 64,
    duration_s: int = 10,
    threads: int = 1,
) -> WrkResult:
    """Load ``url`` with wrk; with ``paths``, requests cycle through them (same host)."""
    exe = shutil.which("wrk")
    if exe is None:
        sys.exit("wrk not found: install it with `sudo apt-get install -y wrk` (Debian/Ubuntu)")
    lines = [f"wrk.method = {_lua(method)}"]
    if body:
        lines += [
            f"wrk.body = {_lua(body.decode())}",
            f'wrk.headers["Content-Type"] = {_lua(content_type)}',
        ]
    for name, value in (headers or {}).items():
        lines.append(f"wrk.headers[{_lua(name)}] = {_lua(value)}")
    if paths:
        lines.append("local paths = {" + ", ".join(_lua(p) for p in paths) + "}")
        lines.append("local i = 0")
        lines.append(
            "request = function()\n  i = i + 1\n"
            "  return wrk.format(nil, paths[(i % #paths) + 1])\nend"
        )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines) + "\n")
    try:
        out = subprocess.run(
            [
                exe,
                "-t",
                str(threads),
                "-c",
                str(connections),
                "-d",
                f"{duration_s}s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=duration_s + 60,
        ).stdout
    finally:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(g) for g in m.groups())
    return WrkResult(rps, p50, p99, errors)


__all__ = ["ROOT", "WrkResult", "free_port", "private_redis", "process", "wrk"]


def add_poll_load_options(
    parser: argparse.ArgumentParser, *, tenants: int, duration: float, rate: float
) -> None:
    """The options the poll benchmarks share: how many tenants, how long and how fast their
    alerts change, the poll interval and the simulator's Graph latency."""
    parser.add_argument("--tenants", type=int, default=tenants)
    parser.add_argument(
        "--duration",
        type=float,
        default=duration,
        help=f"seconds of changes (default {duration:g})",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=10.0,
        help="poll interval in seconds (default 10; the product's minimum is 5)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=rate,
        help=f"changes a second, over all tenants (default {rate:g})",
    )
    parser.add_argument(
        "--latency-ms",
        type=int,
        default=150,
        help="the simulator's latency for every Graph call (default 150)",
    )


def simulator_command(port: int, tls_dir: str, ca: str, *options: str) -> list[str]:
    """``receiver simulator`` on ``port`` (its TLS files in ``tls_dir``, the test CA written to
    ``ca``, warnings only) with the benchmark's own ``options`` (--no-throttle, --allow-http,
    --legacy-alerts live ...)."""
    return [
        sys.executable,
        "-m",
        "receiver.simulator",
        "--port",
        str(port),
        "--tls-dir",
        tls_dir,
        "--ca-out",
        ca,
        "--log-level",
        "warning",
        *options,
    ]
