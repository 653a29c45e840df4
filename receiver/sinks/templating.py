"""Message templates: Jinja2 in a sandbox, shipped defaults a config can override by name.

Each sink renders named templates (``receiver/sinks/templates/<type>/<name>.j2``); a sink's
``templates: {name: file}`` replaces any of them. Names ending in ``.html`` are autoescaped;
names ending in ``.json`` must render a JSON document (use the ``tojson`` filter for values).
Every template sees the same context (:func:`context`): ``alert`` (the Envelope), ``facts``,
``changes``, ``severity_label``, ``portal_url``, ``route``, ``attempt``, ``sink``, ``actions``
(triage links ``{label, url}``, empty unless actions are enabled) and whatever the sink
adds. All templates are compiled when the sink is built, so a broken override fails at start,
not at the first alert.

A template is the operator's code run on data from Graph, so its failures are bounded and
reported the same way whatever they are: any error while rendering (a Jinja error, or a
``ZeroDivisionError`` from ``{{ 1 / 0 }}``) is a PermanentError naming the template, and a
rendered message may be at most ``MAX_RENDERED_CHARS`` long: ``{{ 'a' * 10**8 }}`` is refused
before the string is built (the sandbox checks ``*`` and ``**``), a loop that writes too much is
cut off while rendering.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jinja2 import FunctionLoader, StrictUndefined, TemplateError
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from receiver.envelope import Envelope
from receiver.sinks.base import Delivery, PermanentError

__all__ = ["TemplateLoadError", "Templates", "context"]

TEMPLATE_DIR = Path(__file__).parent / "templates"
MAX_RENDERED_CHARS = 1_000_000  # far above any vendor's message limit (Slack: 40,000)
MAX_EXPONENT_BITS = 4096  # ``x ** y`` results beyond this many bits are refused
MAX_ENTITIES = 8
_FIELD_LABELS = {
    "status": "Status",
    "severity": "Severity",
    "assigned_to": "Assigned to",
    "classification": "Classification",
    "determination": "Determination",
}
_ENTITY_LABELS = {
    "user": "User",
    "device": "Device",
    "ip": "IP address",
    "url": "URL",
    "file": "File",
    "mailbox": "Mailbox",
    "process": "Process",
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
    return [
        {
            "field": name,
            "label": _FIELD_LABELS.get(name, _label(name)),
            "value": str(getattr(alert, name, "")) or "(none)",
        }
        for name in alert.changes
    ]


def context(alert: Envelope, delivery: Delivery, sink: str, **extra: Any) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "alert": alert,
        "route": delivery.route,
        "attempt": delivery.attempt,
        "sink": sink,
        "facts": facts(alert),
        "changes": changes(alert),
        "severity_label": _label(alert.severity),
        "portal_url": alert.web_url,
        "is_update": alert.is_update,
        "actions": [{"label": label, "url": url} for label, url in delivery.actions],
    }
    ctx.update(extra)
    return ctx


class _BoundedEnvironment(SandboxedEnvironment):
    """The sandbox, with ``*`` and ``**`` checked so a template cannot build a huge string,
    list or number (Jinja's sandbox bounds ``range`` only)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (
                    isinstance(seq, (str, list, tuple))
                    and isinstance(n, int)
                    and len(seq) * n > MAX_RENDERED_CHARS
                ):
                    raise SecurityError(
                        f"a repeated string or list longer than {MAX_RENDERED_CHARS:,} is refused"
                    )
        elif (
            operator == "**"
            and isinstance(left, int)
            and isinstance(right, int)
            and right > 0
            and abs(left) > 1
            and left.bit_length() * right > MAX_EXPONENT_BITS
        ):
            raise SecurityError("a power that large is refused")
        return super().call_binop(context, operator, left, right)


class Templates:
    """The compiled templates of one sink."""

    def __init__(
        self,
        kind: str,
        names: tuple[str, ...],
        overrides: Mapping[str, Path] | None = None,
        *,
        filters: Mapping[str, Callable[..., Any]] | None = None,
    ) -> None:
        self.kind = kind
        self._overrides = dict(overrides or {})
        self._env = _BoundedEnvironment(
            loader=FunctionLoader(self._source),
            autoescape=self._autoescape,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            auto_reload=False,
        )
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
            raise TemplateLoadError(
                f"template {path}: cannot read ({getattr(exc, 'strerror', None) or 'not UTF-8'})"
            ) from None

    def render(self, name: str, ctx: Mapping[str, Any]) -> str:
        """The rendered text; PermanentError if the template fails or writes more than
        ``MAX_RENDERED_CHARS`` (retrying cannot help)."""
        parts = []
        size = 0
        try:
            for part in self._compiled[name].generate(ctx):
                size += len(part)
                if size > MAX_RENDERED_CHARS:
                    raise PermanentError(
                        f"template {self.kind}/{name}: the message is longer "
                        f"than {MAX_RENDERED_CHARS:,} characters"
                    )
                parts.append(part)
        except PermanentError:
            raise
        except TemplateError as exc:
            raise PermanentError(f"template {self.kind}/{name}: {exc.message or exc}") from None
        except Exception as exc:  # the operator's template code failed: say where and how
            raise PermanentError(
                f"template {self.kind}/{name}: {type(exc).__name__}: {str(exc)[:200]}"
            ) from None
        return "".join(parts).strip()

    def render_json(self, name: str, ctx: Mapping[str, Any]) -> Any:
        text = self.render(name, ctx)
        try:
            return json.loads(text)
        except ValueError as exc:
            raise PermanentError(
                f"template {self.kind}/{name} did not render JSON: "
                f"{type(exc).__name__} at line {getattr(exc, 'lineno', '?')}"
            ) from None
