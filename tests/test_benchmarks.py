"""Smoke runs of the benchmarks (short durations): they run, and their last line is the
figure in the documented `name=value` form. The real runs are documented in the README."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_benchmark(module: str, *args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()


@pytest.mark.slow
def test_ingest_benchmark_smoke() -> None:
    lines = run_benchmark("tests.benchmarks.ingest", "--duration", "2")
    m = re.fullmatch(r"ingest_ratio=(\d+\.\d+)", lines[-1])
    assert m, lines
    assert 0.05 < float(m.group(1)) < 2.0
    assert any(line.startswith("bare: ") for line in lines)


@pytest.mark.slow
def test_simulator_benchmark_smoke() -> None:
    lines = run_benchmark("tests.benchmarks.simulator", "--duration", "2")
    m = re.fullmatch(r"simulator_alert_gets_per_s=(\d+)", lines[-1])
    assert m, lines
    assert int(m.group(1)) > 100


@pytest.mark.slow
def test_subscriptions_benchmark_smoke() -> None:
    lines = run_benchmark("tests.benchmarks.subscriptions", "--tenants", "5", "--per-tenant", "4")
    m = re.fullmatch(r"reconcile_s=(\d+\.\d+)", lines[-1])
    assert m, lines
    assert any("Graph calls per subscription" in line for line in lines)


@pytest.mark.slow
def test_pipeline_benchmark_smoke() -> None:
    lines = run_benchmark("tests.benchmarks.pipeline", "--brief")
    ratio = re.fullmatch(r"pipeline_cpu_ratio=(\d+\.\d+)", lines[-2])
    p99 = re.fullmatch(r"e2e_p99_ms=(\d+\.\d+)", lines[-1])
    assert ratio and p99, lines
    assert 0.05 < float(ratio.group(1)) < 50
    assert lines[0].startswith("baseline (") and "ms CPU per alert" in lines[0]
    assert any(line.startswith("  step ") and line.endswith("holds") for line in lines), lines
    assert any(
        re.search(
            r"measured at 50 %: \d+ alerts/s, \d+ alerts, 0 missing, "
            r"0 duplicated",
            line,
        )
        for line in lines
    ), lines
    assert any(
        line.startswith("real-world latencies") and ", 0 missing," in line for line in lines
    ), lines


@pytest.mark.slow
def test_poll_benchmark_smoke() -> None:
    lines = run_benchmark(
        "tests.benchmarks.poll",
        "--tenants",
        "4",
        "--duration",
        "15",
        "--interval",
        "5",
        "--rate",
        "2",
    )
    m = re.fullmatch(r"poll_lag_p99_s=(\d+\.\d+)", lines[-1])
    assert m, lines
    # Polled every 5 s: a change waits one interval at most, plus the pipeline.
    assert 0 < float(m.group(1)) < 20
    assert any("0 alerts' last version missing, 0 duplicated" in line for line in lines), lines
    assert any(re.search(r"per tenant per minute; 0 throttled", line) for line in lines), lines


@pytest.mark.slow
def test_poll_scale_benchmark_smoke() -> None:
    lines = run_benchmark(
        "tests.benchmarks.poll_scale",
        "--tenants",
        "6",
        "--duration",
        "8",
        "--interval",
        "5",
        "--rate",
        "2",
        "--backlog",
        "200",
        "--steady-s",
        "0",
    )
    m = re.fullmatch(r"poll_scale_lag_p99_s=(\d+\.\d+)", lines[-1])
    assert m, lines
    assert 0 < float(m.group(1)) < 20  # polled every 5 s, plus the pipeline
    # Both phases ran (1 worker, then 2), every change arrived, Graph was read.
    for n in ("1 worker", "2 workers"):
        at = lines.index(f"--- {n} ---")
        assert lines[at + 1].endswith("0 alerts' last version missing"), lines
        assert re.match(r"Graph: \d+\.\d GETs/s", lines[at + 3]), lines
    assert sum(line.startswith("capacity (a backlog of poll jobs drained") for line in lines) == 2
    assert any(line.startswith("capacity 2 workers / 1: ") for line in lines), lines
