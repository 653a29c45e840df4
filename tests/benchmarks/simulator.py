"""Benchmark: how many legacy alert GETs a second the simulator serves over HTTPS.

Runs `python -m receiver.simulator` (throttling off) in its own process, gets a token,
creates 200 alerts, then loads GET /v1.0/security/alerts/{id} (cycling through the ids, bearer
token checked on every request) with wrk. The baseline, measured in the same run with the same
load, is the trivial OpenID discovery document. Later benchmarks read this figure to know the
simulator is not their bottleneck.

    .venv/bin/python -m tests.benchmarks.simulator [--duration 5] [--connections 32]

Last line: simulator_alert_gets_per_s=<value>.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import httpx

from tests.benchmarks._common import free_port, process, simulator_command, wrk

TENANT = "5f1c2b3a-7d4e-4a6b-9c8d-0e1f2a3b4c5d"  # the simulator's demo tenant
CLIENT_ID = "0a1b2c3d-4e5f-4a7b-8c9d-aebfc0d1e2f3"
CLIENT_SECRET = "sim-demo-secret~not-a-real-credential"  # a simulator demo credential


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--alerts", type=int, default=200)
    args = parser.parse_args(argv)

    port = free_port()
    base = f"https://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="sim-bench-") as tmp:
        ca = str(Path(tmp) / "ca.pem")
        command = simulator_command(port, tmp, ca, "--no-throttle", "--legacy-alerts", "live")
        with (
            process(command, f"{base}/_sim/health"),
            httpx.Client(verify=ca, trust_env=False, timeout=30) as client,
        ):
            token = client.post(
                f"{base}/{TENANT}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "scope": "https://graph.microsoft.com/.default",
                },
            ).json()["access_token"]
            ids = client.post(
                f"{base}/_sim/alerts", json={"tenantId": TENANT, "count": args.alerts}
            ).json()["ids"]
            # the GETs must succeed, not just answer
            probe = client.get(
                f"{base}/v1.0/security/alerts/{ids[0]}",
                headers={"Authorization": f"Bearer {token}"},
            )
            if probe.status_code != 200:
                print(f"error: alert GET answered {probe.status_code}", file=sys.stderr)
                return 1
            auth = {"Authorization": f"Bearer {token}"}
            baseline = wrk(
                f"{base}/{TENANT}/v2.0/.well-known/openid-configuration",
                method="GET",
                connections=args.connections,
                duration_s=args.duration,
            )
            alerts = wrk(
                f"{base}/v1.0/security/alerts/{ids[0]}",
                method="GET",
                headers=auth,
                paths=[f"/v1.0/security/alerts/{i}" for i in ids],
                connections=args.connections,
                duration_s=args.duration,
            )
    for name, r in (("openid-configuration (baseline)", baseline), ("alert GET", alerts)):
        print(
            f"{name}: {r.rps:.0f} requests/s, p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms, "
            f"errors {r.errors}"
        )
    if alerts.errors or baseline.errors:
        print("error: some requests failed", file=sys.stderr)
        return 1
    print(f"alert_gets_to_baseline_ratio={alerts.rps / baseline.rps:.3f}")
    print(f"simulator_alert_gets_per_s={alerts.rps:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
