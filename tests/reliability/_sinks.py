"""The sinks' far ends: one loopback HTTP server that records what every sink received.

- ``POST /hook/<name>``: webhook sinks (Standard Webhooks). Each sink can be made to fail on
  demand: ``down`` answers 503 (no Retry-After, so the product's own retry schedule runs),
  ``slow_s`` delays every answer.
- ``/jira/rest/api/3/...``: the part of Jira Cloud the ticket sink uses (search by label,
  create, comment, transitions), to count tickets per alert: an idempotent sink must open
  exactly one.

It runs in a thread of the harness (uvicorn), so the harness reads what arrived directly.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fixtures.redis_server import free_port

JIRA_EMAIL = "harness@example.com"
JIRA_TOKEN = "harness-jira-token"  # a loopback stand-in's credential, not a real one


@dataclass
class Arrival:
    alert_id: str
    first_seen: bool
    status: str
    webhook_id: str
    at: float


@dataclass
class HookState:
    down: bool = False
    slow_s: float = 0.0
    arrivals: list[Arrival] = field(default_factory=list)
    refused: int = 0


class SinkServer:
    def __init__(self, hooks: list[str]) -> None:
        self.hooks = {name: HookState() for name in hooks}
        self.issues: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, list[Any]] = defaultdict(list)
        self._lock = threading.Lock()
        self.port = free_port()
        app = Starlette(
            routes=[
                Route("/hook/{name}", self._hook, methods=["POST"]),
                Route("/jira/rest/api/3/issue", self._jira_create, methods=["POST"]),
                Route("/jira/rest/api/3/search/jql", self._jira_search, methods=["GET"]),
                Route("/jira/rest/api/3/issue/{key}/comment", self._jira_comment, methods=["POST"]),
                Route(
                    "/jira/rest/api/3/issue/{key}/transitions",
                    self._jira_transitions,
                    methods=["GET", "POST"],
                ),
                Route("/jira/rest/api/3/issue/{key}", self._jira_issue, methods=["GET"]),
            ]
        )
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_config=None,
                access_log=False,
                lifespan="off",
                limit_concurrency=2000,
                backlog=2048,
            )
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> SinkServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the sink server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    # --- webhooks ----------------------------------------------------------------------
    async def _hook(self, request: Request) -> Response:
        state = self.hooks[request.path_params["name"]]
        if state.slow_s:
            await asyncio.sleep(state.slow_s)
        body = await request.body()
        if state.down:
            state.refused += 1
            return Response(status_code=503)
        doc = json.loads(body)
        with self._lock:
            state.arrivals.append(
                Arrival(
                    str(doc["id"]),
                    bool(doc["first_seen"]),
                    str(doc.get("status", "")),
                    request.headers.get("webhook-id", ""),
                    time.time(),
                )
            )
        return Response(status_code=204)

    # --- Jira ---------------------------------------------------------------------------
    @staticmethod
    def _authorized(request: Request) -> bool:
        import base64

        expected = "Basic " + base64.b64encode(f"{JIRA_EMAIL}:{JIRA_TOKEN}".encode()).decode()
        return request.headers.get("authorization") == expected

    async def _jira_create(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"errorMessages": ["unauthorized"]}, 401)
        fields = (await request.json())["fields"]
        with self._lock:
            key = f"{fields['project']['key']}-{len(self.issues) + 1}"
            self.issues[key] = {
                "labels": list(fields.get("labels", [])),
                "status": "To Do",
                "at": time.time(),
            }
        return JSONResponse(
            {
                "id": str(10000 + len(self.issues)),
                "key": key,
                "self": f"{self.url}/jira/rest/api/3/issue/{key}",
            },
            201,
        )

    async def _jira_search(self, request: Request) -> Response:
        match = re.search(r'labels = "([^"]+)"', request.query_params.get("jql", ""))
        label = match.group(1) if match else None
        with self._lock:
            found = [{"id": "1", "key": k} for k, v in self.issues.items() if label in v["labels"]]
        return JSONResponse({"issues": found[:1], "isLast": True})

    async def _jira_comment(self, request: Request) -> Response:
        key = request.path_params["key"]
        if key not in self.issues:
            return JSONResponse({"errorMessages": ["Issue does not exist"]}, 404)
        body = (await request.json())["body"]
        with self._lock:  # never held across an await: the harness thread takes it too
            self.comments[key].append(body)
        return JSONResponse({"id": str(len(self.comments[key]))}, 201)

    async def _jira_transitions(self, request: Request) -> Response:
        key = request.path_params["key"]
        if key not in self.issues:
            return JSONResponse({"errorMessages": ["Issue does not exist"]}, 404)
        if request.method == "GET":
            return JSONResponse({"transitions": [{"id": "31", "name": "Done"}]})
        self.issues[key]["status"] = "Done"
        return Response(status_code=204)

    async def _jira_issue(self, request: Request) -> Response:
        issue = self.issues.get(request.path_params["key"])
        if issue is None:
            return JSONResponse({"errorMessages": ["Issue does not exist"]}, 404)
        category = "done" if issue["status"] == "Done" else "new"
        return JSONResponse(
            {
                "key": request.path_params["key"],
                "fields": {
                    "status": {"name": issue["status"], "statusCategory": {"key": category}}
                },
            }
        )

    # --- what arrived -------------------------------------------------------------------
    def tickets_per_alert(self) -> dict[str, int]:
        """Issues opened per alert id (from the ``graph-alert-<id>`` label)."""
        counts: dict[str, int] = defaultdict(int)
        with self._lock:
            for issue in self.issues.values():
                for label in issue["labels"]:
                    if label.startswith("graph-alert-"):
                        counts[label.removeprefix("graph-alert-")] += 1
        return dict(counts)

    def ticket_times(self) -> dict[str, float]:
        with self._lock:
            return {
                label.removeprefix("graph-alert-"): issue["at"]
                for issue in self.issues.values()
                for label in issue["labels"]
                if label.startswith("graph-alert-")
            }
