"""Issue 15, item 3 for alert updates (action links, ``receiver alerts update``): an alert id
becomes one quoted path segment or is refused before any Graph call. The real Graph client
against the simulator, every request it sends recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from receiver.actions.updates import (
    AlertNotFound,
    AlertUpdate,
    InvalidAlertId,
    apply_update,
    read_alert,
)
from receiver.graph.auth import TokenProvider
from receiver.graph.client import GraphClient
from tests.fixtures.settings import MakeSettings
from tests.graph.helpers import sim_settings
from tests.graph.test_client import RecordingTransport

BAD_IDS = [
    "../../../_sim/tenants",
    "..",
    ".",
    "a/../../subscriptions",
    "a%2F..%2F..%2Fsubscriptions",
    "%2e%2e",
    "x?$expand=alerts",
    "x#y",
    "",
    "a b",
    "x" * 257,
    "\u00e9t\u00e9",
    "a\\..\\b",
]


async def test_ids_that_are_not_graph_ids_reach_no_path(
    make_simulator: Callable[..., Any], make_settings: MakeSettings
) -> None:
    sim = make_simulator()
    tid = sim.tenant.tenant_id
    [real] = (await asyncio.to_thread(sim.control.create_alerts, tid, 1, kind="v2"))["ids"]
    settings = sim_settings(make_settings, sim, "redis://127.0.0.1:1/0")
    transport = RecordingTransport(verify=sim.ssl_context())
    graph = GraphClient(
        settings.graph, TokenProvider(settings.graph, settings.tenants), transport=transport
    )
    try:
        for bad in BAD_IDS:
            for source in ("auto", "alerts_v2", "alerts_v1"):
                with pytest.raises(InvalidAlertId):
                    await read_alert(graph, tid, bad, source)
            with pytest.raises(AlertNotFound):  # what the action page already refuses
                await apply_update(
                    graph,
                    tid,
                    bad,
                    AlertUpdate(status="inProgress"),
                    source_api="alerts_v2",
                    alert={"id": bad},
                )
        assert transport.sent == []
        # A real (non-GUID) alerts_v2 id is read and updated at its own path.
        source, alert = await read_alert(graph, tid, real, "alerts_v2")
        assert (source, alert["id"]) == ("alerts_v2", real)
        applied = await apply_update(
            graph, tid, real, AlertUpdate(status="inProgress"), source_api="alerts_v2", alert=alert
        )
        assert applied.after["status"] == "inProgress"
    finally:
        await graph.aclose()
    assert {path for _, path in transport.sent} == {f"/v1.0/security/alerts_v2/{real}"}
