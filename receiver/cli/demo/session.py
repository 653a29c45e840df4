"""One run of the demo, start to stop: Redis (private, or REDIS_URL's), the simulator, the
chat previews, `receiver serve` with the generated settings, the alert stream; then every part
stopped in order and a summary of what reached the sinks."""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from receiver.cli.demo.previews import SlackPreview, TeamsPreview
from receiver.cli.demo.processes import DemoError, Processes, free_port, ssl_context
from receiver.cli.demo.settings import POLL_INTERVAL_S, write_settings
from receiver.cli.demo.stream import AlertStream, show_push_path
from receiver.cli.exit import ERROR, OK


@dataclass
class Demo:
    data_dir: Path
    rate: float
    max_alerts: int | None
    stop_event: threading.Event = field(default_factory=threading.Event)
    teams: TeamsPreview | None = None
    slack: SlackPreview | None = None
    processes: Processes = field(init=False)

    def __post_init__(self) -> None:
        self.processes = Processes(self.data_dir, self.stop_event)

    @property
    def jsonl_path(self) -> Path:
        return self.data_dir / "alerts.jsonl"

    @property
    def teams_path(self) -> Path:
        return self.data_dir / "teams-cards.jsonl"

    @property
    def slack_path(self) -> Path:
        return self.data_dir / "slack-calls.jsonl"

    def run(self, duration: float | None) -> int:
        import httpx

        began = time.monotonic()
        deadline = None if duration is None else began + duration
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "pids.json").write_text("{}\n")
        try:
            return self._run(duration, deadline)
        except DemoError as exc:
            print(
                f"receiver demo: {exc.part} failed: {str(exc)[len(exc.part) + 2 :]}",
                file=sys.stderr,
            )
            return ERROR
        except httpx.HTTPError as exc:
            print(
                f"receiver demo: the simulator's control API failed: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
            return ERROR
        finally:
            print("demo: stopping ...", flush=True)
            self.stop_all()
            self.summary()

    def _run(self, duration: float | None, deadline: float | None) -> int:
        import httpx

        redis_url = os.environ.get("REDIS_URL")
        if redis_url:
            print(f"demo: using the Redis at REDIS_URL ({_redact(redis_url)})")
        else:
            redis_url = self.processes.start_redis()
            print(f"demo: private Redis on {redis_url} (data in {self.data_dir / 'redis'})")
        if self.stop_event.is_set():
            return OK
        sim, ca = self.processes.start_simulator()
        if self.stop_event.is_set():
            return OK
        print(f"demo: Graph simulator on {sim}")
        self.teams = TeamsPreview(self.teams_path)
        self.teams.start()
        self.slack = SlackPreview(self.slack_path)
        self.slack.start()
        web_port, admin_port = free_port(), free_port()
        config = write_settings(
            self.data_dir,
            redis_url=redis_url,
            sim=sim,
            ca=ca,
            web_port=web_port,
            admin_port=admin_port,
            teams_url=self.teams.url,
            slack_url=self.slack.url,
            jsonl_path=self.jsonl_path,
        )
        self.processes.start_serve(config, web_port)
        if not self.stop_event.is_set():
            print(f"demo: status page on http://127.0.0.1:{admin_port}/status")
        with httpx.Client(verify=ssl_context(ca), trust_env=False, timeout=30) as control:
            self.processes.wait_for_subscription(control, sim)
            if self.stop_event.is_set():
                return OK
            print(
                f"demo: polling alerts_v2 and incidents every {POLL_INTERVAL_S}s "
                "(Graph pushes nothing for them; what a real tenant gets today)",
                flush=True,
            )
            show_push_path(control, sim)
            print(
                f"demo: creating {self.rate:g} alert(s)/s"
                + ("" if duration is None else f" for up to {duration:g}s")
                + " (Ctrl-C stops)",
                flush=True,
            )
            AlertStream(
                control,
                sim,
                self.rate,
                self.max_alerts,
                self.stop_event,
                self.processes.check,
            ).run(deadline)
        return OK

    def stop_all(self) -> None:
        """The receiver first (it finishes in-flight deliveries), then what it used."""
        self.processes.stop("serve", "simulator")
        if self.teams is not None:
            self.teams.stop()
        if self.slack is not None:
            self.slack.stop()
        self.processes.stop("redis")

    def summary(self) -> None:
        """Where what the demo routed went, and how much of it."""
        print(
            f"demo: stopped. Alerts routed to the JSON-lines sink: {self.jsonl_path} "
            f"({_lines(self.jsonl_path)} lines)"
        )
        print(
            f"demo: Teams preview (Adaptive Cards a Teams channel would get): "
            f"{self.teams_path} ({_lines(self.teams_path)} cards)"
        )
        if self.slack is not None:
            standin = self.slack.standin
            print(
                f"demo: Slack app (one message per alert, updated in place): "
                f"{self.slack_path} ({len(standin.parents())} messages, "
                f"{standin.count('chat.update')} updates)",
                flush=True,
            )


def _redact(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(parts.password, "***", 1)
    return url


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0
