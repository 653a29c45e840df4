"""Route tree semantics, table-tested: continue, nesting, inheritance, defaults."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from receiver.envelope import Envelope
from receiver.routing.config import RoutesConfig
from receiver.routing.tree import Trace, route

TREE = {
    "route": {
        "receiver": "default",
        "group_by": ["tenant"],
        "group_wait": "30s",
        "routes": [
            {"receiver": "archive", "continue": True},
            {
                "matchers": ['severity="high"'],
                "receiver": "pager",
                "repeat_interval": "1h",
                "routes": [
                    {"matchers": ['tenant="fabrikam"'], "receiver": "fabrikam-pager"},
                    {"matchers": ['provider=~"IPC|MCAS"'], "continue": True},
                    {"matchers": ['status!="resolved"'], "receiver": "tickets"},
                ],
            },
            {"matchers": ['severity=~"medium|low"', 'provider="IPC"'], "receiver": "identity"},
            {"matchers": ['title=~".*[Tt]est.*"'], "receiver": "devnull"},
        ],
    },
}
ROUTES = TypeAdapter(RoutesConfig).validate_python(TREE)


def env(**fields: Any) -> Envelope:
    base: dict[str, Any] = {
        "id": "a1",
        "tenant_id": "t",
        "source_api": "alerts_v2",
        "title": "Suspicious sign-in",
        "severity": "low",
        "status": "new",
        "tenant": "contoso",
        "provider": "microsoftDefenderForEndpoint",
    }
    base.update(fields)
    return Envelope(**base)


@pytest.mark.parametrize(
    ("fields", "sinks"),
    [
        # only the archive (continue) matches: as in Alertmanager, a matching child -- even a
        # `continue` one -- means the root's own receiver is not used
        ({}, ["archive"]),
        # high, contoso, MDE, not resolved: pager subtree, first child no, second no,
        # third (tickets) yes
        ({"severity": "high"}, ["archive", "tickets"]),
        # high + fabrikam: the first child takes it and stops
        ({"severity": "high", "tenant": "fabrikam"}, ["archive", "fabrikam-pager"]),
        # high + IPC: the continue child matches (inherits 'pager'), then tickets too
        ({"severity": "high", "provider": "IPC"}, ["archive", "pager", "tickets"]),
        # high + resolved: no child matches, so the pager route's own receiver
        ({"severity": "high", "status": "resolved"}, ["archive", "pager"]),
        # both matchers of the identity route must match
        ({"severity": "medium", "provider": "IPC"}, ["archive", "identity"]),
        ({"severity": "medium", "provider": "MCAS"}, ["archive"]),
        ({"title": "This is a Test alert"}, ["archive", "devnull"]),
    ],
)
def test_routing_table(fields: dict[str, Any], sinks: list[str]) -> None:
    assert [d.sink for d in route(ROUTES.route, env(**fields))] == sinks


def test_inheritance_of_grouping() -> None:
    decisions = {d.sink: d for d in route(ROUTES.route, env(severity="high", provider="IPC"))}
    pager = decisions["pager"]
    assert pager.route == "route.routes[1].routes[1]"
    assert pager.group_by == ("tenant",)  # from the root
    assert pager.group_wait_s == 30  # from the root
    assert pager.repeat_interval_s == 3600  # from the parent
    assert decisions["archive"].repeat_interval_s == 0


def test_a_sink_gets_an_alert_once() -> None:
    tree = TypeAdapter(RoutesConfig).validate_python(
        {
            "route": {
                "receiver": "a",
                "routes": [{"receiver": "a", "continue": True}, {"receiver": "a"}],
            }
        }
    )
    assert [d.sink for d in route(tree.route, env())] == ["a"]


def test_trace_explains() -> None:
    trace = Trace()
    route(ROUTES.route, env(severity="medium", provider="MCAS"), trace)
    text = "\n".join(trace.lines)
    assert (
        'route.routes[2] [severity=~"medium|low", provider="IPC"] does not match: '
        'provider="IPC"' in text
    )
    assert "route.routes[0] -> archive" in text


def test_no_child_matches_the_root_receiver_takes_it() -> None:
    tree = TypeAdapter(RoutesConfig).validate_python(
        {
            "route": {
                "receiver": "default",
                "routes": [{"matchers": ['severity="high"'], "receiver": "pager"}],
            }
        }
    )
    assert [d.sink for d in route(tree.route, env())] == ["default"]
    assert [d.route for d in route(tree.route, env())] == ["route"]
