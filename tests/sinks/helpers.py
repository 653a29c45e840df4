"""Sink configs for the tests, pointing at a loopback server, with secret-bearing values."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from receiver.config.sinks import SinkSettings

TEAMS_TOKEN = "sig=TeAmSsEcReTtOkEn0123456789abcdef"
SLACK_TOKEN = "T000SLACK/B000SLACK/XXslacksecrettokenXX"
WEBHOOK_TOKEN = "hooktoken-9f8e7d6c5b4a"
SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
JIRA_TOKEN = "ATATTjiraapitokenSECRET123"
SNOW_PASSWORD = "sn0w-p4ssw0rd-SECRET"
PD_KEY = "R0UT1NGK3Ypagerdutysecret0"
SMTP_PASSWORD = "smtp-p4ss-SECRET-value"

SECRETS = (
    TEAMS_TOKEN,
    SLACK_TOKEN,
    WEBHOOK_TOKEN,
    SIGNING_SECRET.removeprefix("whsec_"),
    JIRA_TOKEN,
    SNOW_PASSWORD,
    PD_KEY,
    SMTP_PASSWORD,
)

_ADAPTER: TypeAdapter[Any] = TypeAdapter(SinkSettings)


def config(data: dict[str, Any]) -> Any:
    return _ADAPTER.validate_python(data)


def http_config(kind: str, url: str, **extra: Any) -> Any:
    """A config of an HTTP sink type whose endpoint is ``url`` (a loopback server)."""
    data: dict[str, Any] = {"type": kind, "name": f"{kind}-sink", "timeout_s": 2.0}
    if kind == "teams":
        data["url"] = f"{url}/workflows/abc/triggers/manual/paths/invoke?{TEAMS_TOKEN}"
    elif kind == "slack":
        data["url"] = f"{url}/services/{SLACK_TOKEN}"
    elif kind == "webhook":
        data.update(
            url=f"{url}/hooks/{WEBHOOK_TOKEN}",
            signing_secret=SIGNING_SECRET,
            headers={"Authorization": "Bearer hdr-secret-bearer-token"},
        )
    elif kind == "pagerduty":
        data.update(url=f"{url}/v2/enqueue", routing_key=PD_KEY)
    elif kind == "jira":
        data.update(url=url, email="bot@contoso.com", api_token=JIRA_TOKEN, project="SEC")
    elif kind == "servicenow":
        data.update(
            url=url,
            username="svc-graph",
            password=SNOW_PASSWORD,
            assignment_group="SOC",
            caller_id="graph-receiver",
        )
    data.update(extra)
    return config(data)
