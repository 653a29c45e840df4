"""The Secure Score analysis as tables: drops, control regressions, the weekly digest, the top
improvement actions, and what "already evaluated" means."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from receiver.securescore.events import envelope, event_id
from receiver.securescore.watch import (
    ControlScore,
    Policy,
    Profile,
    Snapshot,
    evaluate,
    iso_week,
    parse_profiles,
    parse_scores,
    top_actions,
)

MONDAY = dt.date(2026, 3, 2)  # ISO week 2026-W10


def snap(day: dt.date, current: float, maximum: float = 100.0, **controls: float) -> Snapshot:
    return Snapshot(
        day, current, maximum, {n: ControlScore(n, "Identity", s) for n, s in controls.items()}
    )


def series(start: dt.date, scores: list[float], **controls: list[float]) -> list[Snapshot]:
    return [
        snap(start + dt.timedelta(days=i), s, **{n: v[i] for n, v in controls.items()})
        for i, s in enumerate(scores)
    ]


NO_DIGEST = Policy(digest_weekday=None, initial_lookback_days=30)


@pytest.mark.parametrize(
    ("scores", "threshold", "drops"),
    [
        ([50, 51, 52, 53], 2.0, []),  # rising
        ([50, 48.5, 48, 47], 2.0, []),  # small falls, each within the threshold
        ([50, 47.9, 48, 49], 2.0, [1]),  # 2.1 points: a drop
        ([50, 48, 48, 49], 2.0, []),  # exactly the threshold: not beyond it
        ([50, 40, 30, 31], 2.0, [1, 2]),  # two days in a row
        ([50, 49, 48, 47], 0.0, [1, 2, 3]),  # threshold 0: any fall
    ],
)
def test_drops_beyond_the_threshold(
    scores: list[float], threshold: float, drops: list[int]
) -> None:
    snaps = series(MONDAY, scores)
    policy = Policy(drop_threshold=threshold, digest_weekday=None, initial_lookback_days=30)
    result = evaluate(snaps, [], policy)
    assert [f.reason for f in result.findings] == ["drop"] * len(drops)
    assert [f.day for f in result.findings] == [snaps[i].day for i in drops]
    for f, i in zip(result.findings, drops, strict=True):
        assert f.previous == snaps[i - 1] and f.change == round(scores[i] - scores[i - 1], 2)
    assert result.evaluated == snaps[-1].day.isoformat()


def test_control_regression_without_a_drop_and_inside_a_drop() -> None:
    snaps = series(
        MONDAY,
        [50, 50.5, 40, 40],
        AdminMFAV2=[10, 7, 7, 7],
        DLPEnabled=[4, 4, 0, 0],
        Tiny=[1, 1, 0.8, 0.8],
    )
    profiles = [
        Profile("AdminMFAV2", "Require MFA for admins", 10.0),
        Profile("DLPEnabled", "Turn on DLP", 4.0),
    ]
    result = evaluate(snaps, profiles, NO_DIGEST)
    control, drop = result.findings
    # Day 1: the total rose but a control fell by 3: a regression, titled from its profile.
    assert control.reason == "control" and control.day == snaps[1].day
    assert [(c.name, c.title, c.before, c.after, c.max_score) for c in control.controls] == [
        ("AdminMFAV2", "Require MFA for admins", 10, 7, 10.0)
    ]
    # Day 2: a drop; the control that fell rides along (Tiny fell 0.2 < 0.5: not listed).
    assert drop.reason == "drop" and [c.name for c in drop.controls] == ["DLPEnabled"]
    assert drop.controls[0].fall == 4


def test_a_control_that_disappears_is_not_a_regression() -> None:
    snaps = [snap(MONDAY, 50, Old=5.0), snap(MONDAY + dt.timedelta(days=1), 50)]
    assert evaluate(snaps, [], NO_DIGEST).findings == ()


@pytest.mark.parametrize(
    ("evaluated", "lookback", "checked"),
    [
        ("", 1, [4]),  # first run: only the newest day
        ("", 3, [2, 3, 4]),  # first run with a longer lookback
        ("", 30, [1, 2, 3, 4]),  # never before the second day (it needs a previous one)
        ("2026-03-03", 1, [2, 3, 4]),  # after the last evaluated day, whatever the lookback
        ("2026-03-06", 1, []),  # nothing new
        ("2026-03-09", 1, []),  # a state newer than the data (Graph lagging): nothing
    ],
)
def test_only_days_after_the_last_evaluated_one(
    evaluated: str, lookback: int, checked: list[int]
) -> None:
    snaps = series(MONDAY, [50, 40, 30, 20, 10])  # a drop every day
    policy = Policy(digest_weekday=None, initial_lookback_days=lookback)
    result = evaluate(snaps, [], policy, evaluated=evaluated)
    assert [f.day for f in result.findings] == [snaps[i].day for i in checked]
    assert result.evaluated == max(evaluated, "2026-03-06")


@pytest.mark.parametrize(
    ("newest", "weekday", "sent", "due"),
    [
        (MONDAY, 0, "", True),  # Monday, digest on Mondays
        (MONDAY + dt.timedelta(days=2), 0, "", True),  # later in the week: still due
        (MONDAY + dt.timedelta(days=2), 0, "2026-W10", False),  # this week's already sent
        (MONDAY + dt.timedelta(days=7), 0, "2026-W10", True),  # next week
        (MONDAY + dt.timedelta(days=1), 4, "", False),  # Tuesday, digest on Fridays
        (MONDAY + dt.timedelta(days=4), 4, "2026-W09", True),  # Friday
        (MONDAY, 0, "2026-W11", False),  # never an older week again
        (MONDAY, None, "", False),  # digest off
    ],
)
def test_weekly_digest(newest: dt.date, weekday: int | None, sent: str, due: bool) -> None:
    snaps = series(newest - dt.timedelta(days=3), [50, 51, 52, 53])
    result = evaluate(
        snaps, [], Policy(digest_weekday=weekday), digest_week=sent, evaluated=newest.isoformat()
    )
    digests = [f for f in result.findings if f.reason == "digest"]
    assert len(digests) == (1 if due else 0)
    assert result.digest_week == (iso_week(newest) if due else sent)
    if due:
        assert digests[0].week == iso_week(newest) and digests[0].snapshot == snaps[-1]


def test_digest_trend_and_top_actions() -> None:
    start = MONDAY - dt.timedelta(days=40)
    snaps = series(
        start, [float(40 + i) for i in range(41)], A=[2.0] * 41, B=[9.0] * 41, C=[0.0] * 41
    )
    profiles = [
        Profile("A", "Action A", 10.0, rank=3),  # gain 8
        Profile("B", "Action B", 10.0, rank=1),  # gain 1
        Profile("C", "Action C", 8.0, rank=2),  # gain 8 (tie with A: rank wins)
        Profile("D", "Action D", 5.0, rank=4),  # no score in the snapshot: gain 5
        Profile("E", "Old", 20.0, deprecated=True),
        Profile("F", "Accepted", 20.0, state="Ignored"),
        Profile("G", "Third party", 20.0, state="ThirdParty"),
        Profile("H", "Reviewed", 6.0, state="Reviewed"),  # reviewed still counts: gain 6
        Profile("I", "Done", 0.0),  # nothing to gain
    ]
    result = evaluate(
        snaps, profiles, Policy(top_actions=4, history_days=30), evaluated=snaps[-1].day.isoformat()
    )
    (digest,) = result.findings
    assert [a.id for a in digest.actions] == ["C", "A", "H", "D"]
    assert [a.gain for a in digest.actions] == [8.0, 8.0, 6.0, 5.0]
    assert len(digest.trend) == 30 and digest.trend[-1] == snaps[-1]
    assert digest.trend[0].day == snaps[-1].day - dt.timedelta(days=29)
    assert digest.change == 29.0  # over the 30 days of the trend
    assert top_actions(profiles, snaps[-1], 0) == []


def _score(day: str, current: Any, **extra: Any) -> dict[str, Any]:
    return {"createdDateTime": day, "currentScore": current, "maxScore": 300, **extra}


def test_parse_scores_from_graph_payloads() -> None:
    items = [
        _score(
            "2026-03-03T00:00:00Z",
            120.5,
            controlScores=[
                {"controlName": "AdminMFAV2", "controlCategory": "Identity", "score": 8},
                {"controlName": "NoScore", "score": None},
                "junk",
            ],
            averageComparativeScores=[{"basis": "AllTenants", "averageScore": 41.6}],
        ),
        _score("2026-03-01T00:00:00Z", 100),
        _score("2026-03-02T00:00:00Z", 110),
        _score("2026-03-02T12:00:00Z", 111),  # the day recomputed: the later one counts
        _score("not a date", 1),
        _score("2026-03-04T00:00:00Z", "n/a"),
        {"id": "x"},
        7,
    ]
    snaps = parse_scores(items)
    assert [(s.day.isoformat(), s.current) for s in snaps] == [
        ("2026-03-01", 100),
        ("2026-03-02", 111),
        ("2026-03-03", 120.5),
    ]
    assert list(snaps[-1].controls) == ["AdminMFAV2"] and snaps[-1].percentage == 40.2
    assert snaps[-1].comparative == (("AllTenants", 41.6),)


def test_parse_profiles_takes_the_latest_state() -> None:
    (profile,) = parse_profiles(
        [
            {
                "id": "AdminMFAV2",
                "title": "MFA for admins",
                "maxScore": 10,
                "rank": 1,
                "deprecated": False,
                "controlStateUpdates": [
                    {"state": "Ignored", "updatedDateTime": "2026-03-02T00:00:00Z"},
                    {"state": "Reviewed", "updatedDateTime": "2026-03-01T00:00:00Z"},
                ],
            },
            {"no": "id"},
        ]
    )
    assert (profile.id, profile.max_score, profile.state) == ("AdminMFAV2", 10.0, "Ignored")


def test_findings_become_secure_score_envelopes() -> None:
    snaps = series(MONDAY - dt.timedelta(days=1), [200, 185.25], AdminMFAV2=[10.0, 0.0])
    profiles = [Profile("AdminMFAV2", "Require MFA for admins", 10.0)]
    result = evaluate(snaps, profiles, Policy(initial_lookback_days=1))
    drop, digest = (envelope(f, "contoso", "tid-1") for f in result.findings)
    assert (drop.kind, drop.source_api, drop.severity) == ("secure_score", "secureScores", "medium")
    assert drop.id == "securescore:contoso:2026-03-02:drop"
    assert drop.title == "Secure Score dropped 14.75 points to 185.25 of 100 (contoso)"
    assert drop.value("kind") == "secure_score" and drop.tenant == "contoso"
    assert drop.raw["controls"][0]["controlName"] == "AdminMFAV2"
    assert drop.raw["previousScore"] == 200 and drop.raw["change"] == -14.75
    assert "Require MFA for admins (AdminMFAV2): 10 -> 0" in drop.description
    assert (
        digest.id
        == "securescore:contoso:2026-W10:digest"
        == event_id("contoso", result.findings[1])
    )
    assert digest.severity == "informational" and len(digest.raw["trend"]) == 2
    assert type(drop).from_json(drop.to_json()) == drop  # survives the stream
