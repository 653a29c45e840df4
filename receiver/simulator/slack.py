"""A Slack Web API stand-in (plain HTTP, loopback) for the Slack app sink's tests and the demo.

It answers the methods the product uses the way Slack does (api.slack.com/methods): a JSON
body with ``ok``, an ``error`` string when not ok, HTTP 200 for method errors and HTTP 429
with ``Retry-After`` and ``{"ok": false, "error": "ratelimited"}`` when rate limited.

- ``POST /api/chat.postMessage``: channel (an id, or a name mapped to one), blocks/text,
  ``thread_ts`` for a reply, ``metadata``; answers ``channel`` (the id) and ``ts``;
- ``POST /api/chat.update``: channel id and ts of an existing message (``message_not_found``
  otherwise);
- ``GET /api/conversations.history``: a channel's top-level messages, newest first, with their
  metadata when ``include_all_metadata`` is true;
- ``POST /response/{id}``: a response_url, recording ephemeral answers.

Every call is recorded (:attr:`SlackStandIn.calls`) and, with ``jsonl``, appended to a file
as one JSON line. ``ratelimit(n, retry_after)`` makes the next n Web API calls rate limited.
Like the Graph simulator it shares no code with the product: it speaks only HTTP.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["SlackStandIn"]


@dataclass
class SlackStandIn:
    token: str
    channels: dict[str, str] = field(default_factory=lambda: {"security-alerts": "C0SECALRTS"})
    jsonl: Path | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    ephemeral: list[dict[str, Any]] = field(default_factory=list)
    limited: int = 0
    retry_after: int = 1
    changed: asyncio.Event | None = None

    def __post_init__(self) -> None:
        self._ts = itertools.count(1)
        self.app = Starlette(
            routes=[
                Route("/api/{method}", self._api, methods=["GET", "POST"]),
                Route("/response/{rid}", self._response, methods=["POST"]),
            ]
        )

    def ratelimit(self, n: int, retry_after: int = 1) -> None:
        self.limited, self.retry_after = n, retry_after

    # --- what tests read -------------------------------------------------------------------
    def parents(self, channel: str | None = None) -> list[dict[str, Any]]:
        return [
            m
            for (c, _), m in self.messages.items()
            if not m.get("thread_ts") and (channel is None or c == channel)
        ]

    def replies(self, ts: str) -> list[dict[str, Any]]:
        return [m for m in self.messages.values() if m.get("thread_ts") == ts]

    def count(self, method: str) -> int:
        return sum(1 for c in self.calls if c["method"] == method and c.get("ok"))

    # --- HTTP ------------------------------------------------------------------------------
    def _record(self, entry: dict[str, Any]) -> None:
        entry = {"at": round(time.time(), 3), **entry}
        self.calls.append(entry)
        if self.jsonl is not None:
            with self.jsonl.open("a", encoding="utf-8") as out:
                out.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")

    def _channel(self, name: str) -> str | None:
        name = name.lstrip("#")
        if name in self.channels.values():
            return name
        return self.channels.get(name)

    async def _api(self, request: Request) -> Response:  # noqa: C901 - 12, older than the limit
        method = request.path_params["method"]
        if request.method == "POST":
            try:
                body: dict[str, Any] = json.loads(await request.body() or b"{}")
            except ValueError:
                body = {}
        else:
            body = dict(request.query_params)
        if self.limited > 0:
            self.limited -= 1
            self._record({"method": method, "ok": False, "error": "ratelimited", "body": body})
            return JSONResponse(
                {"ok": False, "error": "ratelimited"},
                status_code=429,
                headers={"Retry-After": str(self.retry_after)},
            )
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return self._answer(method, body, {"ok": False, "error": "invalid_auth"})
        channel = self._channel(str(body.get("channel") or ""))
        if channel is None:
            return self._answer(method, body, {"ok": False, "error": "channel_not_found"})
        if method == "chat.postMessage":
            ts = f"{1_800_000_000 + next(self._ts)}.000100"
            message = {
                "ts": ts,
                "channel": channel,
                "text": body.get("text", ""),
                "blocks": body.get("blocks", []),
                "metadata": body.get("metadata"),
                "thread_ts": body.get("thread_ts"),
                "updates": 0,
            }
            if message["thread_ts"] and (channel, message["thread_ts"]) not in self.messages:
                return self._answer(method, body, {"ok": False, "error": "thread_not_found"})
            self.messages[(channel, ts)] = message
            return self._answer(
                method,
                body,
                {
                    "ok": True,
                    "channel": channel,
                    "ts": ts,
                    "message": {"ts": ts, "text": message["text"]},
                },
            )
        if method == "chat.update":
            found = self.messages.get((str(body.get("channel")), str(body.get("ts"))))
            if found is None:
                return self._answer(method, body, {"ok": False, "error": "message_not_found"})
            found.update(
                text=body.get("text", found["text"]),
                blocks=body.get("blocks", found["blocks"]),
                updates=found["updates"] + 1,
            )
            return self._answer(
                method, body, {"ok": True, "channel": found["channel"], "ts": found["ts"]}
            )
        if method == "conversations.history":
            if str(body.get("channel")) not in self.channels.values():
                return self._answer(method, body, {"ok": False, "error": "channel_not_found"})
            meta = str(body.get("include_all_metadata", "")).lower() == "true"
            items = [
                {
                    "ts": m["ts"],
                    "text": m["text"],
                    **({"metadata": m["metadata"]} if meta and m["metadata"] else {}),
                }
                for m in reversed(self.parents(channel))
            ]
            return self._answer(method, body, {"ok": True, "messages": items, "has_more": False})
        return self._answer(method, body, {"ok": False, "error": "unknown_method"})

    def _answer(self, method: str, body: dict[str, Any], answer: dict[str, Any]) -> Response:
        self._record(
            {
                "method": method,
                "ok": answer["ok"],
                "error": answer.get("error"),
                "body": body,
                "ts": answer.get("ts"),
            }
        )
        if self.changed is not None:
            self.changed.set()
        return JSONResponse(answer)

    async def _response(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"ok": False, "error": "invalid_payload"}, status_code=400)
        self.ephemeral.append(body)
        self._record({"method": "response_url", "ok": True, "body": body})
        return Response("ok")
