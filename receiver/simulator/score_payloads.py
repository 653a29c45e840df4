"""Secure Score payloads: daily `secureScore` snapshots and `secureScoreControlProfile`s, made
from the tables in payloads.py with a seeded random generator."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from receiver.simulator.clock import iso
from receiver.simulator.payloads import (
    CONTROL_PROFILES,
    PORTAL,
    SCORE_CONTROLS,
    SECURE_SCORE_VENDOR,
)


class ScorePayloads:
    """Makes Secure Score snapshots and control profiles; all randomness comes from `rng`."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def secure_scores(
        self,
        tenant_id: str,
        today: dt.datetime,
        days: int,
        drop_on_day: int | None = None,
        drop_by: float = 15.0,
    ) -> list[dict[str, Any]]:
        """Daily snapshots, newest first; day 0 is today, `drop_on_day` N days ago drops.

        Control scores hold from day to day, as in a real tenant whose settings do not change;
        on the drop days the lost points come off the controls in order (the first control
        regresses first), so the drop shows in `controlScores` too.
        """
        max_score = 350.0
        score = 180.0 + self.rng.uniform(0, 40)
        shares = [self.rng.uniform(0.3, 1.0) for _ in SCORE_CONTROLS]
        snapshots: list[dict[str, Any]] = []
        midnight = today.replace(hour=0, minute=0, second=0, microsecond=0)
        for age in range(days - 1, -1, -1):
            score = min(max_score, score + self.rng.uniform(-1.0, 2.0))
            lost = drop_by if drop_on_day is not None and age <= drop_on_day else 0.0
            day = midnight - dt.timedelta(days=age)
            snapshots.append(
                self._snapshot(tenant_id, day, round(score - lost, 2), max_score, shares, lost)
            )
        snapshots.reverse()
        return snapshots

    def _snapshot(
        self,
        tenant_id: str,
        day: dt.datetime,
        score: float,
        max_score: float,
        shares: list[float],
        lost: float,
    ) -> dict[str, Any]:
        controls = []
        for (cat, name, top), share in zip(SCORE_CONTROLS, shares, strict=True):
            points = round(top * share, 2)
            cut = min(points, lost)
            lost -= cut
            controls.append((cat, name, round(points - cut, 2)))
        return {
            "id": f"{tenant_id}_{day:%Y-%m-%d}",
            "azureTenantId": tenant_id,
            "activeUserCount": 180 + self.rng.randint(0, 20),
            "createdDateTime": iso(day),
            "currentScore": score,
            "enabledServices": ["HasExchange", "HasSharePoint", "HasOD4B", "HasEOP", "HasMDO"],
            "licensedUserCount": 250,
            "maxScore": max_score,
            "vendorInformation": dict(SECURE_SCORE_VENDOR),
            "averageComparativeScores": [
                {"basis": "AllTenants", "averageScore": 41.6},
                {
                    "basis": "TotalSeats",
                    "averageScore": 46.2,
                    "seatSizeRangeLowerValue": "100",
                    "seatSizeRangeUpperValue": "249",
                },
            ],
            "controlScores": [
                {
                    "controlCategory": cat,
                    "controlName": name,
                    "description": f"{name} control",
                    "score": points,
                    "scoreInPercentage": None,
                    "lastSynced": iso(day),
                    "implementationStatus": None,
                    "count": None,
                    "total": None,
                }
                for cat, name, points in controls
            ],
        }

    def control_profiles(self, tenant_id: str, now: dt.datetime) -> list[dict[str, Any]]:
        return [
            {
                "id": control,
                "azureTenantId": tenant_id,
                "actionType": "Config",
                "actionUrl": f"{PORTAL}/securescore?viewid=actions",
                "controlCategory": category,
                "title": title,
                "complianceInformation": [],
                "controlStateUpdates": [],
                "deprecated": False,
                "implementationCost": "Low",
                "lastModifiedDateTime": iso(now),
                "maxScore": top,
                "rank": rank,
                "remediation": f"Follow the guidance for {control}.",
                "remediationImpact": "Users will be prompted as configured.",
                "service": service,
                "threats": ["accountBreach"],
                "tier": "Core",
                "userImpact": "Low",
                "vendorInformation": dict(SECURE_SCORE_VENDOR),
            }
            for rank, (control, category, title, service, top) in enumerate(
                CONTROL_PROFILES, start=1
            )
        ]
