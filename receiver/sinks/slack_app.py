"""Slack as an app: one message per alert (or group) in a channel, kept current.

The first delivery about an alert posts a Block Kit message (``chat.postMessage``); every
later one rewrites that message in place (``chat.update``: status, classification, owner,
the latest comment, the buttons that still make sense) and adds a short thread reply saying
what changed (old -> new) and, from the alert's latest comment, who did it. A resolved alert's
message says so in its header and first line and carries no triage buttons.

One parent per alert and channel, whatever the retries, restarts and workers: under the
store's per-alert lock (the ticket sinks' :class:`~receiver.sinks.base.TicketStore`, keyed by
``keys.slack_message``),

1. a stored record names the message -> update it (and reply in its thread once per version);
2. none -> write a ``posting`` marker, post, then record ``{channel, ts}`` at once; the
   delivery is acknowledged only after that record is written;
3. a ``posting`` marker without a ts (a worker died between post and record) -> look for the
   message in the channel's recent history by its metadata (the alert's id) and adopt it;
   only if it is not there is a new parent posted (``conversations.history`` needs the
   ``channels:history`` scope; without it that rare case may post a second parent, logged).

The Web API calls, on the sinks' shared httpx client, and how Slack's answers are classified
(HTTP 429 ``ratelimited`` and transient errors retried, others permanent) are
:mod:`receiver.sinks.slack_api`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from receiver.config.sinks import TEMPLATE_NAMES, SlackSinkSettings
from receiver.envelope import Envelope
from receiver.sinks import http
from receiver.sinks.base import BaseSink, Delivery, PermanentError, Result, TicketStore
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.slack import SEVERITY_EMOJI, mrkdwn_escape
from receiver.sinks.slack_api import SlackApi
from receiver.sinks.templating import Templates, context

__all__ = ["SlackAppSink"]

log = logging.getLogger(__name__)

METADATA_TYPE = "graph_security_alert"
HISTORY_LIMIT = 200  # recent messages searched for a parent a dead worker may have posted
_STATUS = {
    "new": ("New", ":red_circle:", ""),
    "inProgress": ("In progress", ":large_orange_circle:", "In progress"),
    "resolved": ("Resolved", ":white_check_mark:", "Resolved"),
    "unknown": ("Unknown", ":white_circle:", ""),
}
_CHANGE_LABELS = {
    "status": "Status",
    "severity": "Severity",
    "assigned_to": "Assigned to",
    "classification": "Classification",
    "determination": "Determination",
}
# Envelope -> the triage buttons (action, label, value, confirmation) its message carries
# (receiver.actions.rules.buttons, given by the pipeline).
Buttons = Callable[[Envelope], Sequence[tuple[str, str, str, str]]]


@dataclass(frozen=True, slots=True)
class _Record:
    channel: str
    ts: str
    state: dict[str, str]
    replied: str = ""  # the last version a thread reply was posted for
    comments: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {
                "channel": self.channel,
                "ts": self.ts,
                "state": self.state,
                "replied": self.replied,
                "comments": self.comments,
            },
            separators=(",", ":"),
        )


def _record(stored: str | None) -> _Record | float | None:
    """The stored message record; or the time a ``posting`` marker was written; or None."""
    if not stored:
        return None
    try:
        data = json.loads(stored)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if data.get("posting"):
        return float(data.get("at") or 0)
    if not data.get("channel") or not data.get("ts"):
        return None
    state = data.get("state") if isinstance(data.get("state"), dict) else {}
    return _Record(
        str(data["channel"]),
        str(data["ts"]),
        {str(k): str(v) for k, v in (state or {}).items()},
        str(data.get("replied") or ""),
        int(data.get("comments") or 0),
    )


def _comments(envelope: Envelope) -> list[dict[str, Any]]:
    raw = envelope.raw.get("comments") if isinstance(envelope.raw, dict) else None
    return [c for c in raw if isinstance(c, dict)] if isinstance(raw, list) else []


def _comment_text(comment: dict[str, Any]) -> str:
    text = str(comment.get("comment") or "")
    by = str(comment.get("createdByDisplayName") or "")
    return f"{text} ({by})" if by and by not in text else text


class SlackAppSink(BaseSink):
    type = "slack"

    def __init__(
        self,
        config: SlackSinkSettings,
        pool: http.ClientPool,
        store: TicketStore | None,
        *,
        buttons: Buttons | None = None,
        metrics: SinkMetrics | None = None,
    ) -> None:
        super().__init__(config.name, metrics=metrics)
        assert config.bot_token is not None and config.channel
        self.buttons = buttons
        self.config = config
        self.store = store
        # interactive: buttons that act from Slack; links: the signed action links instead.
        self.interactive = config.buttons == "interactive"
        token = config.bot_token.get_secret_value()
        http.register_secret(token)
        self.channel = config.channel
        # The channel's id (conversations.history wants one): given, or learnt from a post.
        self._channel_id = self.channel if self.channel[:1] in ("C", "G") else ""
        # The store's key names the channel: letters, digits and -_. only.
        self._channel_key = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.channel)
        self.templates = Templates(
            "slack", TEMPLATE_NAMES["slack"], config.templates, filters={"mrkdwn": mrkdwn_escape}
        )
        self.api = SlackApi(
            pool.client(config.ca_bundle),
            config.api_url,
            token,
            timeout_s=config.timeout_s,
            what=f"slack sink {self.name}",
        )

    # --- rendering ------------------------------------------------------------------------
    def message(self, envelope: Envelope, delivery: Delivery) -> dict[str, Any]:
        label, mark, word = _STATUS.get(envelope.status, _STATUS["unknown"])
        detail = []
        if envelope.status == "resolved" and envelope.classification:
            detail.append(envelope.classification)
        if envelope.determination:
            detail.append(envelope.determination)
        if envelope.assigned_to:
            detail.append(f"owner {envelope.assigned_to}")
        comments = _comments(envelope)
        buttons = (
            [
                {
                    "action": action,
                    "label": label,
                    "value": value,
                    "style": "primary" if action == "take" else "",
                    "confirm": confirm,
                }
                for action, label, value, confirm in self.buttons(envelope)
            ]
            if self.interactive and self.buttons is not None
            else []
        )
        ctx = context(
            envelope,
            delivery,
            self.name,
            emoji=SEVERITY_EMOJI.get(envelope.severity, ":white_circle:"),
            status_label=label,
            status_mark=mark,
            status_word=word,
            state_detail=" · ".join(detail),
            buttons=buttons,
            last_comment=_comment_text(comments[-1]) if comments else "",
            **({"actions": []} if self.interactive else {}),
        )
        doc: dict[str, Any] = self.templates.render_json("app_message.json", ctx)
        doc["metadata"] = {
            "event_type": METADATA_TYPE,
            "event_payload": {"alert_id": envelope.id, "tenant_id": envelope.tenant_id},
        }
        return doc

    def reply(
        self,
        envelope: Envelope,
        delivery: Delivery,
        before: dict[str, str],
        new_comments: list[dict[str, Any]],
    ) -> str:
        lines = []
        for name in envelope.changes:
            if name in _CHANGE_LABELS:
                lines.append(
                    {
                        "label": _CHANGE_LABELS[name],
                        "before": before.get(name) or "(none)",
                        "after": str(getattr(envelope, name, "")) or "(none)",
                    }
                )
        by = "; ".join(_comment_text(c) for c in new_comments[-3:])
        ctx = context(
            envelope,
            delivery,
            self.name,
            change_lines=lines,
            by=by,
            reminder="reminder" in envelope.changes,
        )
        return self.templates.render("app_reply.txt", ctx)

    # --- delivery -------------------------------------------------------------------------
    async def _send(self, envelope: Envelope, delivery: Delivery) -> Result:
        if self.store is None:
            raise PermanentError(f"slack sink {self.name}: no message store configured")
        store = self.store
        message = self.message(envelope, delivery)
        key = (self._channel_key, envelope.tenant_id, envelope.id)
        async with store.lock(*key):
            found = _record(await store.get(*key))
            if isinstance(found, float):  # under the lock: the poster died mid-way
                found = await self._adopt(envelope)
            if found is None:
                return await self._post_parent(envelope, message, key)
            return await self._update(envelope, delivery, message, found, key)

    async def _post_parent(
        self, envelope: Envelope, message: dict[str, Any], key: tuple[str, str, str]
    ) -> Result:
        assert self.store is not None
        await self.store.put(*key, json.dumps({"posting": True, "at": time.time()}))
        answer = await self.api.call(
            "chat.postMessage", {"channel": self.channel, "unfurl_links": False, **message}
        )
        if str(answer.get("channel") or "").startswith(("C", "G")):
            self._channel_id = str(answer["channel"])
        record = _Record(
            str(answer.get("channel") or self.channel),
            str(answer.get("ts")),
            envelope.material(),
            replied=envelope.version,
            comments=len(_comments(envelope)),
        )
        await self.store.put(*key, record.to_json())
        self.metrics.tickets.labels(self.name, "posted").inc()
        return Result(detail=f"posted message {record.ts} in {record.channel}", ticket_id=record.ts)

    async def _update(
        self,
        envelope: Envelope,
        delivery: Delivery,
        message: dict[str, Any],
        record: _Record,
        key: tuple[str, str, str],
    ) -> Result:
        assert self.store is not None
        try:
            await self.api.call(
                "chat.update", {"channel": record.channel, "ts": record.ts, **message}
            )
        except PermanentError as exc:
            if "message_not_found" not in str(exc):
                raise
            log.warning(
                "sink %s: the message of alert %s was deleted; posting a new one",
                self.name,
                envelope.id,
                extra={"sink": self.name, "alert_id": envelope.id},
            )
            return await self._post_parent(envelope, message, key)
        done = [f"updated message {record.ts}"]
        comments = _comments(envelope)
        replied = record.replied
        if (
            self.config.thread_replies
            and envelope.is_update
            and envelope.changes
            and record.replied != envelope.version
        ):
            text = self.reply(envelope, delivery, record.state, comments[record.comments :])
            await self.api.call(
                "chat.postMessage",
                {
                    "channel": record.channel,
                    "thread_ts": record.ts,
                    "text": text,
                    "unfurl_links": False,
                },
            )
            replied = envelope.version
            done.append("replied in thread")
        await self.store.put(
            *key,
            _Record(
                record.channel, record.ts, envelope.material(), replied, len(comments)
            ).to_json(),
        )
        self.metrics.tickets.labels(self.name, "updated").inc()
        return Result(detail=", ".join(done), ticket_id=record.ts)

    async def _adopt(self, envelope: Envelope) -> _Record | None:
        """The parent a worker that died between post and record may have posted."""
        if not self._channel_id:
            log.warning(
                "sink %s: the channel's id is not known yet, so a message a dead "
                "worker may have posted for alert %s cannot be looked for (give "
                "channel as an id)",
                self.name,
                envelope.id,
                extra={"sink": self.name, "alert_id": envelope.id},
            )
            return None
        channel = self._channel_id
        try:
            answer = await self.api.call(
                "conversations.history",
                params={
                    "channel": channel,
                    "limit": str(HISTORY_LIMIT),
                    "include_all_metadata": "true",
                },
            )
        except PermanentError as exc:
            log.warning(
                "sink %s: cannot look for the message of alert %s (%s); posting one",
                self.name,
                envelope.id,
                exc,
                extra={"sink": self.name, "alert_id": envelope.id},
            )
            return None
        for item in answer.get("messages") or []:
            meta = item.get("metadata") if isinstance(item, dict) else None
            payload = meta.get("event_payload") if isinstance(meta, dict) else None
            if (
                isinstance(meta, dict)
                and isinstance(payload, dict)
                and meta.get("event_type") == METADATA_TYPE
                and payload.get("alert_id") == envelope.id
                and payload.get("tenant_id") == envelope.tenant_id
                and item.get("ts")
            ):
                self.metrics.tickets.labels(self.name, "adopted").inc()
                return _Record(channel, str(item["ts"]), {}, comments=0)
        return None
