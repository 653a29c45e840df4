"""The routes file: a route tree in Alertmanager's shape, validated when it is loaded.

```yaml
route:                       # the root route: every alert enters here
  receiver: soc-teams        # the default sink
  group_by: [tenant]
  routes:
    - matchers: ['severity=~"high|critical"']
      receiver: oncall-pagerduty
      continue: true          # keep looking for further matches
```
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from receiver.config.files import ConfigError, Document, read_yaml, validate
from receiver.envelope import Envelope
from receiver.routing.matchers import Matcher, MatcherError

_GROUPABLE = frozenset(f.name for f in fields(Envelope)) - {"raw", "first_seen", "changes"}
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")


def parse_duration(text: str | int | float) -> float:
    """'30s', '5m', '1h30m', '250ms' or a number of seconds -> seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("duration must not be negative")
        return float(text)
    m = _DURATION.match(str(text).strip())
    if not m or not any(m.groups()):
        raise ValueError("must be a duration like 30s, 5m, 4h or 1h30m")
    h, mi, s, ms = (int(g) if g else 0 for g in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    receiver: str | None = None
    matchers: tuple[Matcher, ...] = ()
    continue_: bool = Field(False, alias="continue")
    group_by: tuple[str, ...] | None = None
    group_wait_s: float | None = Field(None, alias="group_wait")
    group_interval_s: float | None = Field(None, alias="group_interval")
    repeat_interval_s: float | None = Field(None, alias="repeat_interval")
    routes: tuple[Route, ...] = ()

    @field_validator("matchers", mode="before")
    @classmethod
    def _matchers(cls, value: Any) -> tuple[Matcher, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ValueError("must be a list of matcher strings like 'severity=\"high\"'")
        out = []
        for item in value:
            if isinstance(item, Matcher):
                out.append(item)
                continue
            if not isinstance(item, str):
                raise ValueError("each matcher must be a string like 'severity=\"high\"'")
            try:
                out.append(Matcher.parse(item))
            except MatcherError as exc:
                raise ValueError(str(exc)) from None
        return tuple(out)

    @field_validator("group_wait_s", "group_interval_s", "repeat_interval_s", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)

    @field_validator("group_by", mode="before")
    @classmethod
    def _group_by(cls, value: Any) -> tuple[str, ...] | None:
        if value is None:
            return None
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ValueError("must be a list of field names, e.g. [incident_id] or [tenant]")
        for name in value:
            if not isinstance(name, str) or not (
                name in _GROUPABLE or (name.startswith("raw.") and len(name) > 4)
            ):
                raise ValueError(
                    f"cannot group by {name!r}: use an alert field "
                    f"({', '.join(sorted(_GROUPABLE))}) or a raw.<path>"
                )
        if len(set(value)) != len(value):
            raise ValueError("names a field twice")
        return tuple(value)

    @field_validator("receiver")
    @classmethod
    def _known_receiver(cls, value: str | None, info: ValidationInfo) -> str | None:
        sinks = (info.context or {}).get("sinks")
        if value is not None and sinks is not None and value not in sinks:
            known = ", ".join(sorted(sinks)) or "none configured"
            raise ValueError(f"unknown sink {value!r} (configured sinks: {known})")
        return value


class RoutesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    route: Route

    @model_validator(mode="after")
    def _root(self) -> RoutesConfig:
        if self.route.receiver is None:
            raise ValueError("the root route needs a receiver (the default sink)")
        if self.route.matchers:
            raise ValueError("the root route matches every alert: it cannot have matchers")
        return self


def load_routes(path: str | Path, sink_names: Iterable[str] | None = None) -> RoutesConfig:
    """Load and validate a routes file; with ``sink_names``, every receiver must be one."""
    doc: Document = read_yaml(path)
    context = {"sinks": frozenset(sink_names)} if sink_names is not None else {}
    result = validate(RoutesConfig, doc, context)
    assert isinstance(result, RoutesConfig)
    return result


__all__ = ["ConfigError", "Route", "RoutesConfig", "load_routes", "parse_duration"]
