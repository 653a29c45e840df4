"""Matching what the simulator created against what every sink received, and the verdict.

- lost: an alert (or the latest change of an updated alert) that a sink never received;
  must be 0 for every sink.
- duplicated: a webhook delivered again with the same ``webhook-id`` (at-least-once: a
  consumer drops it by that id); counted. The ticket sink is idempotent: a second ticket for
  one alert is a failure.
- latency: alert created in the simulator -> first arrival at the healthy webhook sink.
- RSS (long): every receiver process may grow at most RSS_GROWTH_LIMIT between the end of
  the faults and the end of the soak.
- ack: how long the web took to answer Graph's POSTs (2xx), in the no-fault window and while
  a sink was failing. The front door never waits on the back, so a failing sink must not move
  it: the run fails when the failing-window p95 is more than ACK_RATIO_LIMIT times the
  baseline AND more than ACK_SLACK_MS above it. Both, because on two cores shared with other
  jobs a p99 of a few milliseconds triples from scheduling noise alone (seen: 5 -> 41 ms);
  a web that waited on a sink would add the sink's answer time (a failing sink: up to its
  10 s timeout), far past either bound, for most answers in the window. The p95, not the
  p99: a window holds about 150 answers, so its p99 is its second-slowest answer, and one
  stall of the machine (a disk flush under Redis's `appendfsync always`, seen at 100-750 ms,
  in either window and at the session's start as often as after) failed the run by itself.
  Both figures are printed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

ACK_RATIO_LIMIT = 3.0
ACK_SLACK_MS = 50.0
RSS_GROWTH_LIMIT = 0.10
# Reported, not judged: the simulator is Graph's stand-in and keeps every alert it was asked
# to create (and its last 20,000 deliveries) in memory by design, so it grows with the load.
RSS_NOT_JUDGED = frozenset({"simulator"})


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class SinkResult:
    name: str
    expected: int
    received: int
    lost: list[str]
    duplicated: int
    idempotent: bool


@dataclass
class Report:
    profile: str
    created_push: int = 0
    created_poll: int = 0
    updated: int = 0
    deleted: int = 0
    sinks: list[SinkResult] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    ack_ms: dict[str, float] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    unexpected_exits: list[str] = field(default_factory=list)
    rss_kb: dict[str, dict[str, int]] = field(default_factory=dict)
    leftovers: dict[str, int] = field(default_factory=dict)
    poisoned: list[str] = field(default_factory=list)  # the first poison entries, described
    web_answers: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return sum(len(s.lost) for s in self.sinks)

    @property
    def duplicated(self) -> int:
        return sum(s.duplicated for s in self.sinks if not s.idempotent)

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "wall_s": round(self.wall_s, 1),
            "created": {
                "push": self.created_push,
                "poll": self.created_poll,
                "updated": self.updated,
                "deleted": self.deleted,
            },
            "sinks": [
                {
                    "name": s.name,
                    "expected": s.expected,
                    "received": s.received,
                    "lost": len(s.lost),
                    "lost_ids": s.lost[:20],
                    "duplicated": s.duplicated,
                    "idempotent": s.idempotent,
                }
                for s in self.sinks
            ],
            "lost": self.lost,
            "duplicated": self.duplicated,
            "latency_ms": self.latency_ms,
            "ack_ms": self.ack_ms,
            "faults": self.faults,
            "web_answers": self.web_answers,
            "unexpected_exits": self.unexpected_exits,
            "rss_kb": self.rss_kb,
            "leftovers": self.leftovers,
            "poisoned": self.poisoned,
            "failures": self.failures,
        }

    def judge(self) -> None:
        if self.lost:
            self.failures.append(f"{self.lost} alert deliveries lost")
        for s in self.sinks:
            if s.idempotent and s.duplicated:
                self.failures.append(f"idempotent sink {s.name}: {s.duplicated} duplicates")
        base, failing = self.ack_ms.get("baseline_p95"), self.ack_ms.get("failing_p95")
        if (
            base is not None
            and failing is not None
            and failing > base * ACK_RATIO_LIMIT
            and failing - base > ACK_SLACK_MS
        ):
            self.failures.append(
                f"web ack p95 moved with a failing sink: {base:.1f} ms -> {failing:.1f} ms"
            )
        for name, kb in self.rss_kb.get("end", {}).items():
            if name in RSS_NOT_JUDGED:
                continue
            start = self.rss_kb.get("start", {}).get(name)
            if start and kb > start * (1 + RSS_GROWTH_LIMIT):
                self.failures.append(
                    f"{name}: RSS grew {start} kB -> {kb} kB (> {RSS_GROWTH_LIMIT:.0%})"
                )
        for what, n in self.leftovers.items():
            if n:
                self.failures.append(f"{n} entries left in {what}")
        self.failures += [f"  poison: {entry}" for entry in self.poisoned]
        for exit_ in self.unexpected_exits:  # a process that died without being killed
            self.failures.append(f"unexpected exit: {exit_.splitlines()[0]}")

    def render(self) -> str:
        lines = [
            f"profile {self.profile}: {self.wall_s:.0f} s wall",
            f"alerts created: {self.created_push} pushed, {self.created_poll} polled, "
            f"{self.updated} updated, {self.deleted} deleted before their fetch",
        ]
        lines.append(
            f"{'sink':<10}{'expected':>10}{'received':>10}{'lost':>7}{'duplicated':>12}  kind"
        )
        for s in self.sinks:
            lines.append(
                f"{s.name:<10}{s.expected:>10}{s.received:>10}{len(s.lost):>7}"
                f"{s.duplicated:>12}  "
                f"{'idempotent (tickets)' if s.idempotent else 'at-least-once'}"
            )
        lat = self.latency_ms
        if lat:
            lines.append(
                f"end to end (created -> sink): p50 {lat['p50']:.0f} ms, "
                f"p95 {lat['p95']:.0f} ms, p99 {lat['p99']:.0f} ms, "
                f"max {lat['max']:.0f} ms"
            )
        ack = self.ack_ms
        if ack:
            nan = float("nan")
            lines.append(
                f"web ack p95/p99: {ack.get('baseline_p95', nan):.1f}/"
                f"{ack.get('baseline_p99', nan):.1f} ms no fault, "
                f"{ack.get('failing_p95', nan):.1f}/{ack.get('failing_p99', nan):.1f} ms with a "
                f"failing sink (limit on the p95: x{ACK_RATIO_LIMIT:g} and +{ACK_SLACK_MS:g} ms)"
            )
        if self.web_answers:
            lines.append(
                "web answers to Graph: "
                + ", ".join(f"{k}: {v}" for k, v in sorted(self.web_answers.items()))
            )
        lines.append("faults:")
        lines += [f"  {f}" for f in self.faults]
        if self.rss_kb.get("end"):
            lines.append("RSS (kB) start -> end:")
            for name, kb in sorted(self.rss_kb["end"].items()):
                lines.append(f"  {name:<12}{self.rss_kb['start'].get(name, 0):>9} -> {kb}")
        for exit_ in self.unexpected_exits:
            lines.append(f"unexpected exit: {exit_.splitlines()[0]}")
        for failure in self.failures:
            lines.append(f"FAIL: {failure}")
        p99 = lat.get("p99", float("nan")) if lat else float("nan")
        lines.append(f"lost={self.lost} duplicated={self.duplicated} p99_ms={p99:.0f}")
        return "\n".join(lines)


def hook_result(
    name: str, expected_first: set[str], expected_update: set[str], arrivals: list[Any]
) -> SinkResult:
    firsts = {a.alert_id for a in arrivals if a.first_seen}
    latest = {a.alert_id for a in arrivals if a.status == "inProgress"}
    lost = sorted(expected_first - firsts) + sorted(
        f"{i} (update)" for i in expected_update - latest
    )
    copies = Counter((a.alert_id, a.webhook_id) for a in arrivals)
    return SinkResult(
        name,
        len(expected_first) + len(expected_update),
        len(firsts & expected_first) + len(latest & expected_update),
        lost,
        sum(n - 1 for n in copies.values()),
        idempotent=False,
    )


def ticket_result(expected: set[str], tickets: dict[str, int]) -> SinkResult:
    lost = sorted(expected - set(tickets))
    return SinkResult(
        "tickets",
        len(expected),
        len(expected & set(tickets)),
        lost,
        sum(n - 1 for n in tickets.values()),
        idempotent=True,
    )
