"""Shared parts of the benchmarks: wrk, the poll benchmarks' options. (Their processes and
Redis: tests.fixtures.deploy and tests.fixtures.redis_server.)"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass


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
