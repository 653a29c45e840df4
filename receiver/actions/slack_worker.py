"""Acting on Slack button clicks: the worker side of the Slack app's interactivity.

The web role verified and queued each click (:mod:`receiver.actions.slack`); here, in a worker
(consumer group ``slack`` on ``keys.slack_interactions``, so a click survives a worker that
dies: another takes the pending entry over), with the rules action links use
(:mod:`receiver.actions.rules`):

1. the button must name a tenant we serve; with ``only_listed_users`` the Slack user must be
   listed in ``users`` (else "not allowed");
2. the button is claimed once per (alert, action, version) with ``SET NX``
   (``keys.slack_claim``) before Graph is called: a second click on the same button of the
   same message is told who used it; a retry of this very click (the claim names its stream
   entry) goes on;
3. the alert is read from Graph; :func:`rules.refusal` may refuse (already taken by someone
   else, already resolved);
4. Graph is updated and read back (:func:`receiver.actions.updates.apply_update`): status,
   classification, ``assignedTo`` (the user's UPN from ``users``, else their Slack name) and a
   comment "Taken via Slack by ...";
5. the action is audited like a link (``via: slack``, who, the Slack user and team) and the
   alert as Graph now has it goes through the pipeline again (``postback``), so the Slack
   message is updated in place (with its thread reply) like every other channel.

A refusal reaches the person as an ephemeral message through the click's ``response_url``,
which must start with ``response_url_prefix`` (https://hooks.slack.com/): the URL comes in a
signed request, but it is still never a way to make the worker call anywhere else.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from receiver.actions import audit
from receiver.actions.postback import queue_changed
from receiver.actions.rules import ACTIONS, parse_button_value, refusal
from receiver.actions.updates import (
    AlertNotFound,
    GraphApi,
    apply_update,
    for_action,
    read_alert,
)
from receiver.actions.updates import envelope as alert_envelope
from receiver.config.settings import Settings
from receiver.graph.auth import GraphAuthError
from receiver.graph.client import GraphError, GraphUnavailable
from receiver.pipeline.consumer import Entry, Poison
from receiver.redaction import cut
from receiver.store.keys import Keys
from receiver.transport import Client, Transport

__all__ = ["GROUP", "SlackActions"]

log = logging.getLogger(__name__)

GROUP = "slack"
CLAIM_TTL_S = 30 * 86_400
VIA = "Slack"


def _text(exc: GraphError | GraphAuthError) -> str:
    if isinstance(exc, GraphAuthError):
        return f"no token: {exc}"
    return f"{exc.status} {exc.code}: {exc.message}" if exc.status else f"{exc.code}: {exc.message}"


class SlackActions:
    """The handler of the ``slack_interactions`` stream."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        keys: Keys,
        graph: GraphApi,
        *,
        registry: CollectorRegistry | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.actions.slack
        self.redis = redis
        self.keys = keys
        self.graph = graph
        self.outcomes = Counter(
            "receiver_slack_actions",
            "Slack button clicks acted on, by action and outcome",
            ["action", "outcome"],
            registry=registry,
        )
        self._client = client or Client(
            transport=Transport(),
            timeout=httpx.Timeout(5.0),
            follow_redirects=False,
            headers={"user-agent": "graph-alert-receiver"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def handle(self, entry: Entry) -> None:
        click = {k.decode(): v.decode("utf-8", "replace") for k, v in entry.fields.items()}
        action = click.get("action", "")
        ref = parse_button_value(click.get("value", ""))
        if action not in ACTIONS or ref is None:
            raise Poison("not a triage button click")
        user_id = click.get("user_id", "")
        upn = self.config.users.get(user_id, "")
        by = upn or click.get("user_name", "") or user_id
        who = audit.AuditRecord(
            action=action,
            outcome="",
            alert_id=ref["a"],
            tenant_id=ref["t"],
            source_api=ref["s"],
            via="slack",
            by=by,
            identity=f"slack user {user_id} (team {click.get('team_id', '')})",
            client="slack",
            user_agent="",
            changes="",
        )
        if self.settings.tenant(ref["t"]) is None:
            await self._refuse(
                click,
                who,
                "wrong_tenant",
                "This alert belongs to a tenant this receiver does not serve.",
            )
            return
        if self.config.only_listed_users and not upn:
            await self._refuse(
                click,
                who,
                "not_allowed",
                "You are not allowed to triage alerts from Slack here. Ask an "
                "administrator to add your Slack user to the receiver.",
            )
            return
        claim = self.keys.slack_claim(ref["t"], ref["a"], action, ref["v"])
        mine = json.dumps({"entry": entry.id, "by": by}, separators=(",", ":"))
        if not await self.redis.set(claim, mine, nx=True, ex=CLAIM_TTL_S):
            held: Any = await self.redis.get(claim)
            owner = _json(held)
            if owner.get("entry") != entry.id:
                await self._refuse(
                    click,
                    who,
                    "reused",
                    f"{ACTIONS[action].label} was already used on this message "
                    f"by {owner.get('by') or 'someone'}.",
                )
                return
        await self._act(click, who, claim, ref)

    async def _act(
        self, click: dict[str, str], who: audit.AuditRecord, claim: str, ref: dict[str, str]
    ) -> None:
        action = who.action
        update = for_action(action, who.by, via=VIA)
        who = replace(who, changes=update.describe())
        try:
            source, alert = await read_alert(self.graph, ref["t"], ref["a"], ref["s"])
            envelope = alert_envelope(source, alert)
            if envelope.tenant_id and envelope.tenant_id != ref["t"].lower():
                raise AlertNotFound("wrong tenant")
            why = refusal(action, envelope, who.by)
            if why is not None:
                await self._finish(
                    claim, click, who, "not_applicable", f"Nothing was changed: {why}.", graph=why
                )
                return
            applied = await apply_update(
                self.graph, ref["t"], ref["a"], update, source_api=source, alert=alert
            )
        except AlertNotFound:
            await self._finish(
                claim, click, who, "not_found", "This alert no longer exists in Microsoft Defender."
            )
            return
        except (GraphUnavailable, GraphAuthError) as exc:
            try:
                await self.redis.delete(claim)  # nothing certain happened: let them try again
            except (RedisError, OSError):
                log.warning(
                    "could not release the Slack claim after Graph failed",
                    extra={"alert_id": ref["a"], "tenant_id": ref["t"]},
                )
            await self._refuse(
                click,
                who,
                "graph_unavailable",
                "Microsoft Graph is unavailable; the alert was not updated. Try again in a minute.",
                graph=_text(exc),
                request_id=getattr(exc, "request_id", ""),
            )
            return
        except GraphError as exc:
            await self._finish(
                claim,
                click,
                who,
                "graph_refused",
                f"Microsoft Graph refused the update: {_text(exc)}",
                graph=_text(exc),
                request_id=exc.request_id,
            )
            return
        detail = "updated" + (
            f"; comment not added: {applied.comment_error}" if applied.comment_error else ""
        )
        await self._finish(claim, click, who, "done", "", graph=detail)
        await queue_changed(self.redis, self.keys, ref["t"], applied.source_api, applied.after)

    async def _finish(
        self,
        claim: str,
        click: dict[str, str],
        who: audit.AuditRecord,
        outcome: str,
        tell: str,
        **changes: Any,
    ) -> None:
        """Audit, keep the outcome on the claim, and tell the person when refused."""
        record = await self._audit(replace(who, outcome=outcome, **changes))
        try:
            await self.redis.set(
                claim,
                json.dumps(
                    {"entry": "", "by": record.by, "outcome": outcome}, separators=(",", ":")
                ),
                xx=True,
                keepttl=True,
            )
        except (RedisError, OSError):
            log.warning(
                "could not record the outcome on the Slack claim",
                extra={"alert_id": who.alert_id, "tenant_id": who.tenant_id},
            )
        if tell:
            await self._ephemeral(click, tell)

    async def _refuse(
        self, click: dict[str, str], who: audit.AuditRecord, outcome: str, tell: str, **changes: Any
    ) -> None:
        await self._audit(replace(who, outcome=outcome, **changes))
        await self._ephemeral(click, tell)

    async def _audit(self, record: audit.AuditRecord) -> audit.AuditRecord:
        self.outcomes.labels(record.action, record.outcome).inc()
        log.info(
            "slack action %s on alert %s: %s",
            record.action,
            record.alert_id,
            record.outcome,
            extra={
                "alert_id": record.alert_id,
                "tenant_id": record.tenant_id,
                "reason": record.outcome,
            },
        )
        return await audit.write(self.redis, self.keys, record)

    async def _ephemeral(self, click: dict[str, str], text: str) -> None:
        """Tell only the person who clicked (Slack's response_url, ephemeral)."""
        url = click.get("response_url", "")
        if not url or not url.startswith(self.config.response_url_prefix):
            log.warning(
                "slack click without a usable response_url; refusal not shown",
                extra={"reason": "response_url"},
            )
            return
        try:
            response = await self._client.post(
                url, json={"response_type": "ephemeral", "replace_original": False, "text": text}
            )
        except httpx.HTTPError as exc:
            log.warning("could not post the ephemeral answer: %s", type(exc).__name__)
            return
        if response.status_code >= 300:
            log.warning(
                "Slack refused the ephemeral answer: HTTP %d %s",
                response.status_code,
                cut(response.text, 100),
            )


def _json(value: Any) -> dict[str, Any]:
    try:
        data = json.loads(value) if value else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
