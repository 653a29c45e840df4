"""`receiver demo` end to end: real Redis, simulator and `receiver serve` processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _demo(data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RECEIVER_CONFIG")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "receiver.cli",
            "demo",
            "--rate",
            "2",
            "--data-dir",
            str(data_dir),
            *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout_s: float) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the demo did not stop in {timeout_s}s\nstdout:\n{out}\nstderr:\n{err}")


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _assert_nothing_left(data_dir: Path) -> None:
    pids: dict[str, int] = json.loads((data_dir / "pids.json").read_text())
    assert set(pids) == {"redis", "simulator", "serve"}
    for name, pid in pids.items():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
            pytest.fail(f"{name} (pid {pid}) is still running")


def _read_until(
    proc: subprocess.Popen[str], marker: str, seen: list[str], timeout_s: float = 40
) -> str:
    """Read the demo's output line by line until a line containing ``marker``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return line
    pytest.fail(f"no {marker!r} in the demo's output:\n{''.join(seen)}")


@pytest.mark.slow
def test_demo_routes_alerts_to_every_sink_and_stops_cleanly(tmp_path: Path) -> None:
    proc = _demo(tmp_path, "--duration", "25")
    seen: list[str] = []
    status_url = _read_until(proc, "demo: status page on ", seen).split()[-1]
    _read_until(proc, "NEW [", seen)  # an alert went through
    page = httpx.get(status_url, timeout=10, trust_env=False)
    assert page.status_code == 200 and "<h2>Subscriptions</h2>" in page.text
    assert "contoso" in page.text and "Last alerts" in page.text
    rest, err = _finish(proc, 60)
    out = "".join(seen) + rest
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"

    alerts = _jsonl(tmp_path / "alerts.jsonl")
    assert len(alerts) >= 3, out
    for envelope in alerts:
        assert envelope["id"] and envelope["tenant"] == "contoso"
        assert envelope["severity"] in {"informational", "low", "medium", "high", "unknown"}

    assert "demo: created #1 high" in out  # the first alert is a high one: the Teams card
    # What a tenant gets today first (polled alerts_v2 and incidents), the push path labelled.
    assert "demo: polling alerts_v2 and incidents every 5s" in out
    assert "[polled: what a tenant gets today]" in out
    assert "today's Graph creates the subscription and sends nothing" in out
    assert "[push path demo: legacy alert" in out
    apis = {envelope["source_api"] for envelope in alerts}
    assert {"alerts_v2", "incidents", "alerts_v1"} <= apis, apis
    cards = _jsonl(tmp_path / "teams-cards.jsonl")
    assert cards, out
    for message in cards:
        assert message["type"] == "message"
        attachment = message["attachments"][0]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert attachment["content"]["type"] == "AdaptiveCard"
        # Only high and medium alerts go to the preview; the card's banner shows which.
        assert attachment["content"]["body"][0]["style"] in {"attention", "warning"}

    calls = _jsonl(tmp_path / "slack-calls.jsonl")  # the Slack app, recorded by the stand-in
    posts = [
        c
        for c in calls
        if c["method"] == "chat.postMessage" and c["ok"] and not c["body"].get("thread_ts")
    ]
    assert posts and all(c["body"]["channel"] == "C0SECALRTS" for c in posts), out
    assert len({c["body"]["metadata"]["event_payload"]["alert_id"] for c in posts}) == len(posts)
    assert "demo: Slack app (one message per alert, updated in place)" in out
    assert "NEW [HIGH]" in out  # the console sink, printed by `receiver serve`
    assert str(tmp_path / "alerts.jsonl") in out and str(tmp_path / "teams-cards.jsonl") in out
    _assert_nothing_left(tmp_path)


@pytest.mark.slow
def test_demo_stops_everything_on_sigint(tmp_path: Path) -> None:
    proc = _demo(tmp_path)
    try:
        deadline = time.monotonic() + 40
        jsonl = tmp_path / "alerts.jsonl"
        while not (jsonl.exists() and jsonl.stat().st_size > 0):
            if proc.poll() is not None or time.monotonic() > deadline:
                out, err = _finish(proc, 30)
                pytest.fail(f"no alert reached the JSON-lines sink\nstdout:\n{out}\nstderr:\n{err}")
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = _finish(proc, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert "SIGINT: stopping" in err
    assert "demo: stopped." in out
    _assert_nothing_left(tmp_path)
