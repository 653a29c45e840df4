"""CI's reliability gate: the short profile as a subprocess; its last line must say lost=0."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability._profiles import SHORT

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_short_profile_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.reliability",
            "--profile",
            "short",
            "--out",
            str(out),
            "--logs",
            str(tmp_path / "logs"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-3000:]
    last = lines[-1]
    match = re.fullmatch(r"lost=(\d+) duplicated=(\d+) p99_ms=(\d+)", last)
    assert match, f"unexpected last line {last!r}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    assert match.group(1) == "0", proc.stdout
    assert proc.returncode == 0, proc.stdout
    import json

    report = json.loads(out.read_text())
    # Every fault of the profile ran, and the load and the checks were real.
    assert not [f for f in report["faults"] if "FAILED" in f], report["faults"]
    assert len(report["faults"]) == len(SHORT.faults)
    assert report["created"]["push"] > 300 and report["created"]["poll"] > 10
    assert {s["name"]: s["lost"] for s in report["sinks"]} == {"hook": 0, "flaky": 0, "tickets": 0}
    assert report["sinks"][-1]["duplicated"] == 0  # the ticket sink is idempotent
    assert report["web_answers"].get("503", 0) > 0  # Redis was really down for a while
