"""The stream consumer loop every stage runs on (arq's worker model on Redis Streams).

- A consumer group per stage: any number of processes share the work.
- Bounded concurrency (a semaphore); an entry is acknowledged (and deleted: each stream has
  one group) only after its handler returned, i.e. after the next stage has it or the sink
  confirmed.
- A handler that raises leaves its entry pending; after ``visibility_timeout_s`` any consumer
  claims it (XAUTOCLAIM) and tries again, so a worker that died loses nothing. An entry
  delivered ``max_attempts`` times goes to the poison stream with its last error instead of
  looping.
- A handler that raises :class:`Poison` sends the entry to the poison stream at once.
- A handler that raises :class:`Retry` asks for a later attempt: the entry moves to a delayed
  set (a sorted set by due time) and comes back into the stream when due, with its attempt
  count. This carries the deliver stage's long retry schedule (minutes to hours).
- Burst mode processes what is there and returns (tests, CLI replays); otherwise it runs until
  ``stop`` is set, then drains: no new reads, in-flight handlers finish (bounded).
- A health key with a TTL says the consumer is alive; ``lag()`` gives the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from receiver import backoff
from receiver.pipeline.entry import (  # re-exported: the stages import them from here
    ATTEMPT_FIELD,
    ConsumerConfig,
    Entry,
    Handler,
    Poison,
    Retry,
)
from receiver.redaction import cut, redact
from receiver.store.entries import FIELD as PAYLOAD_FIELD
from receiver.store.keys import Keys

log = logging.getLogger(__name__)

__all__ = [
    "ATTEMPT_FIELD",
    "Consumer",
    "ConsumerConfig",
    "Entry",
    "Handler",
    "Poison",
    "Retry",
]

# While Redis is unavailable the loop retries after this long, doubling up to the maximum.
MIN_BACKOFF_S = 0.5
MAX_BACKOFF_S = 5.0

# Move due entries from the delayed set back into the stream, atomically.
# KEYS[1] delayed zset, KEYS[2] stream; ARGV[1] now (ms), ARGV[2] limit.
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local item = cjson.decode(member)
  local args = {KEYS[2], '*'}
  for k, v in pairs(item['f']) do
    table.insert(args, k)
    table.insert(args, v)
  end
  table.insert(args, 'n')
  table.insert(args, tostring(item['n']))
  redis.call('XADD', unpack(args))
  redis.call('ZREM', KEYS[1], member)
end
return #due
"""


class Consumer:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        config: ConsumerConfig,
        handler: Handler,
        *,
        role: str = "worker",
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.config = config
        self.handler = handler
        self.role = role
        self._semaphore = asyncio.Semaphore(config.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._promote = redis.register_script(_PROMOTE)
        self.processed = 0
        self.failed = 0
        self.poisoned = 0
        self.redis_errors = 0  # loop passes that found Redis unavailable

    @property
    def delayed_key(self) -> str:
        return self.keys.delayed(self.config.stream)

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(
                self.config.stream, self.config.group, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # --- the loop ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None, *, burst: bool = False) -> None:  # noqa: C901 - 12, older than the limit
        stop = stop or asyncio.Event()
        await self.ensure_group()
        last_health = 0.0
        last_sweep = float("-inf")
        failures = 0  # consecutive passes that found Redis unavailable
        try:
            me = asyncio.current_task()
            while not stop.is_set():
                # A cancellation that a client library swallowed still ends the loop.
                if me is not None and me.cancelling():
                    raise asyncio.CancelledError
                if self._free_slots() <= 0:  # wait for a handler to finish before reading
                    await asyncio.wait(
                        set(self._tasks), timeout=1.0, return_when=asyncio.FIRST_COMPLETED
                    )
                    continue
                now = time.monotonic()
                try:
                    if now - last_health > self.config.health_ttl_s / 3:
                        await self._heartbeat()
                        last_health = now
                    got = 0
                    if burst or now - last_sweep >= self.config.sweep_interval_s:
                        await self._promote_due()
                        got += await self._claim_stale()
                        last_sweep = now
                    got += await self._read_new(block=not burst)
                    failures = 0
                except (RedisError, OSError) as exc:
                    if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                        # Redis came back empty (restarted without persistence): the group
                        # is made again and reading goes on.
                        with contextlib.suppress(RedisError, OSError):
                            await self.ensure_group()
                            continue
                    if burst:
                        raise
                    # Redis restarting or out of reach: wait and go on. What was in flight
                    # stays pending and is claimed again; nothing is acknowledged meanwhile.
                    failures += 1
                    backoff_s = backoff.exponential(failures, MIN_BACKOFF_S, MAX_BACKOFF_S)
                    self.redis_errors += 1
                    log.warning(
                        "redis unavailable (%s), retrying in %.1fs",
                        type(exc).__name__,
                        backoff_s,
                        extra={"stream": self.config.stream},
                    )
                    await backoff.pause(stop, backoff_s)
                    continue
                if burst and got == 0:
                    await self._wait_idle()
                    if await self._nothing_left():
                        return
        except asyncio.CancelledError:
            raise
        finally:
            await self._drain()

    async def once(self, *, block: bool = False) -> int:
        """One pass, for a caller that schedules its own (the scheduler's lifecycle job):
        claim what stayed pending past the visibility timeout, read what is new (waiting up
        to ``block_ms`` when ``block``), and wait for their handlers. Returns how many entries
        were handed out; Redis errors are the caller's."""
        await self.ensure_group()
        try:
            got = await self._claim_stale()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()  # Redis lost it between the two calls
            return 0
        try:
            got += await self._read_new(block=block)
        finally:
            await self._wait_idle()
        return got

    async def _read_new(self, *, block: bool) -> int:
        free = min(self.config.batch, self._free_slots())
        if free <= 0:
            return 0
        try:
            reply: Any = await self.redis.xreadgroup(
                self.config.group,
                self.config.consumer,
                {self.config.stream: ">"},
                count=free,
                block=self.config.block_ms if block else None,
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream was deleted under us
                await self.ensure_group()
                return 0
            raise
        n = 0
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                await self._start(bytes(entry_id).decode(), dict(fields), delivered=1)
                n += 1
        return n

    async def _claim_stale(self) -> int:
        free = min(self.config.batch, self._free_slots())
        if free <= 0:
            return 0
        idle_ms = int(self.config.visibility_timeout_s * 1000)
        reply: list[Any] = await self.redis.xautoclaim(
            self.config.stream,
            self.config.group,
            self.config.consumer,
            idle_ms,
            start_id="0-0",
            count=free,
        )
        claimed: list[tuple[bytes, dict[bytes, bytes] | None]] = reply[1]
        n = 0
        for entry_id, fields in claimed:
            if fields is None:  # deleted while pending
                continue
            await self._start(entry_id.decode(), fields)
            n += 1
        return n

    def _free_slots(self) -> int:
        return self.config.concurrency - len(self._tasks)

    async def _start(
        self, entry_id: str, fields: dict[bytes, bytes], delivered: int | None = None
    ) -> None:
        await self._semaphore.acquire()
        task = asyncio.create_task(self._process(entry_id, fields, delivered))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(
        self, entry_id: str, fields: dict[bytes, bytes], delivered: int | None
    ) -> None:
        try:
            if delivered is None:  # a claimed entry: how often was it handed out?
                delivered = await self._times_delivered(entry_id)
            # The attempts a Retry carried over are the consumer's, not the entry's: the
            # handler gets the fields as written (a backfill request's parser refused an
            # unknown field, and a retried backfill went to the poison stream).
            made = fields.pop(ATTEMPT_FIELD.encode(), b"0")
            attempt = int(made or 0) + delivered
            entry = Entry(
                entry_id, fields, max(1, attempt), (self.config.stream, self.config.group)
            )
            try:
                await self.handler(entry)
            except Retry as retry:
                await self._defer(entry, retry.delay_s)
                return
            except Poison as exc:
                await self._poison(entry, exc)
                return
            except Exception as exc:
                self.failed += 1
                if delivered >= self.config.max_attempts:
                    await self._poison(entry, exc)
                else:
                    log.warning(
                        "entry failed (attempt %d of %d): %s",
                        delivered,
                        self.config.max_attempts,
                        _describe(exc),
                        extra={"stream": self.config.stream, "stream_id": entry_id},
                    )
                return
            if not entry.acked:
                await self._ack(entry_id)
            self.processed += 1
        except (RedisError, OSError) as exc:
            # The entry stays pending and is claimed again after the visibility timeout.
            log.warning(
                "redis error while processing: %s",
                type(exc).__name__,
                extra={"stream": self.config.stream, "stream_id": entry_id},
            )
        finally:
            self._semaphore.release()

    async def _times_delivered(self, entry_id: str) -> int:
        rows = await self.redis.xpending_range(
            self.config.stream, self.config.group, min=entry_id, max=entry_id, count=1
        )
        return int(rows[0]["times_delivered"]) if rows else 1

    async def _ack(self, entry_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.config.stream, self.config.group, entry_id)
            pipe.xdel(self.config.stream, entry_id)
            await pipe.execute()

    async def _defer(self, entry: Entry, delay_s: float) -> None:
        kept = {k.decode(): v.decode() for k, v in entry.fields.items()}
        member = json.dumps({"f": kept, "n": entry.attempt, "id": entry.id})
        due_ms = int((time.time() + delay_s) * 1000)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.delayed_key, {member: due_ms})
            pipe.xack(self.config.stream, self.config.group, entry.id)
            pipe.xdel(self.config.stream, entry.id)
            await pipe.execute()

    async def _poison(self, entry: Entry, exc: BaseException) -> None:
        self.poisoned += 1
        log.error(
            "entry failed %d times, moved to the poison stream: %s",
            entry.attempt,
            _describe(exc),
            extra={"stream": self.config.stream, "stream_id": entry.id},
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.keys.poison,
                {
                    PAYLOAD_FIELD: entry.value,
                    "stream": self.config.stream,
                    "id": entry.id,
                    "error": cut(_describe(exc), 2000),
                    "attempts": str(entry.attempt),
                    "at": str(int(time.time() * 1000)),
                },
            )
            pipe.xack(self.config.stream, self.config.group, entry.id)
            pipe.xdel(self.config.stream, entry.id)
            await pipe.execute()

    async def _promote_due(self) -> None:
        await self._promote(
            keys=[self.delayed_key, self.config.stream], args=[int(time.time() * 1000), 500]
        )

    async def _heartbeat(self) -> None:
        await self.redis.set(
            self.keys.health(self.role, self.config.consumer),
            json.dumps({"stream": self.config.stream, "at": time.time()}),
            ex=self.config.health_ttl_s,
        )

    async def _wait_idle(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    async def _nothing_left(self) -> bool:
        """Burst mode: done when nothing is pending, new or due (delayed ones not yet due
        are left for a later run)."""
        info = await self.redis.xpending(self.config.stream, self.config.group)
        if info["pending"]:
            return False
        groups = await self.redis.xinfo_groups(self.config.stream)
        for g in groups:
            if g["name"].decode() == self.config.group and (g.get("lag") or 0) > 0:
                return False
        due = await self.redis.zcount(self.delayed_key, "-inf", int(time.time() * 1000))
        return int(due) == 0

    async def _drain(self) -> None:
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks), timeout=self.config.drain_timeout_s)
        for task in pending:  # left pending in Redis: another consumer claims them
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)

    async def lag(self) -> dict[str, int]:
        """Backlog of this stage: entries not yet read, pending (in flight or failed),
        and delayed (waiting for a retry)."""
        unread = pending = 0
        with contextlib.suppress(ResponseError):
            for g in await self.redis.xinfo_groups(self.config.stream):
                if g["name"].decode() == self.config.group:
                    unread = int(g.get("lag") or 0)
                    pending = int(g.get("pending") or 0)
        delayed = int(await self.redis.zcard(self.delayed_key))
        return {"unread": unread, "pending": pending, "delayed": delayed}


def _describe(exc: BaseException) -> str:
    text = redact(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
