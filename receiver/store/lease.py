"""The scheduler lease: one process at a time holds it, with a fencing token.

The lease: ``SET leader <owner token> NX PX lease_s``, renewed every ``heartbeat_s`` by a
compare-and-extend script (only the holder's token extends it). Each acquisition increments
the fencing counter; the holder carries that number, and every write of the supervisor is
claimed through :meth:`Lease.claim`, one script that checks that the lease is still ours,
that the fencing counter still equals our number, and that no newer holder (a higher fence)
wrote the same subscription, and then records the write with our fence. A holder that stalls
(GC pause, lost network) and wakes up after its lease expired finds its claims refused.
Graph itself cannot check a fencing token; the claim is made right before the Graph call, so
the window that remains is one request long, and Graph's own rules (409 on duplicates, PATCH
being idempotent) make a straggling write harmless.

The holder also stops acting on its own clock: past ``90 %`` of the lease since its last
successful renewal it considers the lease lost, before Redis lets anyone else take it.

Standby processes try to acquire every heartbeat, so one takes over within
``lease_s + heartbeat_s`` of the holder's death (at once when the holder released the lease
on a clean shutdown).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
import time
from typing import Protocol, cast

from redis.asyncio import Redis

from receiver.store.keys import Keys

TOUCH_TTL_S = 86_400  # how long a subscription's last claimed write is remembered

# KEYS: leader, fencing. ARGV: owner token, lease ms. -> the fence, or 0 when held by another.
_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
if current then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('INCR', KEYS[2])
"""
# KEYS: leader. ARGV: owner token, lease ms. -> 1 extended, 0 not ours.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: leader, fencing. ARGV: owner token, fence. -> 1 while ours.
_CHECK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[2]) then return 0 end
return 1
"""
# KEYS: leader, fencing, touch. ARGV: owner token, fence, kind, at, ttl.
# -> 1 claimed, 0 lease not ours, -1 a newer holder wrote this subscription. The write's
# outcome (kind, at) is recorded by the supervisor once Graph accepted it.
_CLAIM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local fence = tonumber(ARGV[2])
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= fence then return 0 end
if tonumber(redis.call('HGET', KEYS[3], 'fence') or '0') > fence then return -1 end
redis.call('HSET', KEYS[3], 'fence', ARGV[2], 'claim', ARGV[3], 'claim_at', ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[5])
return 1
"""
SAFETY = 0.9  # act on at most this fraction of the lease after the last successful renewal


def owner_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"


class Lease:
    """The scheduler lease of one process; also the supervisor's write guard."""

    def __init__(self, redis: Redis, keys: Keys, lease_s: float, owner: str | None = None) -> None:
        self._redis = redis
        self._keys = keys
        self.lease_s = lease_s
        self.owner = owner or owner_token()
        self._fence = 0
        self._valid_until = 0.0  # monotonic
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._check = redis.register_script(_CHECK)
        self._claim = redis.register_script(_CLAIM)

    @property
    def fence(self) -> int:
        return self._fence

    @property
    def held(self) -> bool:
        return self._fence > 0 and time.monotonic() < self._valid_until

    def _ms(self) -> int:
        return max(1, int(self.lease_s * 1000))

    async def acquire(self) -> bool:
        started = time.monotonic()
        fence = int(
            await self._acquire(
                keys=[self._keys.leader, self._keys.fencing], args=[self.owner, self._ms()]
            )
        )
        if fence <= 0:
            self._fence = 0
            return False
        self._fence = fence
        self._valid_until = started + self.lease_s * SAFETY
        return True

    async def renew(self) -> bool:
        started = time.monotonic()
        ok = int(await self._renew(keys=[self._keys.leader], args=[self.owner, self._ms()]))
        if ok:
            self._valid_until = started + self.lease_s * SAFETY
        else:
            self._fence = 0
        return bool(ok)

    async def release(self) -> None:
        if self._fence:
            self._fence = 0
            await self._release(keys=[self._keys.leader], args=[self.owner])

    async def holder(self) -> str | None:
        raw = cast("bytes | None", await self._redis.get(self._keys.leader))
        return raw.decode() if raw else None

    async def check(self) -> None:
        if not self.held:
            raise LeaseLost("the scheduler lease is not held (or ran out locally)")
        ok = await self._check(
            keys=[self._keys.leader, self._keys.fencing], args=[self.owner, self._fence]
        )
        if not ok:
            self._fence = 0
            raise LeaseLost("the scheduler lease was taken over")

    async def claim(self, subscription_id: str, kind: str, at: dt.datetime) -> None:
        if not self.held:
            raise LeaseLost("the scheduler lease is not held (or ran out locally)")
        result = int(
            await self._claim(
                keys=[
                    self._keys.leader,
                    self._keys.fencing,
                    self._keys.subscription_touch(subscription_id),
                ],
                args=[self.owner, self._fence, kind, at.isoformat(), TOUCH_TTL_S],
            )
        )
        if result == 0:
            self._fence = 0
            raise LeaseLost("the scheduler lease was taken over")
        if result < 0:
            raise LeaseLost(f"a newer lease holder already wrote subscription {subscription_id}")


class LeaseLost(Exception):
    """This process no longer holds the scheduler lease: it must stop acting."""


class Guard(Protocol):
    """The write permission of the supervisor (the scheduler lease and its fencing token)."""

    @property
    def fence(self) -> int: ...

    async def check(self) -> None:
        """Raise LeaseLost unless this process still holds the lease."""

    async def claim(self, subscription_id: str, kind: str, at: dt.datetime) -> None:
        """Check the lease before a write on a subscription and mark the subscription with
        our fencing token; raise LeaseLost if the lease is gone or a newer holder (a higher
        fence) already wrote it."""


class Unfenced:
    """A guard for operator commands run without the lease (list, delete): records only."""

    fence = 0

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def check(self) -> None:
        return None

    async def claim(self, subscription_id: str, kind: str, at: dt.datetime) -> None:
        return None
