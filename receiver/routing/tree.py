"""Walking the route tree: envelope in, sink names out. Pure, Alertmanager's semantics.

An alert enters at the root (which matches everything) and walks down the children in order.
The first child whose matchers all match takes it, and the walk stops there unless that child
says ``continue: true``. A matching child is itself walked the same way. When no child takes
the alert, the route's own receiver does. Children inherit ``receiver``, ``group_by``,
``group_wait``, ``group_interval`` and ``repeat_interval`` from their parent when they do not
set them (``group_by: []`` turns grouping off below a grouping route).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from receiver.envelope import Envelope
from receiver.routing.config import Route

# Used only where a route groups (has ``group_by``); Alertmanager's defaults but for the
# reminders, which repeat event messages and so must be asked for.
DEFAULT_GROUP_WAIT_S = 30.0
DEFAULT_GROUP_INTERVAL_S = 300.0
DEFAULT_REPEAT_INTERVAL_S = 0.0  # reminders only when a route asks (Alertmanager: 4h)


@dataclass(frozen=True, slots=True)
class Decision:
    """One sink an alert goes to, and the route that chose it."""

    sink: str
    route: str  # e.g. "route.routes[1].routes[0]"
    group_by: tuple[str, ...] = ()
    group_wait_s: float = DEFAULT_GROUP_WAIT_S
    group_interval_s: float = DEFAULT_GROUP_INTERVAL_S
    repeat_interval_s: float = DEFAULT_REPEAT_INTERVAL_S

    @property
    def grouped(self) -> bool:
        return bool(self.group_by)


@dataclass
class Trace:
    """Why: every route looked at, with whether it matched (for `receiver route test`)."""

    lines: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Inherited:
    receiver: str | None
    group_by: tuple[str, ...]
    group_wait_s: float
    group_interval_s: float
    repeat_interval_s: float


def _inherit(route: Route, parent: _Inherited) -> _Inherited:
    return _Inherited(
        receiver=route.receiver if route.receiver is not None else parent.receiver,
        group_by=route.group_by if route.group_by is not None else parent.group_by,
        group_wait_s=route.group_wait_s if route.group_wait_s is not None else parent.group_wait_s,
        group_interval_s=route.group_interval_s
        if route.group_interval_s is not None
        else parent.group_interval_s,
        repeat_interval_s=route.repeat_interval_s
        if route.repeat_interval_s is not None
        else parent.repeat_interval_s,
    )


def _walk(
    route: Route,
    path: str,
    inherited: _Inherited,
    envelope: Envelope,
    trace: Trace | None,
    depth: int,
) -> list[Decision]:
    settings = _inherit(route, inherited)
    out: list[Decision] = []
    for i, child in enumerate(route.routes):
        child_path = f"{path}.routes[{i}]"
        failed = [m for m in child.matchers if not m.matches(envelope.value(m.name))]
        if trace is not None:
            verdict = (
                "matches" if not failed else "does not match: " + ", ".join(str(m) for m in failed)
            )
            shown = ", ".join(str(m) for m in child.matchers) or "(no matchers)"
            trace.lines.append(f"{'  ' * depth}{child_path} [{shown}] {verdict}")
        if failed:
            continue
        out.extend(_walk(child, child_path, settings, envelope, trace, depth + 1))
        if not child.continue_:
            break
    if not out and settings.receiver is not None:
        out.append(
            Decision(
                settings.receiver,
                path,
                settings.group_by,
                settings.group_wait_s,
                settings.group_interval_s,
                settings.repeat_interval_s,
            )
        )
        if trace is not None:
            trace.lines.append(f"{'  ' * depth}{path} -> {settings.receiver}")
    return out


def route(root: Route, envelope: Envelope, trace: Trace | None = None) -> list[Decision]:
    """The sinks an envelope goes to, in tree order, each sink at most once."""
    start = _Inherited(
        None, (), DEFAULT_GROUP_WAIT_S, DEFAULT_GROUP_INTERVAL_S, DEFAULT_REPEAT_INTERVAL_S
    )
    decisions = _walk(root, "route", start, envelope, trace, 0)
    seen: set[str] = set()
    unique = []
    for d in decisions:
        if d.sink not in seen:
            seen.add(d.sink)
            unique.append(d)
    return unique
