"""Message templates: Jinja2 in a sandbox, shipped defaults a config can override by name.

Each sink renders named templates (``receiver/sinks/templates/<type>/<name>.j2``); a sink's
``templates: {name: file}`` replaces any of them. Names ending in ``.html`` are autoescaped;
names ending in ``.json`` must render a JSON document (use the ``tojson`` filter for values).
Every template sees the same context (:func:`context`): ``alert`` (the Envelope), ``facts``,
``changes``, ``severity_label``, ``portal_url``, ``route``, ``attempt``, ``sink``, ``actions``
(triage links ``{label, url}``, empty unless actions are enabled) and whatever the sink
adds. All templates are compiled when the sink is built, so a broken override fails at start,
not at the first alert.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jinja2 import FunctionLoader, StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from receiver.envelope import Envelope
from receiver.sinks.base import Delivery, PermanentError

__all__ = ["TemplateLoadError", "Templates", "context"]

TEMPLATE_DIR = Path(__file__).parent / "templates"
MAX_ENTITIES = 8
_FIELD_LABELS = {
    "status": "Status", "severity": "Severity", "assigned_to": "Assigned to",
    "classification": "Classification", "determination": "Determination",
}
_ENTITY_LABELS = {
    "user": "User", "device": "Device", "ip": "IP address", "url": "URL", "file": "File",
    "mailbox": "Mailbox", "process": "Process",
}


class TemplateLoadError(ValueError):
    """A template (shipped or override) is missing or does not compile."""


def _label(value: str) -> str:
    return value[:1].upper() + value[1:] if value else ""


def facts(alert: Envelope) -> list[tuple[str, str]]:
    """Title/value pairs worth showing on a card: who, what, where, when."""
    out = [
        ("Severity", _label(alert.severity)),
        ("Status", alert.status),
        ("Tenant", alert.tenant or alert.tenant_id),
        ("Provider", " / ".join(v for v in (alert.provider, alert.product) if v)),
        ("Category", alert.category),
        ("Time", alert.first_activity_at or alert.created_at),
        ("Assigned to", alert.assigned_to),
        ("Incident", alert.incident_id),
    ]
    for entity in alert.entities[:MAX_ENTITIES]:
        out.append((_ENTITY_LABELS.get(entity.type, _label(entity.type)), entity.name))
    return [(title, value) for title, value in out if value]


def changes(alert: Envelope) -> list[dict[str, str]]:
    return [{"field": name, "label": _FIELD_LABELS.get(name, _label(name)),
             "value": str(getattr(alert, name, "")) or "(none)"} for name in alert.changes]


def context(alert: Envelope, delivery: Delivery, sink: str, **extra: Any) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "alert": alert, "route": delivery.route, "attempt": delivery.attempt, "sink": sink,
        "facts": facts(alert), "changes": changes(alert),
        "severity_label": _label(alert.severity), "portal_url": alert.web_url,
        "is_update": alert.is_update,
        "actions": [{"label": label, "url": url} for label, url in delivery.actions],
    }
    ctx.update(extra)
    return ctx


class Templates:
    """The compiled templates of one sink."""

    def __init__(self, kind: str, names: tuple[str, ...],
                 overrides: Mapping[str, Path] | None = None, *,
                 filters: Mapping[str, Callable[..., Any]] | None = None) -> None:
        self.kind = kind
        self._overrides = dict(overrides or {})
        self._env = SandboxedEnvironment(
            loader=FunctionLoader(self._source), autoescape=self._autoescape,
            undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
            keep_trailing_newline=False, auto_reload=False)
        self._env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": False}
        self._env.filters.update(filters or {})
        self._compiled = {}
        for name in names:
            try:
                self._compiled[name] = self._env.get_template(name)
            except TemplateError as exc:
                where = self._overrides.get(name) or f"{kind}/{name}.j2"
                raise TemplateLoadError(f"template {where}: {exc.message or exc}") from None

    @staticmethod
    def _autoescape(name: str | None) -> bool:
        return bool(name and name.endswith(".html"))

    def _source(self, name: str) -> str:
        path = self._overrides.get(name) or TEMPLATE_DIR / self.kind / f"{name}.j2"
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TemplateLoadError(f"template {path}: cannot read "
                                    f"({getattr(exc, 'strerror', None) or 'not UTF-8'})") from None

    def render(self, name: str, ctx: Mapping[str, Any]) -> str:
        """The rendered text; PermanentError if the template fails (retrying cannot help)."""
        try:
            return self._compiled[name].render(ctx).strip()
        except TemplateError as exc:
            raise PermanentError(f"template {self.kind}/{name}: {exc.message or exc}") from None

    def render_json(self, name: str, ctx: Mapping[str, Any]) -> Any:
        text = self.render(name, ctx)
        try:
            return json.loads(text)
        except ValueError as exc:
            raise PermanentError(f"template {self.kind}/{name} did not render JSON: "
                                 f"{type(exc).__name__} at line {getattr(exc, 'lineno', '?')}"
                                 ) from None
