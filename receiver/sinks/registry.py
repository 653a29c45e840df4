"""The one place that knows every sink type: build sinks from their config.

A sink type is a module with a config class (in :mod:`receiver.config.sinks`) and a sink class;
:data:`FACTORIES` maps the config's ``type`` to how to build it. All sinks of a process share
one :class:`~receiver.sinks.http.ClientPool` and one :class:`~receiver.sinks.metrics.SinkMetrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from receiver.config.sinks import SinkSettings
from receiver.sinks.base import BaseSink, GraphMailer, TicketStore, TicketWriteBack
from receiver.sinks.console import ConsoleSink
from receiver.sinks.email import EmailSink
from receiver.sinks.http import ClientPool
from receiver.sinks.jira import JiraSink
from receiver.sinks.jsonl import JsonlSink
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.pagerduty import PagerDutySink
from receiver.sinks.servicenow import ServiceNowSink
from receiver.sinks.slack import SlackSink
from receiver.sinks.slack_app import Buttons, SlackAppSink
from receiver.sinks.teams import TeamsSink
from receiver.sinks.templating import TemplateLoadError
from receiver.sinks.webhook import WebhookSink

__all__ = ["FACTORIES", "SinkBuildError", "Sinks", "build_sink", "build_sinks"]


@dataclass
class _Context:
    pool: ClientPool
    metrics: SinkMetrics
    tickets: TicketStore | None
    writeback: TicketWriteBack | None
    mailer: GraphMailer | None = None
    messages: TicketStore | None = None  # the Slack app's parent messages
    buttons: Buttons | None = None  # the Slack app's triage buttons (actions.rules.buttons)


def _slack(config: Any, x: _Context) -> BaseSink:
    if config.is_app:
        return SlackAppSink(config, x.pool, x.messages, buttons=x.buttons, metrics=x.metrics)
    return SlackSink(config, x.pool, metrics=x.metrics)


Factory = Callable[[Any, _Context], BaseSink]

FACTORIES: Mapping[str, Factory] = {
    "console": lambda c, x: ConsoleSink(c, metrics=x.metrics),
    "jsonl": lambda c, x: JsonlSink(c, metrics=x.metrics),
    "webhook": lambda c, x: WebhookSink(c, x.pool, metrics=x.metrics),
    "teams": lambda c, x: TeamsSink(c, x.pool, metrics=x.metrics),
    "slack": _slack,
    "email": lambda c, x: EmailSink(c, metrics=x.metrics, mailer=x.mailer),
    "pagerduty": lambda c, x: PagerDutySink(c, x.pool, metrics=x.metrics),
    "jira": lambda c, x: JiraSink(c, x.pool, x.tickets, writeback=x.writeback, metrics=x.metrics),
    "servicenow": lambda c, x: ServiceNowSink(
        c, x.pool, x.tickets, writeback=x.writeback, metrics=x.metrics
    ),
}
TICKET_TYPES = frozenset({"jira", "servicenow"})


class SinkBuildError(ValueError):
    """A sink could not be built (a template does not compile, no ticket store, ...)."""


@dataclass
class Sinks:
    """The sinks of a process by name, and what they share."""

    by_name: dict[str, BaseSink] = field(default_factory=dict)
    pool: ClientPool = field(default_factory=ClientPool)
    metrics: SinkMetrics = field(default_factory=SinkMetrics)

    def __getitem__(self, name: str) -> BaseSink:
        return self.by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def names(self) -> list[str]:
        return list(self.by_name)

    async def aclose(self) -> None:
        for sink in self.by_name.values():
            await sink.aclose()
        await self.pool.aclose()


def build_sink(
    config: SinkSettings,
    *,
    pool: ClientPool,
    metrics: SinkMetrics,
    tickets: TicketStore | None = None,
    writeback: TicketWriteBack | None = None,
    mailer: GraphMailer | None = None,
    messages: TicketStore | None = None,
    buttons: Buttons | None = None,
) -> BaseSink:
    factory = FACTORIES.get(config.type)
    if factory is None:  # pragma: no cover - the settings union rejects unknown types
        raise SinkBuildError(f"sink {config.name}: unknown type {config.type!r}")
    if config.type in TICKET_TYPES and tickets is None:
        raise SinkBuildError(f"sink {config.name}: a {config.type} sink needs a ticket store")
    if getattr(config, "transport", "") == "graph" and mailer is None:
        raise SinkBuildError(f"sink {config.name}: the graph transport needs a Graph mailer")
    if getattr(config, "is_app", False) and messages is None:
        raise SinkBuildError(f"sink {config.name}: a slack app sink needs a message store")
    try:
        return factory(
            config, _Context(pool, metrics, tickets, writeback, mailer, messages, buttons)
        )
    except TemplateLoadError as exc:
        raise SinkBuildError(f"sink {config.name}: {exc}") from None


def build_sinks(
    configs: Iterable[SinkSettings],
    *,
    tickets: TicketStore | None = None,
    writeback: TicketWriteBack | None = None,
    metrics: SinkMetrics | None = None,
    mailer: GraphMailer | None = None,
    pool: ClientPool | None = None,
    messages: TicketStore | None = None,
    buttons: Buttons | None = None,
) -> Sinks:
    """Every configured sink (``settings.sinks``); SinkBuildError on the first that cannot be
    built."""
    sinks = Sinks(pool=pool or ClientPool(), metrics=metrics or SinkMetrics())
    for config in configs:
        sinks.by_name[config.name] = build_sink(
            config,
            pool=sinks.pool,
            metrics=sinks.metrics,
            tickets=tickets,
            writeback=writeback,
            mailer=mailer,
            messages=messages,
            buttons=buttons,
        )
    return sinks
