"""Jira Cloud (REST v3): one issue per alert; changes become comments; a resolved alert moves
the issue through the configured transition. Auth: basic, account email + API token.

Every issue carries the label ``graph-alert-<alert id>``: before creating, the sink searches
``labels = "graph-alert-<id>"`` (JQL) so a create whose answer was lost is not repeated.
Descriptions and comments are Atlassian Document Format, built from plain-text templates
(paragraphs split on blank lines) plus a link to the alert in the Defender portal.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from receiver.config.sinks import JiraSinkSettings
from receiver.envelope import Envelope
from receiver.sinks import http
from receiver.sinks.base import Delivery, PermanentError
from receiver.sinks.templating import context
from receiver.sinks.ticketing import Ticket, TicketSink

MAX_SUMMARY = 254


def alert_label(envelope: Envelope) -> str:
    return "graph-alert-" + re.sub(r"[^A-Za-z0-9_.\-]", "-", envelope.id)[:200]


def adf(text: str, link: str = "", link_text: str = "Open in Microsoft Defender") -> dict[str, Any]:
    """An Atlassian Document Format document: one paragraph per text block, lines joined by
    hard breaks, then the link (if any)."""
    content: list[dict[str, Any]] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        nodes: list[dict[str, Any]] = []
        for i, line in enumerate(block.splitlines()):
            if i:
                nodes.append({"type": "hardBreak"})
            if line:
                nodes.append({"type": "text", "text": line})
        if nodes:
            content.append({"type": "paragraph", "content": nodes})
    if link:
        content.append(
            {
                "type": "paragraph",
                "content": [
                    {
                        "type": "text",
                        "text": link_text,
                        "marks": [{"type": "link", "attrs": {"href": link}}],
                    }
                ],
            }
        )
    if not content:
        content.append({"type": "paragraph", "content": []})
    return {"type": "doc", "version": 1, "content": content}


class JiraSink(TicketSink[JiraSinkSettings]):
    type = "jira"

    def login(self) -> tuple[str, str]:
        return self.config.email, self.config.api_token.get_secret_value()

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        return http.json_object(response, what=self._what)

    def from_stored(self, stored: str) -> Ticket:
        return Ticket(id=stored, label=stored, url=f"{self._base}/browse/{stored}")

    def to_stored(self, ticket: Ticket) -> str:
        return ticket.id

    def issue_fields(self, envelope: Envelope, delivery: Delivery) -> dict[str, Any]:
        ctx = context(envelope, delivery, self.name)
        summary = " ".join(self.templates.render("summary.txt", ctx).split())[:MAX_SUMMARY]
        fields: dict[str, Any] = {
            "project": {"key": self.config.project},
            "issuetype": {"name": self.config.issue_type},
            "summary": summary or envelope.id,
            "description": adf(self.templates.render("description.txt", ctx), envelope.web_url),
            "labels": [*self.config.labels, alert_label(envelope)],
        }
        priority = self.config.priorities.get(envelope.severity)  # type: ignore[call-overload]
        if priority:
            fields["priority"] = {"name": priority}
        return fields

    async def find(self, envelope: Envelope) -> Ticket | None:
        jql = (
            f'project = "{self.config.project}" AND labels = "{alert_label(envelope)}" '
            "ORDER BY created ASC"
        )
        response = await self._api(
            "GET", "/rest/api/3/search/jql", params={"jql": jql, "fields": "key", "maxResults": "1"}
        )
        issues = self._json(response).get("issues") or []
        if issues and isinstance(issues[0], dict) and issues[0].get("key"):
            return self.from_stored(str(issues[0]["key"]))
        return None

    async def create(self, envelope: Envelope, delivery: Delivery) -> Ticket:
        response = await self._api(
            "POST", "/rest/api/3/issue", json={"fields": self.issue_fields(envelope, delivery)}
        )
        key = self._json(response).get("key")
        if not key:
            raise PermanentError(f"jira sink {self.name}: create answered without an issue key")
        return self.from_stored(str(key))

    async def comment(self, ticket: Ticket, envelope: Envelope, delivery: Delivery) -> None:
        text = self.templates.render("comment.txt", context(envelope, delivery, self.name))
        await self._api("POST", f"/rest/api/3/issue/{ticket.id}/comment", json={"body": adf(text)})

    async def resolve(self, ticket: Ticket, envelope: Envelope, delivery: Delivery) -> bool:
        wanted = self.config.resolve_transition
        if not wanted:
            return False
        issue = self._json(
            await self._api("GET", f"/rest/api/3/issue/{ticket.id}", params={"fields": "status"})
        )
        status = (issue.get("fields") or {}).get("status") or {}
        if (status.get("statusCategory") or {}).get("key") == "done":
            return False  # already resolved (a retry, or a human was faster)
        listing = self._json(await self._api("GET", f"/rest/api/3/issue/{ticket.id}/transitions"))
        transition_id = None
        for t in listing.get("transitions") or []:
            if str(t.get("id")) == wanted or str(t.get("name", "")).lower() == wanted.lower():
                transition_id = str(t.get("id"))
                break
        if transition_id is None:
            raise PermanentError(
                f"jira sink {self.name}: transition {wanted!r} is not available on {ticket.id}"
            )
        await self._api(
            "POST",
            f"/rest/api/3/issue/{ticket.id}/transitions",
            json={"transition": {"id": transition_id}},
        )
        return True
