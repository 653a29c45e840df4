"""The action endpoint, served by uvicorn in front of the web app, against the simulator over
HTTPS and a real Redis: GET changes nothing, POST acts once, every refusal is a clear page."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from redis.asyncio import Redis

from receiver.actions.app import mount
from receiver.actions.audit import AuditRecord, recent
from receiver.actions.links import LinkSigner
from receiver.config.settings import Settings
from receiver.pipeline import records
from receiver.store.entries import NotificationEntry
from receiver.store.keys import Keys
from receiver.web.app import create_app
from tests.fixtures.settings import MakeSettings
from tests.fixtures.simulator import SimTenant, SimulatorHandle
from tests.fixtures.web import free_port, served
from tests.graph.helpers import sim_settings, tenant_entry

NEW_KEY = "new-signing-key-0123456789abcdefghijklmnop"
OLD_KEY = "old-signing-key-0123456789abcdefghijklmnop"
KEYS = Keys("{test}")


@dataclass
class Harness:
    sim: SimulatorHandle
    settings: Settings
    client: httpx.AsyncClient
    redis: Redis
    other: SimTenant  # a second configured tenant
    registry: CollectorRegistry

    @property
    def tenant_id(self) -> str:
        return self.sim.tenant.tenant_id

    def link(
        self,
        alert_id: str,
        action: str = "take",
        *,
        tenant_id: str | None = None,
        source: str = "alerts_v2",
        signer: LinkSigner | None = None,
    ) -> str:
        signer = signer or LinkSigner([("k2", NEW_KEY.encode())], 3600)
        token = signer.sign(alert_id, tenant_id or self.tenant_id, source, action)
        return f"/actions/{token}"

    def alert(
        self, alert_id: str, source: str = "alerts_v2", tenant: SimTenant | None = None
    ) -> dict[str, Any]:
        path = "alerts_v2" if source == "alerts_v2" else "alerts"
        with self.sim.graph(tenant) as graph:
            response = graph.get(f"/security/{path}/{alert_id}")
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body

    def updates(self) -> int:
        counters = self.sim.control.counters()
        return counters.get("alerts.v2.updated", 0) + counters.get("alerts.legacy.updated", 0)

    async def audit(self) -> list[AuditRecord]:
        return list(reversed(await recent(self.redis, KEYS)))

    async def post(self, path: str, name: str = "Adele Vance", **headers: str) -> httpx.Response:
        return await self.client.post(path, data={"name": name, "confirm": "1"}, headers=headers)


@pytest.fixture
async def harness(
    simulator: SimulatorHandle, redis_url: str, make_settings: MakeSettings
) -> AsyncIterator[Harness]:
    [other] = simulator.control.add_tenants(1)
    port = free_port()
    settings = sim_settings(
        make_settings,
        simulator,
        redis_url,
        public_url=f"http://127.0.0.1:{port}",
        tenants=[tenant_entry(simulator.tenant, "contoso"), tenant_entry(other, "fabrikam")],
        graph={"max_retries": 0},
        actions={
            "enabled": True,
            "signing_keys": [{"id": "k2", "key": NEW_KEY}, {"id": "k1", "key": OLD_KEY}],
        },
    )
    registry = CollectorRegistry()
    app = mount(create_app(settings), settings, registry=registry)
    redis = Redis.from_url(redis_url)
    try:
        async with (
            served(app, port) as url,
            httpx.AsyncClient(base_url=url, trust_env=False, timeout=30) as client,
        ):
            yield Harness(simulator, settings, client, redis, other, registry)
    finally:
        await redis.aclose()


async def test_get_shows_a_confirmation_and_changes_nothing(harness: Harness) -> None:
    alert_id = harness.sim.control.create_alert(
        harness.tenant_id, kind="v2", v2Overrides={"title": "Bad <script>alert(1)</script>"}
    )
    before = harness.alert(alert_id)
    updates = harness.updates()
    link = harness.link(alert_id, "resolve_true_positive")
    for _ in range(3):  # a link preview, a mail scanner, the analyst
        page = await harness.client.get(link)
        assert page.status_code == 200
    assert "Resolve: true positive" in page.text and 'method="post"' in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>" not in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    head = await harness.client.head(link)
    assert head.status_code == 200
    assert harness.alert(alert_id) == before and harness.updates() == updates
    assert await harness.audit() == []
    assert await harness.redis.keys(KEYS.action_link("x")[:-1] + "*") == []
    # the link still works after all those GETs
    assert (await harness.post(link)).status_code == 200


async def test_take_updates_reads_back_audits_and_queues_the_change(harness: Harness) -> None:
    alert_id = harness.sim.control.create_alert(harness.tenant_id, kind="v2")
    link = harness.link(alert_id, "take")
    page = await harness.post(link, name="Adele\nVance", **{"user-agent": "pytest-browser"})
    assert page.status_code == 200, page.text
    assert "Done: Take it" in page.text and "inProgress" in page.text
    alert = harness.alert(alert_id)
    assert alert["status"] == "inProgress" and alert["assignedTo"] == "Adele Vance"
    assert [c["comment"] for c in alert["comments"]] == [
        "Taken via alert action link by Adele Vance"
    ]

    [record] = await harness.audit()
    assert (record.action, record.outcome, record.by) == ("take", "done", "Adele Vance")
    assert record.alert_id == alert_id and record.tenant_id == harness.tenant_id
    assert record.client.startswith("127.0.0.1") and record.user_agent == "pytest-browser"
    assert "status=inProgress" in record.changes and record.via == "link"
    timeline = await records.timeline(harness.redis, KEYS, harness.tenant_id, alert_id)
    assert timeline[-1]["event"] == "action" and timeline[-1]["by"] == "Adele Vance"
    [(_, fields)] = await harness.redis.xrange(KEYS.notifications)
    entry = NotificationEntry.from_fields(fields)
    assert entry.source == "action" and entry.resource_id == alert_id
    assert json.loads(entry.resource_data)["assignedTo"] == "Adele Vance"

    again = await harness.post(link, name="Mallory")
    assert again.status_code == 409
    assert "already used" in again.text and "by Adele Vance: done" in again.text
    assert harness.alert(alert_id)["assignedTo"] == "Adele Vance"
    assert (await harness.client.get(link)).status_code == 409
    assert [r.outcome for r in await harness.audit()] == ["done", "reused"]


async def test_links_follow_the_same_refusals_as_slack_buttons(harness: Harness) -> None:
    """actions/rules.py: a link pressed on an older message does not take an alert from its
    owner, nor act on an alert resolved meanwhile; nothing changes, and it is audited."""
    taken = harness.sim.control.create_alert(harness.tenant_id, kind="v2")
    harness.sim.control.update_alert(
        harness.tenant_id, taken, {"status": "inProgress", "assignedTo": "soc@contoso.com"}
    )
    resolved = harness.sim.control.create_alert(harness.tenant_id, kind="v2")
    harness.sim.control.update_alert(
        harness.tenant_id, resolved, {"status": "resolved", "classification": "falsePositive"}
    )
    updates = harness.updates()
    page = await harness.post(harness.link(taken, "take"), name="Mallory")
    assert page.status_code == 409
    assert "already taken by soc@contoso.com" in page.text
    page = await harness.post(harness.link(resolved, "resolve_true_positive"))
    assert page.status_code == 409 and "already resolved (falsePositive)" in page.text
    assert harness.updates() == updates  # nothing was sent to Graph
    assert harness.alert(taken)["assignedTo"] == "soc@contoso.com"
    outcomes = [(r.alert_id, r.outcome) for r in await harness.audit()]
    assert outcomes == [(taken, "refused"), (resolved, "refused")]


async def test_take_needs_a_name_and_does_not_spend_the_link(harness: Harness) -> None:
    alert_id = harness.sim.control.create_alert(harness.tenant_id, kind="v2")
    link = harness.link(alert_id, "take")
    refused = await harness.post(link, name="  ")
    assert refused.status_code == 400 and "Your name is needed" in refused.text
    assert harness.alert(alert_id)["status"] == "new"
    assert (await harness.post(link)).status_code == 200


async def test_an_unreadable_form_does_not_spend_the_link(harness: Harness) -> None:
    alert_id = harness.sim.control.create_alert(harness.tenant_id, kind="v2")
    link = harness.link(alert_id, "take")
    form = {"content-type": "application/x-www-form-urlencoded"}
    too_large = await harness.client.post(link, content=b"name=" + b"x" * 9000, headers=form)
    not_a_form = await harness.client.post(
        link, content=b"{}", headers={"content-type": "application/json"}
    )
    for refused in (too_large, not_a_form):
        assert refused.status_code == 400 and "Bad form" in refused.text
    assert await harness.audit() == []
    assert (await harness.post(link)).status_code == 200


async def test_legacy_resolve_sends_vendor_information(harness: Harness) -> None:
    harness.sim.control.legacy_alerts("live")  # the retired legacy API, served for this test
    alert_id = harness.sim.control.create_alert(harness.tenant_id, kind="legacy")
    page = await harness.post(
        harness.link(alert_id, "resolve_false_positive", source="alerts_v1"), name=""
    )
    assert page.status_code == 200, page.text
    alert = harness.alert(alert_id, "alerts_v1")
    assert alert["status"] == "resolved" and alert["feedback"] == "falsePositive"
    assert alert["closedDateTime"]
    assert alert["comments"][-1] == "Resolved as false positive via alert action link"
    [record] = await harness.audit()
    assert record.outcome == "done" and record.source_api == "alerts_v1" and record.by == ""


async def test_concurrent_double_submit_acts_once(harness: Harness) -> None:
    alert_id = harness.sim.control.create_alert(harness.tenant_id, kind="v2")
    link = harness.link(alert_id, "resolve_true_positive")
    updates = harness.updates()
    answers = await asyncio.gather(*(harness.post(link, name=f"analyst {i}") for i in range(5)))
    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409, 409]
    alert = harness.alert(alert_id)
    assert alert["status"] == "resolved" and alert["classification"] == "truePositive"
    assert len(alert["comments"]) == 1
    assert harness.updates() - updates == 2  # one PATCH and its comment, once
    outcomes = sorted(r.outcome for r in await harness.audit())
    assert outcomes == ["done", "reused", "reused", "reused", "reused"]
    # each refusal counted once (the audit counted it again before)
    assert (
        harness.registry.get_sample_value(
            "receiver_actions_total", {"action": "resolve_true_positive", "outcome": "reused"}
        )
        == 4
    )


async def test_tampered_links_are_refused(harness: Harness) -> None:
    alert_id = harness.sim.control.create_alert(harness.tenant_id, kind="v2")
    link = harness.link(alert_id, "take")
    header, payload, signature = link.removeprefix("/actions/").split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    forged_payload = payload[:-3] + ("x" if payload[-3] != "x" else "y") + payload[-2:]
    stranger = LinkSigner([("k2", b"not-our-key-0123456789abcdefghijklmnop")], 3600)
    unknown_kid = LinkSigner([("k9", NEW_KEY.encode())], 3600)
    bad = [
        f"/actions/{header}.{payload}.{flipped}",
        f"/actions/{header}.{forged_payload}.{signature}",
        harness.link(alert_id, "take", signer=stranger),
        harness.link(alert_id, "take", signer=unknown_kid),
        "/actions/not-a-token",
        "/actions/" + "a" * 3000,
    ]
    for path in bad:
        for method in ("GET", "POST"):
            answer = await harness.client.request(method, path, data={"name": "x"})
            assert answer.status_code == 400, (path, method)
            assert "This link is not valid" in answer.text and "Nothing was changed" in answer.text
    assert harness.alert(alert_id)["status"] == "new"
    assert await harness.audit() == []  # forged: counted, never audited (issue 15, 8)
    assert harness.registry.get_sample_value(
        "receiver_actions_total", {"action": "unknown", "outcome": "invalid"}
    ) == 2 * len(bad)


async def test_a_link_signed_with_the_previous_key_still_works(harness: Harness) -> None:
    alert_id = harness.sim.control.create_alert(harness.tenant_id, kind="v2")
    old = LinkSigner([("k1", OLD_KEY.encode())], 3600)
    assert (await harness.post(harness.link(alert_id, "take", signer=old))).status_code == 200


async def test_expired_links_are_refused(harness: Harness) -> None:
    import time

    alert_id = harness.sim.control.create_alert(harness.tenant_id, kind="v2")
    past = LinkSigner([("k2", NEW_KEY.encode())], 60, clock=lambda: time.time() - 3600)
    link = harness.link(alert_id, "resolve_true_positive", signer=past)
    for method in ("GET", "POST"):
        answer = await harness.client.request(method, link, data={"name": "x"})
        assert answer.status_code == 410 and "This link has expired" in answer.text
    assert harness.alert(alert_id)["status"] == "new"
    assert [r.outcome for r in await harness.audit()] == ["expired"]
    assert (
        harness.registry.get_sample_value(
            "receiver_actions_total", {"action": "unknown", "outcome": "expired"}
        )
        == 2
    )  # one GET, one POST: counted once each


async def test_wrong_tenant_links_are_refused(harness: Harness) -> None:
    alert_id = harness.sim.control.create_alert(harness.tenant_id, kind="v2")
    updates = harness.updates()
    unserved = harness.link(alert_id, "take", tenant_id=str(uuid.uuid4()))
    for method in ("GET", "POST"):
        answer = await harness.client.request(method, unserved, data={"name": "x"})
        assert answer.status_code == 403 and "another tenant" in answer.text
    # signed for a tenant we serve, but the alert is not that tenant's
    crossed = harness.link(alert_id, "take", tenant_id=harness.other.tenant_id)
    shown = await harness.client.get(crossed)
    assert shown.status_code == 404 and "it belongs to another tenant" in shown.text
    posted = await harness.post(crossed)
    assert posted.status_code == 404
    assert harness.alert(alert_id)["status"] == "new" and harness.updates() == updates
    assert [r.outcome for r in await harness.audit()] == ["wrong_tenant", "not_found"]
    assert (
        harness.registry.get_sample_value(
            "receiver_actions_total", {"action": "take", "outcome": "wrong_tenant"}
        )
        == 2
    )  # the unserved link's GET and POST
    assert (
        harness.registry.get_sample_value(
            "receiver_actions_total", {"action": "unknown", "outcome": "wrong_tenant"}
        )
        is None
    )


async def test_another_sites_origin_is_refused_without_spending_the_link(harness: Harness) -> None:
    alert_id = harness.sim.control.create_alert(harness.tenant_id, kind="v2")
    link = harness.link(alert_id, "take")
    refused = await harness.post(link, origin="https://evil.example")
    assert refused.status_code == 403 and "another site" in refused.text
    assert harness.alert(alert_id)["status"] == "new"
    assert (
        harness.registry.get_sample_value(
            "receiver_actions_total", {"action": "take", "outcome": "forbidden_origin"}
        )
        == 1
    )
    ok = await harness.post(link, origin=str(harness.client.base_url).rstrip("/"))
    assert ok.status_code == 200


async def test_graph_unavailable_keeps_the_link_usable(harness: Harness) -> None:
    alert_id = harness.sim.control.create_alert(harness.tenant_id, kind="v2")
    link = harness.link(alert_id, "resolve_false_positive")
    harness.sim.control.inject_fault("graph_5xx", count=1, status=503)
    failed = await harness.post(link)
    assert failed.status_code == 503 and "The link still works" in failed.text
    harness.sim.control.clear_faults()
    assert (await harness.post(link)).status_code == 200
    assert harness.alert(alert_id)["classification"] == "falsePositive"
    assert [r.outcome for r in await harness.audit()] == ["graph_unavailable", "done"]


async def test_unknown_alert_is_a_clear_404(harness: Harness) -> None:
    answer = await harness.client.get(harness.link("no-such-alert", "take"))
    assert answer.status_code == 404 and "Alert not found" in answer.text


async def test_tokens_stay_out_of_logs_and_metrics(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alert_id = harness.sim.control.create_alert(harness.tenant_id, kind="v2")
    link = harness.link(alert_id, "take")
    token = link.removeprefix("/actions/")
    await harness.client.get(link)
    await harness.post(link)
    await harness.post(link)
    await harness.client.get(link[:-4] + "AAAA")
    # The test's own client logs the URLs it requests (httpx); the receiver's records are
    # the rest, its Graph client's included (those URLs are the simulator's).
    base = str(harness.client.base_url).rstrip("/")
    mine = [r for r in caplog.records if base not in r.getMessage()]
    assert any(r.name.startswith("receiver.actions.") for r in mine)  # the actions were logged ...
    for record in mine:  # ... without their capability
        assert token not in record.getMessage() and token not in json.dumps(
            record.__dict__, default=str
        )
        assert token[-20:] not in json.dumps(record.__dict__, default=str)
    metrics = generate_latest(harness.registry).decode()
    assert 'receiver_actions_total{action="take",outcome="done"} 1.0' in metrics
    assert 'outcome="reused"' in metrics and token[-20:] not in metrics
    for record in await harness.audit():
        assert token[-20:] not in record.to_json()
