"""The config type of every sink, validated when the settings are loaded.

A core module: it imports pydantic and the standard library only, so
``receiver.config.settings`` can hold :data:`SinkSettings` (a union discriminated on
``type``) without importing any sink.

Secrets (webhook URLs that carry tokens, API keys, passwords, signing secrets) are ``SecretStr``:
the settings loader accepts each of them inline, as ``<name>_file`` or as ``<name>_env``.
Every sink may point ``templates`` at files that replace its default templates, by name::

    templates:
      card: teams-card.json.j2      # relative to the config file
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator

from receiver.config.types import FilePath, HttpUrl, Model, Name
from receiver.config.values import check_url

__all__ = [
    "TEMPLATE_NAMES",
    "ConsoleSinkSettings",
    "EmailSinkSettings",
    "JiraSinkSettings",
    "JsonlSinkSettings",
    "PagerDutySinkSettings",
    "ServiceNowSinkSettings",
    "SinkSettings",
    "SlackSinkSettings",
    "TeamsSinkSettings",
    "TicketSinkSettings",
    "WebhookSinkSettings",
]

DEFAULT_TIMEOUT_S = 10.0
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"

# The templates each sink renders (file names in receiver/sinks/templates/<type>/); a config
# may override any of them with ``templates: {name: file}``.
TEMPLATE_NAMES: dict[str, tuple[str, ...]] = {
    "console": ("line.txt",),
    "jsonl": (),
    "webhook": ("body.json",),
    "teams": ("adaptive.json", "messagecard.json", "secure_score.json"),
    "slack": ("message.json", "app_message.json", "app_reply.txt"),
    "email": (
        "subject.txt",
        "body.txt",
        "body.html",
        "secure_score_subject.txt",
        "secure_score_body.txt",
        "secure_score_body.html",
    ),
    "jira": ("summary.txt", "description.txt", "comment.txt"),
    "servicenow": ("short_description.txt", "description.txt", "work_notes.txt"),
    "pagerduty": ("summary.txt",),
}


def _secret_url(value: SecretStr) -> SecretStr:
    # The message never echoes the value: the URL carries a token.
    check_url(value.get_secret_value())
    return value


def _webhook_secret(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    raw = value.get_secret_value().removeprefix("whsec_")
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be a Standard Webhooks secret: 'whsec_' + base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("must decode to 24 to 64 bytes (Standard Webhooks)")
    return value


SecretUrl = Annotated[SecretStr, AfterValidator(_secret_url)]
Email = Annotated[str, Field(pattern=r"^[^@\s<>]+@[^@\s<>]+$")]
Severity = Literal["high", "medium", "low", "informational", "unknown"]
Timeout = Annotated[float, Field(gt=0, le=300)]


class _Sink(Model):
    name: Name
    # Template overrides, by the names in TEMPLATE_NAMES[type].
    templates: dict[str, FilePath] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _templates(self) -> _Sink:
        kind = str(getattr(self, "type", ""))
        allowed = TEMPLATE_NAMES.get(kind, ())
        for key, path in self.templates.items():
            if key not in allowed:
                names = ", ".join(allowed) or "none"
                raise ValueError(f"templates: unknown template {key!r} (this sink has: {names})")
            if not path.is_file():
                raise ValueError(f"templates.{key}: file {path} does not exist")
        return self


class _HttpSink(_Sink):
    timeout_s: Timeout = DEFAULT_TIMEOUT_S
    # CA bundle (PEM) to verify the server with; None: the system store.
    ca_bundle: FilePath | None = None


class ConsoleSinkSettings(_Sink):
    """Human-readable lines, for the demo and a terminal."""

    type: Literal["console"]
    stream: Literal["stdout", "stderr"] = "stdout"


class JsonlSinkSettings(_Sink):
    """One envelope JSON per line, appended to a file (for a log shipper)."""

    type: Literal["jsonl"]
    path: FilePath
    fsync: bool = False


class WebhookSinkSettings(_HttpSink):
    """A JSON POST of the envelope, signed per Standard Webhooks; optionally a CloudEvent."""

    type: Literal["webhook"]
    url: SecretUrl
    signing_secret: Annotated[SecretStr | None, AfterValidator(_webhook_secret)] = None
    headers: dict[str, str] = Field(default_factory=dict)
    cloudevents: bool = False
    cloudevents_source: str = "/graph-alert-receiver"
    content_type: str = "application/json"

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = {
            "content-type",
            "content-length",
            "host",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
        }
        for key in value:
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", key):
                raise ValueError(f"header name {key!r} is not a valid HTTP token")
            if key.lower() in reserved:
                raise ValueError(f"header {key!r} is set by the sink")
        return value


class TeamsSinkSettings(_HttpSink):
    """A Teams Workflows webhook (Adaptive Card) or a legacy Office 365 connector (MessageCard)."""

    type: Literal["teams"]
    url: SecretUrl
    format: Literal["adaptive", "messagecard"] = "adaptive"


SLACK_API_URL = "https://slack.com/api/"
_SLACK_CHANNEL = r"^[#@]?[A-Za-z0-9_\-.]{1,80}$"


class SlackSinkSettings(_HttpSink):
    """Slack with Block Kit, one of two ways:

    - an incoming webhook (``url``): one message per delivery, links as buttons;
    - the Slack app (``bot_token`` and ``channel``): one message per alert (or group) in the
      channel, updated in place with ``chat.update``, a thread reply for each change, and
      triage buttons that act from Slack (the interactivity endpoint, ``actions.slack``).
    """

    type: Literal["slack"]
    url: SecretUrl | None = None
    # The app's bot token (xoxb-...); bot_token_file / bot_token_env like every secret.
    bot_token: SecretStr | None = None
    # Channel id (C0123ABCD) or name; the app must be in it, or have chat:write.public.
    channel: str | None = Field(None, pattern=_SLACK_CHANNEL)
    # Slack's Web API base (tests and the demo point it at a local stand-in).
    api_url: HttpUrl = SLACK_API_URL
    # A short thread reply under the message for every change.
    thread_replies: bool = True
    # App mode: interactive buttons that act from Slack (actions.slack), or the signed
    # action links (actions.enabled) as URL buttons.
    buttons: Literal["interactive", "links"] = "interactive"

    @model_validator(mode="after")
    def _mode(self) -> SlackSinkSettings:
        if (self.url is None) == (self.bot_token is None):
            raise ValueError(
                "a slack sink needs either url (an incoming webhook) or bot_token "
                "and channel (the Slack app), not both"
            )
        if self.bot_token is not None and not self.channel:
            raise ValueError("a slack app sink (bot_token) needs a channel")
        if self.bot_token is not None and not self.bot_token.get_secret_value().startswith(
            ("xoxb-", "xoxe.xoxb-")
        ):
            raise ValueError("bot_token must be a bot token (xoxb-...)")
        return self

    @property
    def is_app(self) -> bool:
        return self.bot_token is not None


class EmailSinkSettings(_Sink):
    """SMTP with STARTTLS or implicit TLS and auth; multipart text + HTML."""

    type: Literal["email"]
    # smtp: through an SMTP server; graph: Graph sendMail with the tenant's app token (needs
    # the Mail.Send application permission; no SMTP server).
    transport: Literal["smtp", "graph"] = "smtp"
    tenant: str | None = None  # graph: the tenant (name or id) whose app sends
    host: str | None = Field(None, min_length=1)
    port: int | None = Field(None, ge=1, le=65535)  # default: 465 (implicit), 587, 25 (none)
    tls: Literal["starttls", "implicit", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: Email
    to: list[Email] = Field(default_factory=list)
    cc: list[Email] = Field(default_factory=list)
    ca_bundle: FilePath | None = None
    timeout_s: Timeout = 30.0

    @model_validator(mode="after")
    def _coherent(self) -> EmailSinkSettings:
        if self.transport == "smtp" and not self.host:
            raise ValueError("an smtp email sink needs a host")
        if self.transport == "graph" and not self.tenant:
            raise ValueError("a graph email sink needs the tenant whose app sends")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        return self

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return {"implicit": 465, "starttls": 587, "none": 25}[self.tls]


class TicketSinkSettings(_HttpSink):
    # The site: https://your-site.atlassian.net, https://your-instance.service-now.com
    url: HttpUrl
    # Record the ticket on the alert in Graph after creating it (needs a write-back hook).
    writeback: bool = False


DEFAULT_JIRA_PRIORITIES: dict[str, str] = {
    "high": "High",
    "medium": "Medium",
    "low": "Low",
    "informational": "Lowest",
}


class JiraSinkSettings(TicketSinkSettings):
    """Jira Cloud REST v3: one issue per alert, comments for changes, a transition on resolve."""

    type: Literal["jira"]
    email: Email
    api_token: SecretStr
    project: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,19}$")
    issue_type: str = "Task"
    labels: list[str] = Field(default_factory=lambda: ["graph-alert"])
    # severity -> Jira priority name; a severity not listed sends no priority.
    priorities: dict[Severity, str] = Field(default_factory=lambda: dict(DEFAULT_JIRA_PRIORITIES))  # type: ignore[arg-type]
    # The transition that resolves an issue: its id (digits) or its name; None: no transition.
    resolve_transition: str | None = "Done"

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        for label in value:
            if not label or any(c.isspace() for c in label):
                raise ValueError("Jira labels must be non-empty and contain no white space")
        return value


DEFAULT_SNOW_LEVELS: dict[str, int] = {
    "high": 1,
    "medium": 2,
    "low": 3,
    "informational": 3,
    "unknown": 3,
}


class ServiceNowSinkSettings(TicketSinkSettings):
    """ServiceNow Table API: one incident per alert, work notes for changes, resolve."""

    type: Literal["servicenow"]
    username: str = Field(min_length=1)
    password: SecretStr
    table: str = Field("incident", pattern=r"^[a-z0-9_]+$")
    caller_id: str | None = None
    assignment_group: str | None = None
    category: str | None = None
    urgency: dict[Severity, int] = Field(default_factory=lambda: dict(DEFAULT_SNOW_LEVELS))  # type: ignore[arg-type]
    impact: dict[Severity, int] = Field(default_factory=lambda: dict(DEFAULT_SNOW_LEVELS))  # type: ignore[arg-type]
    resolve: bool = True
    resolved_state: str = "6"
    close_code: str = "Solution provided"


DEFAULT_PD_SEVERITIES: dict[str, str] = {
    "high": "critical",
    "medium": "error",
    "low": "warning",
    "informational": "info",
    "unknown": "info",
}


class PagerDutySinkSettings(_HttpSink):
    """PagerDuty Events API v2: trigger, acknowledge (taken: in progress or assigned), resolve;
    one stable dedup_key per alert or group."""

    type: Literal["pagerduty"]
    routing_key: SecretStr
    url: HttpUrl = PAGERDUTY_EVENTS_URL
    source: str = ""  # default: the alert's provider, else the tenant
    severities: dict[Severity, Literal["critical", "error", "warning", "info"]] = Field(
        default_factory=lambda: dict(DEFAULT_PD_SEVERITIES)  # type: ignore[arg-type]
    )


SinkSettings = Annotated[
    Union[  # noqa: UP007 - a discriminated union the settings loader walks
        ConsoleSinkSettings,
        JsonlSinkSettings,
        WebhookSinkSettings,
        TeamsSinkSettings,
        SlackSinkSettings,
        EmailSinkSettings,
        JiraSinkSettings,
        ServiceNowSinkSettings,
        PagerDutySinkSettings,
    ],
    Field(discriminator="type"),
]
