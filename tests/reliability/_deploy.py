"""The deployment under test: the simulator and the receiver's roles as real processes.

Each role is ``python -m receiver.cli <role>`` with its own log file. A watcher notes any
process that exits without the harness killing it, and restarts it (as Kubernetes would):
the report lists those exits, so a role that dies on a fault is visible, not hidden.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.fixtures.redis_server import free_port
from tests.fixtures.simulator import ControlClient

ROOT = Path(__file__).resolve().parents[2]
TENANT = "5f1c2b3a-7d4e-4a6b-9c8d-0e1f2a3b4c5d"  # the simulator's demo tenant
CLIENT_ID = "0a1b2c3d-4e5f-4a7b-8c9d-aebfc0d1e2f3"
CLIENT_SECRET = "sim-demo-secret~not-a-real-credential"  # a simulator demo credential
RESOURCE = "security/alerts?$filter=vendorInformation/vendor eq 'Microsoft'"
PROJECT = "SOC"


def rss_kb(pid: int) -> int:
    """Resident set size of a process (kB), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Proc:
    """One process the harness runs, knows how to start, kill and wait for."""

    name: str
    args: list[str]
    log: Path
    ready_port: int | None = None
    ready_url: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    killed: bool = False
    starts: int = 0
    unexpected_exits: list[str] = field(default_factory=list)

    def start(self, timeout_s: float = 30) -> None:
        self.killed = False
        self.starts += 1
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        out.close()
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        if self.ready_url is None:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.proc.returncode}) at start: {self.tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.ready_url, timeout=1, verify=False).status_code < 500:  # noqa: S501
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: {self.ready_url} did not answer in {timeout_s}s")

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        self.killed = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        self.killed = True
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self, n: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@dataclass
class Topology:
    """What runs: ``serve`` alone, or the roles apart."""

    webs: int = 2
    workers: int = 2
    schedulers: int = 1
    serve: bool = False


def write_config(
    path: Path,
    *,
    redis_url: str,
    cluster: bool,
    sim_url: str,
    ca: Path,
    public_url: str,
    sinks_url: str,
    hooks: list[str],
    web_port: int,
    poll_interval_s: float = 5.0,
) -> None:
    routes = path.parent / "routes.yaml"
    # Every alert goes to every sink: each sink is checked against every alert.
    children: list[dict[str, Any]] = [{"receiver": name, "continue": True} for name in hooks]
    children.append({"receiver": "tickets"})
    routes.write_text(yaml.safe_dump({"route": {"receiver": hooks[0], "routes": children}}))
    sinks: list[dict[str, Any]] = [
        {"type": "webhook", "name": name, "url": f"{sinks_url}/hook/{name}", "timeout_s": 10}
        for name in hooks
    ]
    sinks.append(
        {
            "type": "jira",
            "name": "tickets",
            "url": f"{sinks_url}/jira",
            "email": "harness@example.com",
            "api_token": "harness-jira-token",
            "project": PROJECT,
            "resolve_transition": None,
        }
    )
    path.write_text(
        yaml.safe_dump(
            {
                "redis": {"url": redis_url, "cluster": cluster, "connect_retries": 30},
                "web": {
                    "port": web_port,
                    "public_url": public_url,
                    "allow_http": True,
                    "enqueue_budget_ms": 1000,
                },
                # The simulator's throttling is off; the Graph 429 storm is injected as a fault.
                "graph": {
                    "authority_host": sim_url,
                    "graph_url": f"{sim_url}/v1.0",
                    "ca_bundle": str(ca),
                    "rate_limit_per_minute": 100_000,
                    "max_retry_wait_s": 60,
                },
                # Short timeouts so a killed process's work is taken over within the run.
                "worker": {"visibility_timeout_s": 5, "poll_visibility_timeout_s": 5},
                "scheduler": {"lease_s": 6, "heartbeat_s": 2, "reconcile_interval_s": 10},
                "tenants": [
                    {
                        "name": "contoso",
                        "tenant_id": TENANT,
                        "client_id": CLIENT_ID,
                        "client_secret": CLIENT_SECRET,
                        "poll": {
                            "alerts_v2": True,
                            "interval_s": poll_interval_s,
                            "overlap_s": 60,
                            "initial_lookback_s": 60,
                        },
                        "subscriptions": [{"resource": RESOURCE}],
                    }
                ],
                "sinks": sinks,
                "routes_file": "routes.yaml",
                "logging": {"level": "WARNING", "format": "text"},
            }
        )
    )


class Deployment:
    """The simulator plus the receiver's roles, sharing one Redis URL."""

    def __init__(
        self,
        workdir: Path,
        *,
        redis_url: str,
        cluster: bool = False,
        topology: Topology | None = None,
        sinks_url: str,
        hooks: list[str],
    ) -> None:
        self.dir = workdir
        self.topology = topology or Topology()
        self.sim_port = free_port()
        self.sim_url = f"https://127.0.0.1:{self.sim_port}"
        self.ca = workdir / "ca.pem"
        self.web_ports = [
            free_port() for _ in range(1 if self.topology.serve else self.topology.webs)
        ]
        self.redis_url = redis_url
        self.cluster = cluster
        self.sinks_url = sinks_url
        self.hooks = hooks
        self.procs: dict[str, Proc] = {}
        self._watching = threading.Event()
        self._watcher: threading.Thread | None = None
        self.control: ControlClient | None = None

    def config_path(self) -> Path:
        return self.dir / "receiver.yaml"

    def start_simulator(self) -> None:
        sim = Proc(
            "simulator",
            [
                sys.executable,
                "-m",
                "receiver.simulator",
                "--port",
                str(self.sim_port),
                "--tls-dir",
                str(self.dir / "tls"),
                "--ca-out",
                str(self.ca),
                "--no-throttle",
                "--allow-http",
                "--notifier-backoff",
                "0.5",
                "--log-level",
                "warning",
                "--legacy-alerts",
                "live",
            ],  # the harness pushes legacy alerts: serve them
            self.dir / "simulator.log",
            ready_url=f"{self.sim_url}/_sim/health",
        )
        sim.start()
        self.procs["simulator"] = sim
        self.control = ControlClient(self.sim_url, ssl.create_default_context(cafile=self.ca))

    def start_receiver(self, public_url: str) -> None:
        write_config(
            self.config_path(),
            redis_url=self.redis_url,
            cluster=self.cluster,
            sim_url=self.sim_url,
            ca=self.ca,
            public_url=public_url,
            sinks_url=self.sinks_url,
            hooks=self.hooks,
            web_port=self.web_ports[0],
        )
        cli = [sys.executable, "-m", "receiver.cli"]
        config = ["--config", str(self.config_path())]
        t = self.topology
        roles: list[tuple[str, list[str], str | None]] = []
        if t.serve:
            port = self.web_ports[0]
            roles.append(
                (
                    "serve",
                    [*cli, "serve", *config, "--port", str(port)],
                    f"http://127.0.0.1:{port}/readyz",
                )
            )
        else:
            for i, port in enumerate(self.web_ports):
                roles.append(
                    (
                        f"web-{i + 1}",
                        [*cli, "web", *config, "--port", str(port)],
                        f"http://127.0.0.1:{port}/readyz",
                    )
                )
            roles += [
                (f"worker-{i + 1}", [*cli, "worker", *config], None) for i in range(t.workers)
            ]
            roles += [
                (f"scheduler-{i + 1}", [*cli, "scheduler", *config], None)
                for i in range(t.schedulers)
            ]
        for name, args, ready in roles:
            proc = Proc(name, args, self.dir / f"{name}.log", ready_url=ready)
            proc.start()
            self.procs[name] = proc
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def wait_subscription(self, timeout_s: float = 60) -> str:
        assert self.control is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            subs = self.control.subscriptions(TENANT)
            if subs:
                return str(subs[0]["id"])
            time.sleep(0.2)
        logs = "\n".join(f"{p.name}: {p.tail(600)}" for p in self.procs.values())
        raise RuntimeError(f"the receiver created no subscription in {timeout_s}s\n{logs}")

    def _watch(self) -> None:
        while not self._watching.wait(0.5):
            for proc in list(self.procs.values()):
                if proc.killed or proc.proc is None or proc.proc.poll() is None:
                    continue
                proc.unexpected_exits.append(
                    f"{proc.name} exited with {proc.proc.returncode}: {proc.tail(800)}"
                )
                with contextlib.suppress(Exception):
                    proc.start()

    def roles(self, prefix: str) -> list[Proc]:
        return [p for n, p in self.procs.items() if n.startswith(prefix)]

    def rss(self) -> dict[str, int]:
        return {name: rss_kb(p.pid) for name, p in self.procs.items() if p.alive()}

    def stop(self) -> None:
        self._watching.set()
        if self._watcher is not None:
            self._watcher.join(5)
        for name, proc in reversed(list(self.procs.items())):
            if name != "simulator":
                proc.stop()
        if self.control is not None:
            self.control.close()
        if "simulator" in self.procs:
            self.procs["simulator"].stop()
