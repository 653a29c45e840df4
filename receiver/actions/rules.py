"""The triage rules every way of acting on an alert shares: action links (a web page) and
Slack buttons. One set, so the two cannot drift apart:

- which actions exist (:data:`ACTIONS`), their button labels and what each asks of Graph
  (status, classification, whether it assigns the alert to the person acting);
- which of them make sense for an alert as it is now (:func:`offered`: no "Take it" on an
  alert already in progress with an owner, nothing on a resolved one);
- which requests are refused after reading the alert from Graph (:func:`refusal`: taking an
  alert someone else has, acting on a resolved alert);
- the comment written on the alert, naming the way and the person (:func:`comment`).

Single use: an action link is single use by its nonce (app.py); a Slack button is single use
per (alert, action, version) (``keys.slack_claim``, the version from :func:`button_value`): a
second click on the same button of the
same message version is refused, a click on the message after it changed is judged anew.

Pure: imports the envelope only. The Slack app sink gets :func:`buttons` from the pipeline
(sinks import nothing of actions/).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from receiver.envelope import Envelope

__all__ = [
    "ACTIONS",
    "SOURCES",
    "Action",
    "button_value",
    "buttons",
    "comment",
    "offered",
    "parse_button_value",
    "refusal",
]

# The alert APIs an action can update (incidents and groups have no buttons).
SOURCES = frozenset({"alerts_v1", "alerts_v2"})


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    label: str  # the button's text
    summary: str  # what a confirmation says it will do
    status: str  # the alert status it sets
    classification: str | None = None
    assigns: bool = False  # assignedTo := the person acting
    done: str = ""  # the comment's opening words ("Taken", "Resolved as true positive")


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action(
            "take",
            "Take it",
            "set the alert in progress and assign it to you",
            status="inProgress",
            assigns=True,
            done="Taken",
        ),
        Action(
            "resolve_true_positive",
            "Resolve: true positive",
            "resolve the alert, classified as a true positive",
            status="resolved",
            classification="truePositive",
            done="Resolved as true positive",
        ),
        Action(
            "resolve_false_positive",
            "Resolve: false positive",
            "resolve the alert, classified as a false positive",
            status="resolved",
            classification="falsePositive",
            done="Resolved as false positive",
        ),
    )
}


def offered(envelope: Envelope, allowed: Sequence[str]) -> list[str]:
    """The actions that make sense for the alert as it is now, in button order."""
    if envelope.source_api not in SOURCES or envelope.kind != "alert":
        return []
    if envelope.status == "resolved":
        return []
    out = []
    if envelope.status != "inProgress" or not envelope.assigned_to:
        out.append("take")
    out += ["resolve_true_positive", "resolve_false_positive"]
    return [a for a in out if a in allowed]


def refusal(action: str, alert: Envelope, who: str) -> str | None:
    """Why ``action`` by ``who`` must not be done on the alert as Graph has it now (None: go).
    Taking an alert someone else owns is refused (so is acting on a resolved alert): the
    button was pressed on a message older than the alert."""
    if action not in ACTIONS:
        return f"unknown action {action!r}"
    if alert.status == "resolved":
        by = f" ({alert.classification})" if alert.classification else ""
        return f"the alert is already resolved{by}"
    if (
        action == "take"
        and alert.status == "inProgress"
        and alert.assigned_to
        and alert.assigned_to.lower() != who.lower()
    ):
        return f"the alert is already taken by {alert.assigned_to}"
    return None


def comment(action: str, who: str, via: str) -> str:
    """The comment an action adds to the alert, e.g. "Taken via Slack by Adele Vance"."""
    done = ACTIONS[action].done
    return f"{done} via {via} by {who}" if who else f"{done} via {via}"


def button_value(envelope: Envelope) -> str:
    """What a Slack button carries back: which alert, and which version of it the message
    showed (a claim is single use per (alert, action, version); Slack allows 2,000
    characters)."""
    return json.dumps(
        {
            "t": envelope.tenant_id,
            "a": envelope.id,
            "s": envelope.source_api,
            "v": envelope.version,
        },
        separators=(",", ":"),
    )


def buttons(envelope: Envelope) -> tuple[tuple[str, str, str, str], ...]:
    """The Slack buttons a message about the alert carries now: (action, label, value,
    confirmation text; empty for none). Given to the Slack app sink by the pipeline, so
    sinks know nothing of the rules."""
    value = button_value(envelope)
    return tuple(
        (
            name,
            ACTIONS[name].label,
            value,
            "" if name == "take" else f"This will {ACTIONS[name].summary} in Microsoft Defender.",
        )
        for name in offered(envelope, tuple(ACTIONS))
    )


def parse_button_value(value: str) -> dict[str, str] | None:
    """A button's alert reference {t, a, s, v}, or None if it is not one of ours."""
    try:
        data = json.loads(value)
    except (ValueError, TypeError):
        return None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) and data.get(k) for k in ("t", "a", "s")
    ):
        return None
    version = data.get("v", "")
    if not isinstance(version, str) or data["s"] not in SOURCES:
        return None
    return {"t": data["t"], "a": data["a"], "s": data["s"], "v": version}
