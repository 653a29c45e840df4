"""The README's "Connect your tenant" guide, followed to the letter against the simulator, so it
cannot rot: every fenced shell command of the section runs (openssl makes the certificate, the
simulator's app registration gets it and the permissions the table lists for the configured
features, the YAML blocks become the files), with only the simulator's URLs put in place of
Microsoft's and of the public host."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

from tests.fixtures.simulator import SimulatorHandle
from tests.fixtures.web import free_port

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = "https://receiver.contoso.com"


def _section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Connect your tenant\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _blocks(section: str, language: str) -> list[list[str]]:
    return [
        block.strip().splitlines()
        for block in re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)
    ]


def _table_permissions(section: str, feature_prefix: str) -> list[str]:
    rows = [line for line in section.splitlines() if line.startswith(f"| {feature_prefix}")]
    return [re.findall(r"`([A-Za-z]+\.[A-Za-z.]+)`", row.split("|")[2])[0] for row in rows]


def _run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The guide's commands are plain sh (pipes); run them as a user would.
    return subprocess.run(
        ["sh", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_connect_your_tenant_guide_runs_end_to_end(
    make_simulator: Callable[..., SimulatorHandle], redis_url: str, tmp_path: Path
) -> None:
    section = _section()
    shell = _blocks(section, "sh")
    config_block, routes_block = _blocks(section, "yaml")
    config: dict[str, Any] = yaml.safe_load("\n".join(config_block))
    [tenant] = config["tenants"]
    ran: list[str] = []

    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    port = free_port()
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",
            "REDIS_URL": redis_url,
            "RECEIVER_REDIS__KEY_PREFIX": "{readme}",
            "RECEIVER_WEB__PORT": str(port),
            "RECEIVER_WEB__ALLOW_HTTP": "true",
            "RECEIVER_WEB__PUBLIC_URL": f"http://127.0.0.1:{port}",
            "RECEIVER_LOGGING__FORMAT": "text",
        }
    )

    # Step 4: the certificate and its thumbprint, by the guide's openssl commands.
    make_cert, thumbprint_cmd = shell[0]
    assert _run(make_cert, tmp_path, env).returncode == 0
    ran.append(make_cert)
    printed = _run(thumbprint_cmd, tmp_path, env)
    ran.append(thumbprint_cmd)
    thumbprint = printed.stdout.strip()
    assert re.fullmatch(r"[0-9A-F]{40}", thumbprint), printed

    # Steps 1-3 and the upload: the simulator's app registration with the IDs of the guide, its
    # certificate, and exactly the permissions the table gives for what the config turns on.
    roles = _table_permissions(section, "poll")
    assert roles == ["SecurityAlert.Read.All", "SecurityIncident.Read.All"]
    assert tenant["poll"] == {"alerts_v2": True, "incidents": True}
    sim = make_simulator(roles=())
    sim.control.add_tenant(
        {
            "tenantId": tenant["tenant_id"],
            "apps": [
                {
                    "clientId": tenant["client_id"],
                    "roles": roles,
                    "certificatePem": (tmp_path / "graph-app.crt.pem").read_text(),
                }
            ],
        }
    )
    env.update(
        {
            "RECEIVER_GRAPH__AUTHORITY_HOST": sim.base_url,
            "RECEIVER_GRAPH__GRAPH_URL": sim.graph_url,
            "RECEIVER_GRAPH__CA_BUNDLE": str(sim.ca_path),
        }
    )
    sim.control.create_alerts(tenant["tenant_id"], 2, kind="v2")

    # Step 5: the files, as printed (the thumbprint is the one just computed).
    text = "\n".join(config_block)
    assert "0123456789ABCDEF0123456789ABCDEF01234567" in text
    (tmp_path / "receiver.yaml").write_text(
        text.replace("0123456789ABCDEF0123456789ABCDEF01234567", thumbprint)
    )
    (tmp_path / "routes.yaml").write_text("\n".join(routes_block) + "\n")

    # Step 6: check, then run.
    config_check, tenants_check, serve = shell[1]
    done = _run(config_check, tmp_path, env)
    assert done.returncode == 0 and done.stdout.startswith("receiver.yaml: OK"), done
    ran.append(config_check)
    done = _run(tenants_check, tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "token obtained with a certificate" in done.stdout
    assert done.stdout.strip().endswith("1 of 1 tenant(s) ready")
    ran.append(tenants_check)

    assert serve.startswith("receiver serve ")
    process = subprocess.Popen(
        shlex.split(serve),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ran.append(serve)
    try:
        client = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 60
        recorded: dict[str, Any] = {}
        while time.monotonic() < deadline and recorded.get("source") != "serve":
            assert process.poll() is None, process.communicate()
            raw = client.hget("{readme}:tenantchecks", tenant["tenant_id"])
            recorded = json.loads(raw) if raw else {}
            time.sleep(0.1)
        assert recorded["source"] == "serve" and recorded["ok"] is True, recorded
        with httpx.Client(trust_env=False) as http:
            while time.monotonic() < deadline:
                try:
                    if http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)

        # Push: the handshake command, at the receiver's address instead of the public one.
        [curl] = shell[2]
        assert PUBLIC in curl
        done = _run(curl.replace(PUBLIC, f"http://127.0.0.1:{port}"), tmp_path, env)
        assert done.returncode == 0 and done.stdout == "hello", done
        ran.append(curl)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert "cannot work" not in err
    assert ran == [line for block in shell for line in block]  # every command of the guide
