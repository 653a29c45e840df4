"""The Secure Score watch (scheduled, leader only): per tenant, read the daily scores and the
control profiles, analyse them (receiver.securescore.watch) and put each finding on the
``alerts`` stream as a ``secure_score`` envelope, where the route stage takes it like an alert.

Exactly once: the tenant's state in Redis (the last score date evaluated and the last digest
week) and the XADDs of the new events change together in one script, and only if the state is
still what the evaluation started from (compare-and-set). A second leader, a re-run or a
restart re-reads the state and finds nothing new to send; one that lost the race evaluates
again from the state the winner left. Graph is only read, so a failed run just tries again.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, cast

from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.asyncio import Redis

from receiver.config.settings import WEEKDAYS, SecureScoreSettings, Settings, TenantSettings
from receiver.envelope import Envelope
from receiver.securescore import events
from receiver.securescore.watch import (
    Evaluation,
    Policy,
    Snapshot,
    evaluate,
    parse_profiles,
    parse_scores,
)
from receiver.store.keys import Keys

log = logging.getLogger(__name__)

SCORES_PATH = "security/secureScores"
PROFILES_PATH = "security/secureScoreControlProfiles"
ALERTS_STREAM_MAXLEN = 1_000_000  # the fetch stage's guard on the same stream
CAS_ATTEMPTS = 3

# KEYS[1] the tenant's state hash, KEYS[2] the alerts stream.
# ARGV[1] expected `evaluated`, ARGV[2] expected `digest_week` ('' for none), ARGV[3] new
# `evaluated`, ARGV[4] new `digest_week`, ARGV[5] stream MAXLEN guard, ARGV[6..] envelopes.
# Returns the number of events queued, or -1 when the state moved (nothing written).
_COMMIT = """
local evaluated = redis.call('HGET', KEYS[1], 'evaluated') or ''
local week = redis.call('HGET', KEYS[1], 'digest_week') or ''
if evaluated ~= ARGV[1] or week ~= ARGV[2] then
  return -1
end
redis.call('HSET', KEYS[1], 'evaluated', ARGV[3], 'digest_week', ARGV[4])
for i = 6, #ARGV do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'e', ARGV[i], 'first', '1',
             'changes', '')
end
return #ARGV - 5
"""


class ScoreSource(Protocol):
    """What the job needs of the Graph client."""

    async def get(
        self, tenant_id: str, path: str, params: dict[str, str] | None = None
    ) -> dict[str, Any]: ...


def policy_of(config: SecureScoreSettings) -> Policy:
    return Policy(
        drop_threshold=config.drop_threshold,
        control_threshold=config.control_threshold,
        digest_weekday=WEEKDAYS.index(config.digest_weekday) if config.digest_weekday else None,
        top_actions=config.top_actions,
        history_days=config.history_days,
        initial_lookback_days=config.initial_lookback_days,
    )


async def read_items(
    graph: ScoreSource,
    tenant_id: str,
    path: str,
    params: dict[str, str] | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """A collection's items (following ``@odata.nextLink``), at most ``limit``."""
    out: list[dict[str, Any]] = []
    page = await graph.get(tenant_id, path, params)
    while True:
        for item in page.get("value") or []:
            if isinstance(item, dict):
                out.append(item)
                if limit is not None and len(out) >= limit:
                    return out
        link = page.get("@odata.nextLink")
        if not isinstance(link, str) or not link:
            return out
        page = await graph.get(tenant_id, link)


async def read_scores(graph: ScoreSource, tenant_id: str, days: int) -> list[Snapshot]:
    """The last ``days`` daily scores, oldest first (Graph returns them newest first)."""
    items = await read_items(graph, tenant_id, SCORES_PATH, {"$top": str(days)}, limit=days)
    return parse_scores(items)


class SecureScoreJob:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: Settings,
        graph: ScoreSource,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.graph = graph
        self.registry = registry
        self._commit = redis.register_script(_COMMIT)
        self.events = Counter(
            "receiver_securescore_events",
            "Secure Score events queued",
            ["reason"],
            registry=registry,
        )
        self.failures = Counter(
            "receiver_securescore_failures",
            "Secure Score checks that failed (retried at the next run)",
            registry=registry,
        )
        self.score = Gauge(
            "receiver_securescore_points",
            "The newest Secure Score per tenant",
            ["tenant", "kind"],
            registry=registry,
        )

    @property
    def tenants(self) -> list[TenantSettings]:
        return [t for t in self.settings.tenants if t.secure_score.enabled]

    @property
    def interval_s(self) -> float:
        """The job's period: the shortest of the watched tenants' intervals."""
        return min((t.secure_score.interval_s for t in self.tenants), default=0.0)

    async def run_all(self) -> int:
        """Check every watched tenant; one failing does not stop the others (it is logged and
        checked again at the next run, from the same state). Returns the events queued."""
        total = 0
        for tenant in self.tenants:
            try:
                total += len(await self.run_tenant(tenant))
            except Exception as exc:
                self.failures.inc()
                log.warning(
                    "secure score check failed: %s", exc, extra={"tenant_id": tenant.tenant_id}
                )
        return total

    async def run_tenant(self, tenant: TenantSettings) -> list[Envelope]:
        """Fetch, analyse, queue what is new; the envelopes queued by this call."""
        config = tenant.secure_score
        policy = policy_of(config)
        days = max(config.history_days, config.initial_lookback_days + 1)
        snapshots = await read_scores(self.graph, tenant.tenant_id, days)
        if not snapshots:
            log.info("no secure score yet", extra={"tenant_id": tenant.tenant_id})
            return []
        profiles = parse_profiles(await read_items(self.graph, tenant.tenant_id, PROFILES_PATH))
        newest = snapshots[-1]
        self.score.labels(tenant.name, "current").set(newest.current)
        self.score.labels(tenant.name, "max").set(newest.maximum)
        key = self.keys.secure_score(tenant.tenant_id)
        for _ in range(CAS_ATTEMPTS):
            evaluated, week = await self._state(key)
            result = evaluate(snapshots, profiles, policy, evaluated=evaluated, digest_week=week)
            if (result.evaluated, result.digest_week) == (evaluated, week):
                return []  # nothing new since the last run
            queued = await self._queue(key, tenant, result, evaluated, week)
            if queued is not None:
                return queued
        log.info(
            "secure score: another runner kept changing the state; next run retries",
            extra={"tenant_id": tenant.tenant_id},
        )
        return []

    async def _state(self, key: str) -> tuple[str, str]:
        raw = cast("list[bytes | None]", await self.redis.hmget(key, ["evaluated", "digest_week"]))
        return tuple(v.decode() if v else "" for v in raw)  # type: ignore[return-value]

    async def _queue(
        self, key: str, tenant: TenantSettings, result: Evaluation, evaluated: str, week: str
    ) -> list[Envelope] | None:
        envelopes = [events.envelope(f, tenant.name, tenant.tenant_id) for f in result.findings]
        written = int(
            await self._commit(
                keys=[key, self.keys.alerts],
                args=[
                    evaluated,
                    week,
                    result.evaluated,
                    result.digest_week,
                    ALERTS_STREAM_MAXLEN,
                    *(e.to_json() for e in envelopes),
                ],
            )
        )
        if written < 0:
            return None
        for f, e in zip(result.findings, envelopes, strict=True):
            self.events.labels(f.reason).inc()
            log.info(
                "secure score %s queued: %s",
                f.reason,
                e.title,
                extra={"tenant_id": tenant.tenant_id, "alert_id": e.id},
            )
        return envelopes
