"""The deployment under test: the simulator and the receiver's roles as real processes.

Each role is ``python -m receiver.cli <role>`` with its own log file (tests.fixtures.deploy
runs them). A watcher notes any process that exits without the harness killing it, and
restarts it (as Kubernetes would): the report lists those exits, so a role that dies on a
fault is visible, not hidden.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fixtures.deploy import (
    DEMO_RESOURCE,
    DEMO_TENANT,
    Proc,
    Processes,
    Simulator,
    demo_tenant,
    receiver_config,
    role_command,
    webhook,
    write_config,
)
from tests.fixtures.redis_server import free_port
from tests.fixtures.simulator import ControlClient

TENANT = DEMO_TENANT
PROJECT = "SOC"


@dataclass
class Topology:
    """What runs: ``serve`` alone, or the roles apart."""

    webs: int = 2
    workers: int = 2
    schedulers: int = 1
    serve: bool = False


def _routes(hooks: list[str]) -> dict[str, Any]:
    """Every alert goes to every sink: each sink is checked against every alert."""
    children: list[dict[str, Any]] = [{"receiver": name, "continue": True} for name in hooks]
    children.append({"receiver": "tickets"})
    return {"route": {"receiver": hooks[0], "routes": children}}


def _config(
    *,
    redis_url: str,
    cluster: bool,
    sim: Simulator,
    public_url: str,
    sinks_url: str,
    hooks: list[str],
    web_port: int,
    poll_interval_s: float = 5.0,
) -> dict[str, Any]:
    sinks = [webhook(name, f"{sinks_url}/hook/{name}", timeout_s=10) for name in hooks]
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
    poll = {
        "alerts_v2": True,
        "interval_s": poll_interval_s,
        "overlap_s": 60,
        "initial_lookback_s": 60,
    }
    return receiver_config(
        redis_url,
        sim,
        redis={"cluster": cluster, "connect_retries": 30},
        web={
            "port": web_port,
            "public_url": public_url,
            "allow_http": True,
            "enqueue_budget_ms": 1000,
        },
        # The simulator's throttling is off; the Graph 429 storm is injected as a fault.
        graph={"rate_limit_per_minute": 100_000, "max_retry_wait_s": 60},
        # Short timeouts so a killed process's work is taken over within the run.
        worker={"visibility_timeout_s": 5, "poll_visibility_timeout_s": 5},
        scheduler={"lease_s": 6, "heartbeat_s": 2, "reconcile_interval_s": 10},
        tenants=[demo_tenant(poll=poll, subscriptions=[{"resource": DEMO_RESOURCE}])],
        sinks=sinks,
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
        self.sim = Simulator(workdir)
        self.web_ports = [
            free_port() for _ in range(1 if self.topology.serve else self.topology.webs)
        ]
        self.redis_url = redis_url
        self.cluster = cluster
        self.sinks_url = sinks_url
        self.hooks = hooks
        self.processes = Processes(workdir, env={"PYTHONUNBUFFERED": "1"})
        self.procs: dict[str, Proc] = self.processes.procs
        self._watching = threading.Event()
        self._watcher: threading.Thread | None = None
        self.control: ControlClient | None = None

    def config_path(self) -> Path:
        return self.dir / "receiver.yaml"

    def start_simulator(self) -> None:
        # The harness pushes legacy alerts: serve them.
        options = ("--no-throttle", "--allow-http", "--notifier-backoff", "0.5")
        self.processes.add(self.sim.proc(*options, "--legacy-alerts", "live"))
        self.control = ControlClient(self.sim.url, ssl.create_default_context(cafile=self.sim.ca))

    def _roles(self) -> list[tuple[str, str, int | None]]:
        """(name, role, web port) of each receiver process of the topology."""
        t = self.topology
        if t.serve:
            return [("serve", "serve", self.web_ports[0])]
        return [
            *((f"web-{i + 1}", "web", port) for i, port in enumerate(self.web_ports)),
            *((f"worker-{i + 1}", "worker", None) for i in range(t.workers)),
            *((f"scheduler-{i + 1}", "scheduler", None) for i in range(t.schedulers)),
        ]

    def start_receiver(self, public_url: str) -> None:
        config = _config(
            redis_url=self.redis_url,
            cluster=self.cluster,
            sim=self.sim,
            public_url=public_url,
            sinks_url=self.sinks_url,
            hooks=self.hooks,
            web_port=self.web_ports[0],
        )
        write_config(self.config_path(), config, routes=_routes(self.hooks))
        for name, role, port in self._roles():
            ready = f"http://127.0.0.1:{port}/readyz" if port is not None else None
            args = role_command(role, self.config_path(), port=port)
            self.processes.start(name, args, ready_url=ready)
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

    def rss(self) -> dict[str, int]:
        return {name: p.rss_kb() for name, p in self.procs.items() if p.alive()}

    def stop(self) -> None:
        self._watching.set()
        if self._watcher is not None:
            self._watcher.join(5)
        if self.control is not None:
            self.control.close()
        self.processes.stop()
