"""The subscription registry in Redis: which Graph subscriptions this deployment owns.

Written by the subscription supervisor, read by the web validator. Each subscription is a hash
(tenant, resource, clientState, expiry), indexed by a sorted set scored by expiry; every write
bumps a version counter so readers reload only when something changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from receiver.store.keys import Keys


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    subscription_id: str
    tenant_id: str
    resource: str
    client_state: str = field(repr=False)  # a secret: never logged
    expires_at: float = 0.0  # epoch seconds
    change_types: str = "created,updated"
    created_at: float = 0.0  # epoch seconds; 0 for records written before it was kept

    def to_hash(self) -> dict[FieldT, EncodableT]:
        return {
            "tenant_id": self.tenant_id,
            "resource": self.resource,
            "client_state": self.client_state,
            "expires_at": repr(self.expires_at),
            "change_types": self.change_types,
            "created_at": repr(self.created_at),
        }

    @classmethod
    def from_hash(cls, subscription_id: str, raw: dict[bytes, bytes]) -> SubscriptionRecord | None:
        try:
            return cls(
                subscription_id=subscription_id,
                tenant_id=raw[b"tenant_id"].decode(),
                resource=raw[b"resource"].decode(),
                client_state=raw[b"client_state"].decode(),
                expires_at=float(raw.get(b"expires_at", b"0")),
                change_types=raw.get(b"change_types", b"").decode(),
                created_at=float(raw.get(b"created_at", b"0")),
            )
        except (KeyError, ValueError, UnicodeDecodeError):
            return None


async def put(redis: Redis, keys: Keys, record: SubscriptionRecord) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.subscription(record.subscription_id), mapping=record.to_hash())
        pipe.zadd(keys.subscriptions, {record.subscription_id: record.expires_at})
        pipe.incr(keys.subscriptions_version)
        await pipe.execute()


async def delete(redis: Redis, keys: Keys, subscription_id: str) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.subscription(subscription_id))
        pipe.zrem(keys.subscriptions, subscription_id)
        pipe.hdel(keys.push_seen, subscription_id)
        pipe.incr(keys.subscriptions_version)
        await pipe.execute()


async def version(redis: Redis, keys: Keys) -> int:
    raw = await redis.get(keys.subscriptions_version)
    return int(raw) if raw else 0


async def load_all(redis: Redis, keys: Keys) -> tuple[int, dict[str, SubscriptionRecord]]:
    """Every registered subscription, with the version it was read at."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.get(keys.subscriptions_version)
        pipe.zrange(keys.subscriptions, 0, -1)
        ver_raw, ids = await pipe.execute()
    records: dict[str, SubscriptionRecord] = {}
    if ids:
        async with redis.pipeline(transaction=False) as pipe:
            for sid in ids:
                pipe.hgetall(keys.subscription(sid.decode()))
            hashes = await pipe.execute()
        for sid, raw in zip(ids, hashes, strict=True):
            record = SubscriptionRecord.from_hash(sid.decode(), raw) if raw else None
            if record is not None:
                records[record.subscription_id] = record
    return (int(ver_raw) if ver_raw else 0), records


@dataclass(frozen=True, slots=True)
class Silence:
    """A subscription that delivered nothing while the poller kept finding changes."""

    record: SubscriptionRecord
    last_push_s: float | None  # epoch seconds of its last pushed notification, if any
    silent_s: float  # how long the poller has found changes since (or since its creation)


def silent(
    records: Mapping[str, SubscriptionRecord],
    push_seen: Mapping[str, float],
    poll_seen: Mapping[str, float],
    silent_after: Callable[[SubscriptionRecord], float],
) -> list[Silence]:
    """The subscriptions that stayed silent for ``silent_after(record)`` seconds while the
    poller found changes in their tenant: the newest polled change is that much later than
    the subscription's last push (or its creation). Times are epoch seconds. A subscription
    on a resource Graph no longer pushes (the retired legacy alerts API) looks exactly so."""
    out = []
    for record in records.values():
        polled = poll_seen.get(record.tenant_id)
        if polled is None:
            continue
        pushed = push_seen.get(record.subscription_id)
        since = max(pushed or 0.0, record.created_at)
        if since and polled - since >= silent_after(record):
            out.append(Silence(record, pushed, polled - since))
    return sorted(out, key=lambda s: (s.record.tenant_id, s.record.resource))


async def seen(redis: Redis, keys: Keys) -> tuple[dict[str, float], dict[str, float]]:
    """The fetch stage's last push per subscription and last polled change per tenant, in
    epoch seconds."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.push_seen)
        pipe.hgetall(keys.poll_seen)
        push_raw, poll_raw = await pipe.execute()

    def decode(raw: dict[bytes, bytes]) -> dict[str, float]:
        out = {}
        for k, v in raw.items():
            try:
                out[k.decode()] = int(v) / 1000
            except (ValueError, UnicodeDecodeError):
                continue
        return out

    return decode(push_raw), decode(poll_raw)
