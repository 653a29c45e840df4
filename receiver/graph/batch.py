"""Graph JSON batching for the fetch stage's reads: the GETs asked for one tenant in the same
turn of the event loop go to Graph as one ``POST /$batch`` of up to 20 requests.

Why: a push notification names several alerts, and the fetch stage reads each one. One by
one, each read is an HTTP request of its own (headers, TLS record, a connection from the pool,
a response parsed) on both sides; batched, up to 20 of them share one. The fetch stage does
not change: it asks :meth:`BatchedReads.get` as it asked the client, and the reads that its
consumer started together go out together.

The wire (learn.microsoft.com/graph/json-batching; docs-contrib concepts/json-batching.md)::

    POST {graph_url}/$batch   {"requests": [{"id": "1", "method": "GET", "url": "/security/..."},
                                            ...]}                      (at most 20, ids unique)
    200                       {"responses": [{"id": "1", "status": 200, "headers": {...},
                                              "body": {...}}, ...]}    (in any order)

A 200 says nothing about the items: each has its own status, and a throttled item its own
``Retry-After`` in its own headers. What stays as it was for a single read:

- Rate limiting. Graph counts every request of a batch against its limits, so every item
  passes the per-tenant limiter (receiver.graph.ratelimit) before it joins a batch; the items
  granted in one turn share a batch. The ``$batch`` POST itself is in no limited bucket.
- Retries, per item, as GraphClient.request does them: 429/503 after the item's Retry-After,
  other 5xx after a jittered backoff, within ``max_retries`` and ``max_retry_wait_s``; a
  retried item goes in a later batch. The POST itself is retried by the client (network
  errors, 5xx, 429 on the whole batch); when it still fails, each of its items fails with
  that error (GraphUnavailable: the fetch stage leaves the notification to be retried).
- Errors: an item's 4xx is that item's GraphError (a 404 is the fetch stage's "gone").
- A batch Graph refuses as a whole (a 4xx: a proxy or a cloud without ``$batch``; an older
  revision of Microsoft's throttling page says a batch with throttled items fails with 424),
  or an answer that leaves an item out: those items are read one by one, counted in
  ``receiver_graph_batch_fallbacks_total``. Nothing is lost for want of a batch.

``graph.read_batch_size`` (1-20, default 20) caps a batch; 1 turns batching off.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter

from receiver.graph.client import (
    RETRY_STATUSES,
    GraphClient,
    GraphError,
    GraphUnavailable,
    bucket_of,
    failure_of,
    preferences,
    retry_after_of,
)

log = logging.getLogger(__name__)

MAX_BATCH = 20  # Graph's limit on the requests of one JSON batch


@dataclass(frozen=True, slots=True)
class Answer:
    """One item's answer: its status, headers (names lower-cased) and body."""

    status: int
    headers: dict[str, str]
    body: Any


@dataclass(slots=True)
class _Item:
    path: str
    answer: asyncio.Future[Answer | None]  # None: read it on its own


def answers_of(response: httpx.Response) -> dict[str, Answer]:
    """The items of a ``$batch`` answer by id (lower-cased: Graph's ids are not
    case-sensitive); what is not a well-formed item is left out."""
    try:
        body = response.json()
    except ValueError:
        return {}
    responses = body.get("responses") if isinstance(body, dict) else None
    found: dict[str, Answer] = {}
    for item in responses if isinstance(responses, list) else []:
        if not isinstance(item, dict):
            continue
        item_id, status, headers = item.get("id"), item.get("status"), item.get("headers")
        if not isinstance(item_id, str) or isinstance(status, bool) or not isinstance(status, int):
            continue
        pairs = headers.items() if isinstance(headers, dict) else ()
        named = {str(k).lower(): str(v) for k, v in pairs}
        found[item_id.lower()] = Answer(status, named, item.get("body"))
    return found


class BatchedReads:
    """``await reads.get(tenant_id, path)``: a Graph GET, sent inside a JSON batch with the
    other reads of that tenant asked in the same turn of the event loop."""

    def __init__(
        self,
        client: GraphClient,
        *,
        max_items: int = MAX_BATCH,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if not 1 <= max_items <= MAX_BATCH:
            raise ValueError(f"a JSON batch holds 1 to {MAX_BATCH} requests, not {max_items}")
        self.client = client
        self.max_items = max_items
        self._queues: dict[str, list[_Item]] = {}
        self._sending: set[asyncio.Task[None]] = set()
        registry = registry if registry is not None else CollectorRegistry()
        self.batches = Counter(
            "receiver_graph_batches", "JSON batches sent (POST $batch)", registry=registry
        )
        self.items = Counter(
            "receiver_graph_batch_items",
            "Reads sent inside JSON batches, retries included",
            registry=registry,
        )
        self.fallbacks = Counter(
            "receiver_graph_batch_fallbacks",
            "Reads sent on their own because Graph refused their batch or left them out",
            registry=registry,
        )

    async def get(
        self, tenant_id: str, path: str, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        if params or "://" in path or path.startswith("//") or self.max_items < 2:
            return await self.client.get(tenant_id, path, params)
        limiter = self.client.limiter
        bucket = bucket_of(path)
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            if limiter is not None:
                await limiter.acquire(tenant_id, bucket)
            answer = await self._join(tenant_id, path)
            if answer is None:
                self.fallbacks.inc()
                return await self.client.get(tenant_id, path)
            if 200 <= answer.status < 300:
                return answer.body if isinstance(answer.body, dict) else {}
            failure = failure_of(
                answer.status,
                answer.body,
                answer.headers,
                f"HTTP {answer.status}",
                method="GET",
                path=path,
                tenant_id=tenant_id,
            )
            if answer.status not in RETRY_STATUSES:
                raise failure
            retry_after = retry_after_of(answer.status, answer.headers)
            waited += await self.client.before_retry(
                f"batched GET {path}", attempt, waited, failure, retry_after, tenant_id
            )

    def _join(self, tenant_id: str, path: str) -> asyncio.Future[Answer | None]:
        """Queue the read in this turn's batch for the tenant (the first one starts it)."""
        loop = asyncio.get_running_loop()
        item = _Item(path, loop.create_future())
        queue = self._queues.get(tenant_id)
        if queue is None:
            queue = self._queues[tenant_id] = []
            task = loop.create_task(self._flush(tenant_id, queue))
            self._sending.add(task)
            task.add_done_callback(functools.partial(self._flushed, tenant_id, queue))
        queue.append(item)
        return item.answer

    async def _flush(self, tenant_id: str, queue: list[_Item]) -> None:
        await asyncio.sleep(0)  # let the rest of this turn's reads join
        del self._queues[tenant_id]  # later reads start a batch of their own
        items = [i for i in queue if not i.answer.done()]
        size = self.max_items
        await asyncio.gather(
            *(self._post(tenant_id, items[n : n + size]) for n in range(0, len(items), size))
        )

    def _flushed(self, tenant_id: str, queue: list[_Item], task: asyncio.Task[None]) -> None:
        """A batch's task ended: no read of it may be left waiting, whatever ended it (a
        task cancelled before its first step never ran its own code)."""
        self._sending.discard(task)
        if self._queues.get(tenant_id) is queue:
            del self._queues[tenant_id]
        if task.cancelled():
            _settle(queue, asyncio.CancelledError())
        elif task.exception() is not None:
            _settle(queue, task.exception())

    async def _post(self, tenant_id: str, items: list[_Item]) -> None:
        requests: list[dict[str, Any]] = []
        for n, item in enumerate(items, 1):
            request: dict[str, Any] = {
                "id": str(n),
                "method": "GET",
                "url": "/" + item.path.lstrip("/"),
            }
            prefer = preferences(bucket_of(item.path))
            if prefer:
                request["headers"] = prefer
            requests.append(request)
        self.batches.inc()
        self.items.inc(len(items))
        try:
            response = await self.client.request(
                tenant_id, "POST", "$batch", json={"requests": requests}
            )
        except GraphUnavailable as exc:  # the client's retries are spent: each item fails
            _settle(items, exc)
            return
        except GraphError:  # refused as a whole: read each on its own
            _settle(items, None)
            return
        except asyncio.CancelledError as exc:
            _settle(items, exc)
            raise
        except Exception as exc:  # no token for the tenant, Redis down, ...: each item's
            _settle(items, exc)
            return
        answers = answers_of(response)
        for n, item in enumerate(items, 1):
            if not item.answer.done():
                item.answer.set_result(answers.get(str(n)))


def _settle(items: list[_Item], outcome: BaseException | None) -> None:
    for item in items:
        if item.answer.done():
            continue
        if outcome is None:
            item.answer.set_result(None)
        elif isinstance(outcome, asyncio.CancelledError):
            item.answer.cancel()
        else:
            item.answer.set_exception(outcome)
