"""`receiver simulator` stops promptly on SIGTERM, even while a client holds an idle
keep-alive TLS connection (uvicorn used to wait for it: "Waiting for connections to close"),
and still lets a request in flight finish."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from receiver.simulator.state import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID
from tests.fixtures.web import free_port

REPO = Path(__file__).resolve().parents[2]
EXIT_BOUND_S = 5.0  # it used to wait forever; a prompt stop takes well under a second


class Running:
    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.base = f"https://127.0.0.1:{self.port}"
        self.ca = tmp_path / "ca.pem"
        self.log = (tmp_path / "simulator.log").open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "receiver.simulator",
                "--port",
                str(self.port),
                "--tls-dir",
                str(tmp_path / "tls"),
                "--ca-out",
                str(self.ca),
                "--no-throttle",
                "--log-level",
                "info",
            ],
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def client(self) -> httpx.Client:
        """A client whose pool keeps its connection open (HTTP/1.1 keep-alive)."""
        return httpx.Client(
            base_url=self.base,
            trust_env=False,
            timeout=10.0,
            verify=ssl.create_default_context(cafile=str(self.ca)),
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            if self.ca.exists():
                try:
                    with self.client() as client:
                        if client.get("/_sim/health").status_code == 200:
                            return
                except httpx.TransportError:
                    pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the simulator did not start")
            time.sleep(0.05)

    def stop_and_time(self) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=EXIT_BOUND_S)  # TimeoutExpired fails the test
        return code, time.monotonic() - started


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    sim = Running(tmp_path)
    try:
        yield sim
    finally:
        if sim.proc.poll() is None:
            sim.proc.kill()
            sim.proc.wait()
        sim.log.close()


def test_sigterm_with_an_idle_keep_alive_connection(running: Running, tmp_path: Path) -> None:
    running.wait_ready()
    with running.client() as client:
        assert client.get("/_sim/health").status_code == 200  # the pooled connection, idle now
        code, took = running.stop_and_time()
    assert code in (0, -signal.SIGTERM)
    assert took < EXIT_BOUND_S
    log = (tmp_path / "simulator.log").read_text()
    assert "Shutting down" in log and "Finished server process" in log


def test_a_request_in_flight_finishes_before_the_exit(running: Running) -> None:
    running.wait_ready()
    with running.client() as control, running.client() as graph:
        token = control.post(
            f"/{DEMO_TENANT_ID}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": DEMO_CLIENT_ID,
                "client_secret": DEMO_CLIENT_SECRET,
                "scope": "https://graph.microsoft.com/.default",
            },
        ).json()["access_token"]
        assert (
            control.post("/_sim/faults", json={"kind": "graph_latency", "ms": 1000}).status_code
            == 201
        )
        answers: list[httpx.Response] = []
        request = threading.Thread(
            target=lambda: answers.append(
                graph.get("/v1.0/security/alerts_v2", headers={"Authorization": f"Bearer {token}"})
            )
        )
        request.start()
        deadline = time.monotonic() + 10
        while control.get("/_sim/counters").json().get("graph.security") != 1:
            assert time.monotonic() < deadline, "the request never reached the simulator"
            time.sleep(0.01)
        code, took = running.stop_and_time()
        request.join(timeout=10)
    assert [a.status_code for a in answers] == [200]  # answered, not cut off
    assert code in (0, -signal.SIGTERM)
    assert took < EXIT_BOUND_S
