"""Secure Score analysis: pure functions from Graph's daily scores and control profiles to what
is worth telling someone. No I/O, no clock.

Graph computes one ``secureScore`` per tenant a day and keeps 90 of them; nothing is pushed, so
the job reads the last days and this module decides what they say:

- a **drop**: a day's ``currentScore`` is lower than the day before by more than the threshold
  (the controls that fell that day ride along);
- a **control regression**: no such drop, but a control's score fell by more than its
  threshold (a setting was undone while gains elsewhere hid it in the total);
- the **weekly digest**: on the first evaluation in an ISO week on or after the digest day,
  the score against the maximum, the trend over the window and the improvement actions worth
  the most points.

Only days newer than the last one evaluated are looked at, and a week's digest is made once,
so a restart, a second leader or a re-run finds nothing twice (the job keeps both marks in
Redis). Days are the snapshots' own (``createdDateTime``), never the local clock: the answer
depends on the data alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Action",
    "ControlChange",
    "ControlScore",
    "Evaluation",
    "Finding",
    "Policy",
    "Profile",
    "Snapshot",
    "evaluate",
    "parse_profiles",
    "parse_scores",
    "top_actions",
]

# Control states (controlStateUpdates[].state) that take a control off the list of actions:
# the risk was accepted, or a third-party product covers it.
CLOSED_STATES = frozenset({"ignored", "thirdparty"})


@dataclass(frozen=True, slots=True)
class ControlScore:
    name: str
    category: str
    score: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One day's ``secureScore``."""

    day: dt.date
    current: float
    maximum: float
    controls: Mapping[str, ControlScore] = field(default_factory=dict)
    # averageComparativeScores: (basis, averageScore)
    comparative: tuple[tuple[str, float], ...] = ()

    @property
    def percentage(self) -> float:
        return round(100.0 * self.current / self.maximum, 1) if self.maximum > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Profile:
    """A ``secureScoreControlProfile``: what a control is worth and its state."""

    id: str
    title: str
    max_score: float
    rank: int = 0
    category: str = ""
    service: str = ""
    user_impact: str = ""
    implementation_cost: str = ""
    action_url: str = ""
    deprecated: bool = False
    state: str = "Default"  # the latest controlStateUpdates entry's state


@dataclass(frozen=True, slots=True)
class ControlChange:
    """A control whose score fell from one day to the next."""

    name: str
    category: str
    title: str
    before: float
    after: float
    max_score: float | None

    @property
    def fall(self) -> float:
        return round(self.before - self.after, 2)


@dataclass(frozen=True, slots=True)
class Action:
    """An improvement action: a control not at its maximum, and the points it would add."""

    id: str
    title: str
    gain: float
    score: float
    max_score: float
    rank: int
    category: str = ""
    service: str = ""
    user_impact: str = ""
    implementation_cost: str = ""
    action_url: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    drop_threshold: float = 2.0
    control_threshold: float = 0.5
    digest_weekday: int | None = 0  # Monday; None: no digest
    top_actions: int = 5
    history_days: int = 30
    initial_lookback_days: int = 1


@dataclass(frozen=True, slots=True)
class Finding:
    """Something to tell: ``reason`` is drop, control or digest."""

    reason: str
    snapshot: Snapshot
    previous: Snapshot | None = None
    controls: tuple[ControlChange, ...] = ()
    trend: tuple[Snapshot, ...] = ()  # oldest first, ending with ``snapshot``
    actions: tuple[Action, ...] = ()
    week: str = ""  # the digest's ISO week, e.g. 2026-W10

    @property
    def day(self) -> dt.date:
        return self.snapshot.day

    @property
    def change(self) -> float:
        """The score's change from the previous day (drop, control) or over the trend."""
        base = self.previous or (self.trend[0] if self.trend else None)
        return round(self.snapshot.current - base.current, 2) if base else 0.0


@dataclass(frozen=True, slots=True)
class Evaluation:
    findings: tuple[Finding, ...]
    evaluated: str  # the newest day evaluated (YYYY-MM-DD), '' if there was none
    digest_week: str  # the newest digest's ISO week, '' if none yet


# --- parsing Graph's payloads -----------------------------------------------------------


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _day(value: Any) -> dt.date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


def parse_scores(items: Iterable[Any]) -> list[Snapshot]:
    """Daily snapshots, oldest first, one per day; items without a date or score are left out
    (Graph's payload is trusted for its shape, not for every field being present)."""
    by_day: dict[dt.date, tuple[str, Snapshot]] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        day = _day(item.get("createdDateTime"))
        current = _float(item.get("currentScore"))
        if day is None or current is None:
            continue
        controls: dict[str, ControlScore] = {}
        for c in item.get("controlScores") or []:
            if isinstance(c, dict) and c.get("controlName"):
                score = _float(c.get("score"))
                if score is not None:
                    name = str(c["controlName"])
                    controls[name] = ControlScore(name, str(c.get("controlCategory") or ""), score)
        comparative = tuple(
            (str(a.get("basis") or ""), avg)
            for a in item.get("averageComparativeScores") or []
            if isinstance(a, dict) and (avg := _float(a.get("averageScore"))) is not None
        )
        snap = Snapshot(day, current, _float(item.get("maxScore")) or 0.0, controls, comparative)
        stamp = str(item.get("createdDateTime"))
        if day not in by_day or stamp > by_day[day][0]:  # a day computed twice: the later one
            by_day[day] = (stamp, snap)
    return [by_day[d][1] for d in sorted(by_day)]


def _state(profile: Mapping[str, Any]) -> str:
    updates = [u for u in profile.get("controlStateUpdates") or [] if isinstance(u, dict)]
    if not updates:
        return "Default"
    latest = max(
        enumerate(updates), key=lambda iu: (str(iu[1].get("updatedDateTime") or ""), iu[0])
    )[1]
    return str(latest.get("state") or "Default")


def parse_profiles(items: Iterable[Any]) -> list[Profile]:
    out = []
    for item in items:
        if not isinstance(item, dict) or not item.get("id"):
            continue
        rank = _float(item.get("rank"))
        out.append(
            Profile(
                id=str(item["id"]),
                title=str(item.get("title") or item["id"]),
                max_score=_float(item.get("maxScore")) or 0.0,
                rank=int(rank or 0),
                category=str(item.get("controlCategory") or ""),
                service=str(item.get("service") or ""),
                user_impact=str(item.get("userImpact") or ""),
                implementation_cost=str(item.get("implementationCost") or ""),
                action_url=str(item.get("actionUrl") or ""),
                deprecated=item.get("deprecated") is True,
                state=_state(item),
            )
        )
    return out


# --- analysis ---------------------------------------------------------------------------


def top_actions(profiles: Sequence[Profile], snapshot: Snapshot | None, n: int) -> list[Action]:
    """The ``n`` actions worth the most points: gain = the profile's maxScore minus the
    control's score in ``snapshot`` (0 when it has none). Deprecated controls and controls
    marked ignored or third party are left out; ties go to Graph's rank."""
    out = []
    for p in profiles:
        if p.deprecated or p.state.lower() in CLOSED_STATES:
            continue
        control = snapshot.controls.get(p.id) if snapshot else None
        score = control.score if control else 0.0
        gain = round(p.max_score - score, 2)
        if gain > 0:
            out.append(
                Action(
                    p.id,
                    p.title,
                    gain,
                    score,
                    p.max_score,
                    p.rank,
                    p.category,
                    p.service,
                    p.user_impact,
                    p.implementation_cost,
                    p.action_url,
                )
            )
    out.sort(key=lambda a: (-a.gain, a.rank or 1 << 30, a.id))
    return out[: max(0, n)]


def regressions(
    before: Snapshot, after: Snapshot, threshold: float, titles: Mapping[str, Profile] | None = None
) -> tuple[ControlChange, ...]:
    """Controls whose score fell by more than ``threshold`` from ``before`` to ``after``
    (a control that disappeared is not a regression: Graph retires controls)."""
    titles = titles or {}
    out = []
    for name, old in before.controls.items():
        new = after.controls.get(name)
        if new is not None and old.score - new.score > threshold:
            profile = titles.get(name)
            out.append(
                ControlChange(
                    name,
                    new.category or old.category,
                    profile.title if profile else name,
                    old.score,
                    new.score,
                    profile.max_score if profile else None,
                )
            )
    out.sort(key=lambda c: (-c.fall, c.name))
    return tuple(out)


def iso_week(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _trend(snapshots: Sequence[Snapshot], index: int, days: int) -> tuple[Snapshot, ...]:
    end = snapshots[index].day
    start = end - dt.timedelta(days=days - 1)
    return tuple(s for s in snapshots[: index + 1] if s.day >= start)


def evaluate(
    snapshots: Sequence[Snapshot],
    profiles: Sequence[Profile],
    policy: Policy,
    *,
    evaluated: str = "",
    digest_week: str = "",
) -> Evaluation:
    """What the days after ``evaluated`` say, and the digest if this week's is due.

    ``snapshots`` oldest first (:func:`parse_scores`). With nothing evaluated yet, only the
    last ``policy.initial_lookback_days`` days are checked: a first start does not report
    the drops of the whole history."""
    if not snapshots:
        return Evaluation((), evaluated, digest_week)
    by_id = {p.id: p for p in profiles}
    newest = snapshots[-1]
    if evaluated:
        since = _day(evaluated)
        indexes = [
            i for i, s in enumerate(snapshots) if i > 0 and since is not None and s.day > since
        ]
    else:
        indexes = list(range(max(1, len(snapshots) - policy.initial_lookback_days), len(snapshots)))
    findings: list[Finding] = []
    for i in indexes:
        before, after = snapshots[i - 1], snapshots[i]
        controls = regressions(before, after, policy.control_threshold, by_id)
        trend = _trend(snapshots, i, policy.history_days)
        if before.current - after.current > policy.drop_threshold:
            findings.append(Finding("drop", after, before, controls, trend))
        elif controls:
            findings.append(Finding("control", after, before, controls, trend))
    week = iso_week(newest.day)
    if (
        policy.digest_weekday is not None
        and newest.day.weekday() >= policy.digest_weekday
        and week > digest_week
    ):  # ISO weeks sort as text; '' before any
        findings.append(
            Finding(
                "digest",
                newest,
                None,
                (),
                _trend(snapshots, len(snapshots) - 1, policy.history_days),
                tuple(top_actions(profiles, newest, policy.top_actions)),
                week,
            )
        )
        digest_week = week
    newest_day = newest.day.isoformat()
    return Evaluation(tuple(findings), max(evaluated, newest_day), digest_week)
