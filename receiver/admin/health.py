"""The deployment's health, read from Redis: processes, the scheduler lease, subscriptions and
their expiry, the backlog of every stage, sink health and dead letters.

One gatherer for `receiver status` (text) and the status page (HTML, JSON), so both always
say the same thing. It reads only Redis; no secret (clientState, sink URLs) is part of it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import Redis

from receiver import clock
from receiver.config.settings import Settings
from receiver.store import registry
from receiver.store.keys import Keys

__all__ = [
    "EXPIRING_S",
    "Health",
    "Process",
    "SilentSubscription",
    "SinkHealth",
    "Stage",
    "Subscription",
    "TenantCheck",
    "gather",
]

EXPIRING_S = 24 * 3600  # a subscription with less left than this is flagged
BACKED_UP_S = 300  # a stage whose oldest waiting entry is older than this is flagged


@dataclass(frozen=True, slots=True)
class Process:
    role: str
    instance: str
    stream: str
    seen_s_ago: float


@dataclass(frozen=True, slots=True)
class Subscription:
    tenant: str
    resource: str
    subscription_id: str
    expires_in_s: float

    @property
    def state(self) -> str:
        if self.expires_in_s <= 0:
            return "EXPIRED"
        return "expiring" if self.expires_in_s < EXPIRING_S else "ok"


@dataclass(frozen=True, slots=True)
class SilentSubscription:
    """A subscription that delivered nothing while the poller found changes in its tenant."""

    tenant: str
    resource: str
    subscription_id: str
    silent_s: float
    last_push_s_ago: float | None


@dataclass(frozen=True, slots=True)
class Stage:
    stream: str  # the short name: notifications, alerts, sink:<name>
    stage: str  # the consumer group: fetch, route, deliver
    unread: int
    pending: int
    delayed: int
    oldest_s: float | None  # age of the oldest entry still waiting in the stream

    @property
    def waiting(self) -> int:
        return self.unread + self.pending + self.delayed


@dataclass(frozen=True, slots=True)
class SinkHealth:
    name: str
    type: str
    queued: int
    retrying: int
    dead_letters: int
    oldest_s: float | None

    @property
    def problems(self) -> list[str]:
        out = []
        if self.retrying:
            out.append(f"{self.retrying} waiting for a retry")
        if self.oldest_s is not None and self.oldest_s > BACKED_UP_S:
            out.append(f"backed up {self.oldest_s / 60:.0f} min")
        if self.dead_letters:
            out.append(f"{self.dead_letters} dead-lettered")
        return out

    @property
    def state(self) -> str:
        return "ok" if not self.problems else "; ".join(self.problems)


@dataclass(frozen=True, slots=True)
class TenantCheck:
    """A tenant's last `receiver tenants check` (by the command, or at a role's start)."""

    tenant: str
    tenant_id: str
    ok: bool
    checked_s_ago: float
    source: str
    failures: list[str]  # "check: detail. Fix: ..." per failed verdict


@dataclass(frozen=True, slots=True)
class Health:
    at: float
    processes: list[Process]
    leader: str | None
    subscriptions: list[Subscription]
    missing_subscriptions: int
    stages: list[Stage]
    sinks: list[SinkHealth]
    poisoned: int
    problems: list[str] = field(default_factory=list)
    tenant_checks: list[TenantCheck] = field(default_factory=list)
    silent: list[SilentSubscription] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["healthy"] = self.healthy
        for sub, raw in zip(self.subscriptions, out["subscriptions"], strict=True):
            raw["state"] = sub.state
        for sink, raw in zip(self.sinks, out["sinks"], strict=True):
            raw["state"] = sink.state
        return out


async def _processes(redis: Redis, prefix: str, now: float) -> list[Process]:
    out = []
    async for key in redis.scan_iter(match=f"{prefix}:health:*", count=500):
        raw = await redis.get(key)
        if not raw:
            continue
        try:
            data = json.loads(raw)
            role, instance = key.decode().split(":health:", 1)[1].split(":", 1)
        except (ValueError, UnicodeDecodeError):
            continue
        out.append(
            Process(role, instance, str(data.get("stream", "")), now - float(data.get("at", now)))
        )
    return sorted(out, key=lambda p: (p.role, p.instance))


async def _stage(
    redis: Redis, stream: str, group: str, delayed_key: str, short: str, now: float
) -> Stage:
    unread = pending = 0
    try:
        groups: Any = await redis.xinfo_groups(stream)
    except Exception:  # no stream yet
        groups = []
    for g in groups:
        if g["name"].decode() == group:
            unread, pending = int(g.get("lag") or 0), int(g.get("pending") or 0)
    # Handled entries are deleted, so the first entry left is the oldest still waiting.
    first: Any = await redis.xrange(stream, count=1)
    oldest = now - int(first[0][0].decode().split("-")[0]) / 1000 if first else None
    return Stage(
        short,
        group,
        unread,
        pending,
        int(await redis.zcard(delayed_key)),
        None if oldest is None else max(0.0, oldest),
    )


async def _tenant_checks(
    redis: Redis, keys: Keys, settings: Settings, now: float
) -> list[TenantCheck]:
    raw: Any = await redis.hgetall(keys.tenant_checks)
    out = []
    for tenant in settings.tenants:  # in the settings' order; tenants since removed: ignored
        value = raw.get(tenant.tenant_id.encode())
        if value is None:
            continue
        try:
            data = json.loads(value)
            failures = [
                f"{v['check']}: {v['detail']}. Fix: {v['fix']}"
                for v in data.get("verdicts", [])
                if v.get("status") == "fail"
            ]
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        out.append(
            TenantCheck(
                tenant.name,
                tenant.tenant_id,
                not failures,
                now - float(data.get("at") or now),
                str(data.get("source", "")),
                failures,
            )
        )
    return out


async def gather(settings: Settings, redis: Redis) -> Health:
    """The health summary of the deployment ``settings`` describe."""
    prefix = settings.redis.key_prefix
    keys = Keys(prefix)
    now = time.time()
    problems: list[str] = []
    processes = await _processes(redis, prefix, now)
    if not processes:
        problems.append("no worker is running")
    raw_leader: Any = await redis.get(keys.leader)
    leader = raw_leader.decode() if isinstance(raw_leader, bytes) else raw_leader
    if not leader:
        problems.append("no scheduler holds the lease")

    _, records = await registry.load_all(redis, keys)
    today = clock.now().timestamp()  # expiry is Graph's date: the calendar clock
    names = {t.tenant_id: t.name for t in settings.tenants}
    subscriptions = [
        Subscription(
            names.get(r.tenant_id, r.tenant_id), r.resource, r.subscription_id, r.expires_at - today
        )
        for r in sorted(records.values(), key=lambda r: r.expires_at)
    ]
    expired = sum(1 for s in subscriptions if s.expires_in_s <= 0)
    if expired:
        problems.append(f"{expired} subscription(s) expired")
    push, poll = await registry.seen(redis, keys)
    silent = [
        SilentSubscription(
            names.get(s.record.tenant_id, s.record.tenant_id),
            s.record.resource,
            s.record.subscription_id,
            s.silent_s,
            None if s.last_push_s is None else now - s.last_push_s,
        )
        for s in registry.silent(
            records, push, poll, lambda r: settings.silent_after_s(r.tenant_id, r.resource)
        )
    ]
    for s in silent:
        problems.append(
            f"subscription on {s.resource} ({s.tenant}) delivered nothing for "
            f"{s.silent_s / 60:.0f} min while polling found changes"
        )
    wanted = sum(len(t.subscriptions) for t in settings.tenants)
    missing = max(0, wanted - len(records))
    if missing:
        problems.append(f"{missing} wanted subscription(s) missing")

    short = prefix + ":stream:"
    stages = [
        await _stage(redis, stream, group, keys.delayed(stream), stream.removeprefix(short), now)
        for stream, group in [
            (keys.notifications, "fetch"),
            (keys.alerts, "route"),
            *((keys.sink(s.name), "deliver") for s in settings.sinks),
        ]
    ]
    sinks = []
    for sink, stage in zip(settings.sinks, stages[2:], strict=True):
        sinks.append(
            SinkHealth(
                sink.name,
                sink.type,
                stage.waiting,
                stage.delayed,
                int(await redis.xlen(keys.dlq(sink.name))),
                stage.oldest_s,
            )
        )
    poisoned = int(await redis.xlen(keys.poison))
    checks = await _tenant_checks(redis, keys, settings, now)
    problems += [f"tenant {c.tenant} cannot work: {c.failures[0]}" for c in checks if not c.ok]
    return Health(
        now,
        processes,
        leader,
        subscriptions,
        missing,
        stages,
        sinks,
        poisoned,
        problems,
        checks,
        silent,
    )
