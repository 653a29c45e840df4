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

from tests.benchmarks._common import wrk
from tests.fixtures.deploy import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT, Simulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--alerts", type=int, default=200)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="sim-bench-") as tmp:
        sim = Simulator(Path(tmp))
        base = sim.url
        with (
            sim.proc("--no-throttle", "--legacy-alerts", "live"),
            httpx.Client(verify=sim.ca, trust_env=False, timeout=30) as client,
        ):
            token = client.post(
                f"{base}/{DEMO_TENANT}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": DEMO_CLIENT_ID,
                    "client_secret": DEMO_CLIENT_SECRET,
                    "scope": "https://graph.microsoft.com/.default",
                },
            ).json()["access_token"]
            ids = client.post(
                f"{base}/_sim/alerts", json={"tenantId": DEMO_TENANT, "count": args.alerts}
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
                f"{base}/{DEMO_TENANT}/v2.0/.well-known/openid-configuration",
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
