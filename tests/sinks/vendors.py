"""Stateful loopback stand-ins for Jira Cloud and ServiceNow (the parts the sinks use)."""

from __future__ import annotations

import asyncio
import base64
import re
from dataclasses import dataclass, field
from typing import Any

from tests.sinks.conftest import Answer, Recorded, Server, json_answer


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


@dataclass
class FakeJira:
    server: Server
    email: str
    token: str
    create_delay_s: float = 0.0
    issues: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: dict[str, list[Any]] = field(default_factory=dict)
    transitions: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server.handler = self.handle

    async def handle(self, rec: Recorded) -> Answer | None:
        if rec.headers.get("authorization") != basic(self.email, self.token):
            return json_answer({"errorMessages": ["unauthorized"]}, 401)
        path = rec.path
        if rec.method == "POST" and path == "/rest/api/3/issue":
            fields = rec.json["fields"]
            key = f"{fields['project']['key']}-{len(self.issues) + 1}"
            if self.create_delay_s:
                await asyncio.sleep(self.create_delay_s)
            self.issues[key] = {"fields": fields, "status": "To Do"}
            return json_answer(
                {
                    "id": str(10000 + len(self.issues)),
                    "key": key,
                    "self": f"{self.server.url}/rest/api/3/issue/{key}",
                },
                201,
            )
        if rec.method == "GET" and path == "/rest/api/3/search/jql":
            match = re.search(r'labels = "([^"]+)"', rec.query.get("jql", ""))
            label = match.group(1) if match else None
            found = [
                {"id": "1", "key": k}
                for k, v in self.issues.items()
                if label in v["fields"]["labels"]
            ]
            return json_answer({"issues": found[:1], "isLast": True})
        match = re.fullmatch(r"/rest/api/3/issue/([A-Z]+-\d+)(/comment|/transitions)?", path)
        if match is None or match.group(1) not in self.issues:
            return json_answer({"errorMessages": ["Issue does not exist"]}, 404)
        key, sub = match.group(1), match.group(2)
        issue = self.issues[key]
        if sub == "/comment" and rec.method == "POST":
            self.comments.setdefault(key, []).append(rec.json["body"])
            return json_answer({"id": str(len(self.comments[key]))}, 201)
        if sub == "/transitions" and rec.method == "GET":
            return json_answer(
                {"transitions": [{"id": "11", "name": "In Progress"}, {"id": "31", "name": "Done"}]}
            )
        if sub == "/transitions" and rec.method == "POST":
            tid = rec.json["transition"]["id"]
            self.transitions.append((key, tid))
            if tid == "31":
                issue["status"] = "Done"
            return Answer(204)
        if sub is None and rec.method == "GET":
            category = "done" if issue["status"] == "Done" else "new"
            return json_answer(
                {
                    "key": key,
                    "fields": {
                        "status": {"name": issue["status"], "statusCategory": {"key": category}}
                    },
                }
            )
        return json_answer({}, 405)


@dataclass
class FakeServiceNow:
    server: Server
    user: str
    password: str
    create_delay_s: float = 0.0
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    patches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server.handler = self.handle

    async def handle(self, rec: Recorded) -> Answer | None:
        if rec.headers.get("authorization") != basic(self.user, self.password):
            return json_answer({"error": {"message": "User Not Authenticated"}}, 401)
        if rec.path == "/api/now/table/incident" and rec.method == "POST":
            if self.create_delay_s:
                await asyncio.sleep(self.create_delay_s)
            n = len(self.records) + 1
            sys_id = f"{n:032x}"
            record = {**rec.json, "sys_id": sys_id, "number": f"INC{10000 + n:07d}", "state": "1"}
            self.records[sys_id] = record
            return json_answer({"result": {"sys_id": sys_id, "number": record["number"]}}, 201)
        if rec.path == "/api/now/table/incident" and rec.method == "GET":
            found = [
                {"sys_id": r["sys_id"], "number": r["number"]}
                for r in self.records.values()
                if r["correlation_id"] == rec.query.get("correlation_id")
            ]
            return json_answer({"result": found[:1]})
        match = re.fullmatch(r"/api/now/table/incident/([0-9a-f]{32})", rec.path)
        if match and rec.method == "PATCH":
            if match.group(1) not in self.records:
                return json_answer({"error": {"message": "No Record found"}}, 404)
            self.records[match.group(1)].update(rec.json)
            self.patches.append((match.group(1), rec.json))
            record = self.records[match.group(1)]
            return json_answer({"result": {"sys_id": record["sys_id"], "number": record["number"]}})
        return json_answer({"error": {"message": "not found"}}, 404)
