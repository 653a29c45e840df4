"""Benchmark: reconcile 2,000 subscriptions over 200 tenants against the simulator.

Runs the simulator (throttling off) and the real web app (`receiver web`, answering Graph's
validation handshakes, with a private Redis) as processes, adds 200 tenants through the
simulator's control API, and gives each 10 wanted subscriptions. Then, in this process, the
subscription supervisor (MSAL, the shared httpx client, tenants worked on concurrently):

- cold reconcile: every subscription is created (two handshakes each, registry written);
- warm reconcile: nothing to do (one paged list per tenant);
- baseline, in the same run: as many plain GET /subscriptions/{id} as there are
  subscriptions, with the same client and the same concurrency.

    .venv/bin/python -m tests.benchmarks.subscriptions [--tenants 200] [--per-tenant 10]

Last line: reconcile_s=<seconds of the cold reconcile>.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from receiver.config.loader import load_settings
from receiver.graph.client import client_for
from receiver.graph.metrics import SupervisorMetrics
from receiver.graph.subscriptions import Supervisor
from receiver.store.client import connect
from receiver.store.keys import Keys
from receiver.store.lease import Lease
from tests.fixtures.deploy import (
    Proc,
    Simulator,
    local_web,
    receiver_config,
    role_command,
    simulator_tenants,
    write_config,
)
from tests.fixtures.redis_server import free_port, private_redis


def _config(
    redis_url: str,
    web_port: int,
    sim: Simulator,
    tenants: list[dict[str, Any]],
    per_tenant: int,
    concurrency: int,
) -> dict[str, Any]:
    subscriptions = [
        {
            "resource": f"security/alerts?$filter=vendorInformation/provider eq 'Provider{i}'",
            "change_types": ["created", "updated"],
        }
        for i in range(per_tenant)
    ]
    return receiver_config(
        redis_url,
        sim,
        redis={"key_prefix": "{bench}"},
        graph={"tenant_concurrency": concurrency},
        tenants=simulator_tenants(tenants, "tenant-{:03d}", subscriptions=subscriptions),
        web=local_web(web_port, host="127.0.0.1"),
    )


async def _measure(config: Path, expected: int) -> tuple[float, int, float, int, float, int]:
    settings = load_settings(config, environ={})
    redis = await connect(settings.redis)
    graph = client_for(settings, redis)
    lease = Lease(redis, Keys(settings.redis.key_prefix), 300)
    try:
        if not await lease.acquire():
            raise RuntimeError("could not take the scheduler lease")
        supervisor = Supervisor(settings, graph, redis, guard=lease, metrics=SupervisorMetrics())
        started, calls = time.perf_counter(), graph.calls
        cold = await supervisor.reconcile()
        cold_s, cold_calls = time.perf_counter() - started, graph.calls - calls
        if cold.errors or cold.created != expected:
            raise RuntimeError(f"cold reconcile: {cold.summary()}; {cold.failures[:3]}")
        started, calls = time.perf_counter(), graph.calls
        warm = await supervisor.reconcile()
        warm_s, warm_calls = time.perf_counter() - started, graph.calls - calls
        if warm.errors or warm.unchanged != expected:
            raise RuntimeError(f"warm reconcile: {warm.summary()}")
        records = [
            r
            for t in settings.tenants
            for r in (await supervisor._tenant_records(t.tenant_id)).values()
        ]
        gate = asyncio.Semaphore(settings.graph.tenant_concurrency)

        async def get(tenant_id: str, sid: str) -> None:
            async with gate:
                await graph.get(tenant_id, f"subscriptions/{sid}")

        started, calls = time.perf_counter(), graph.calls
        await asyncio.gather(*(get(r.tenant_id, r.subscription_id) for r in records))
        base_s, base_calls = time.perf_counter() - started, graph.calls - calls
        await lease.release()
        return cold_s, cold_calls, warm_s, warm_calls, base_s, base_calls
    finally:
        await graph.aclose()
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--per-tenant", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32, help="tenants at once")
    args = parser.parse_args(argv)
    total = args.tenants * args.per_tenant

    web_port = free_port()
    with tempfile.TemporaryDirectory(prefix="subs-bench-") as tmp, private_redis() as redis:
        sim = Simulator(Path(tmp))
        with sim.proc("--no-throttle", "--allow-http", "--legacy-alerts", "live"):
            with httpx.Client(verify=sim.ca, trust_env=False, timeout=60) as control:
                answer = control.post(
                    f"{sim.url}/_sim/tenants", json={"count": args.tenants, "credential": "secret"}
                )
                answer.raise_for_status()
                tenants = answer.json()["tenants"]
            config = write_config(
                Path(tmp) / "receiver.yaml",
                _config(redis.url, web_port, sim, tenants, args.per_tenant, args.concurrency),
            )
            web = role_command("web", config)
            with Proc("web", web, Path(tmp) / "web.log", f"http://127.0.0.1:{web_port}/healthz"):
                cold_s, cold_calls, warm_s, warm_calls, base_s, base_calls = asyncio.run(
                    _measure(config, total)
                )
    print(f"{total} subscriptions over {args.tenants} tenants, {args.concurrency} tenants at once")
    print(
        f"cold reconcile (create all): {cold_s:.2f} s, {cold_calls / total:.3f} Graph calls "
        f"per subscription ({cold_calls} calls, tokens not counted)"
    )
    print(
        f"warm reconcile (nothing to do): {warm_s:.2f} s, {warm_calls / total:.3f} Graph "
        f"calls per subscription ({warm_calls} calls)"
    )
    print(f"baseline: {base_calls} plain GET /subscriptions/{{id}}: {base_s:.2f} s")
    print(f"reconcile_s={cold_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
