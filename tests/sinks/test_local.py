"""Console and JSON-lines sinks, the registry, templates and config validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from receiver.config.files import ConfigError
from receiver.config.loader import settings_from_mapping
from receiver.config.sinks import TEMPLATE_NAMES
from receiver.envelope import Envelope
from receiver.sinks.base import Delivery, PermanentError
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.registry import FACTORIES, SinkBuildError, build_sinks
from tests.fixtures.settings import base_settings_data
from tests.sinks.conftest import make_envelope, update_of
from tests.sinks.helpers import config


async def test_console_lines(capsys: pytest.CaptureFixture[str]) -> None:
    sinks = build_sinks([config({"type": "console", "name": "c"})])
    env = make_envelope()
    await sinks["c"].send(env, Delivery())
    await sinks["c"].send(update_of(env, status="resolved"), Delivery())
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("NEW [HIGH] contoso: Suspicious PowerShell")
    assert env.web_url in first
    assert second.startswith("UPDATED ") and "changed: status=resolved" in second
    assert (
        sinks.metrics.value(
            "receiver_sink_deliveries_total", sink="c", type="console", outcome="ok"
        )
        == 2
    )


async def test_jsonl_appends_one_envelope_per_line(tmp_path: Path) -> None:
    path = tmp_path / "out" / "alerts.jsonl"
    sinks = build_sinks([config({"type": "jsonl", "name": "j", "path": str(path), "fsync": True})])
    envs = [make_envelope(f"a{i}") for i in range(20)]
    import asyncio

    await asyncio.gather(*(sinks["j"].send(e, Delivery()) for e in envs))
    lines = path.read_text().splitlines()
    assert sorted(Envelope.from_json(line).id for line in lines) == sorted(e.id for e in envs)
    assert Envelope.from_json(lines[0]) == next(
        e for e in envs if e.id == json.loads(lines[0])["id"]
    )


async def test_jsonl_path_is_a_directory_is_permanent(tmp_path: Path) -> None:
    sinks = build_sinks([config({"type": "jsonl", "name": "j", "path": str(tmp_path)})])
    with pytest.raises(PermanentError, match="jsonl"):
        await sinks["j"].send(make_envelope(), Delivery())


def test_every_type_is_registered_and_has_its_templates() -> None:
    assert set(FACTORIES) == set(TEMPLATE_NAMES)
    root = Path(__file__).resolve().parents[2] / "receiver" / "sinks" / "templates"
    for kind, names in TEMPLATE_NAMES.items():
        for name in names:
            assert (root / kind / f"{name}.j2").is_file(), (kind, name)


async def test_template_override_and_sandbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tpl = tmp_path / "line.j2"
    tpl.write_text("ALERT {{ alert.id }} {{ severity_label }} via {{ route }}")
    data = base_settings_data()
    data["sinks"] = [{"type": "console", "name": "c", "templates": {"line.txt": "line.j2"}}]
    settings = settings_from_mapping(data, source=str(tmp_path / "receiver.yaml"))
    sinks = build_sinks(settings.sinks)
    await sinks["c"].send(make_envelope("abc"), Delivery(route="soc"))
    assert capsys.readouterr().out == "ALERT abc High via soc\n"
    # the sandbox refuses to reach into Python internals
    tpl.write_text("{{ alert.__class__.__mro__[1].__subclasses__() }}")
    sinks = build_sinks(settings_from_mapping(data, source=str(tmp_path / "receiver.yaml")).sinks)
    with pytest.raises(PermanentError, match=r"template console/line\.txt"):
        await sinks["c"].send(make_envelope(), Delivery())
    # a template that does not compile fails when the sink is built
    tpl.write_text("{% if %}")
    with pytest.raises(SinkBuildError, match="line"):
        build_sinks(settings_from_mapping(data, source=str(tmp_path / "receiver.yaml")).sinks)


def test_html_is_autoescaped_and_json_templates_must_render_json(tmp_path: Path) -> None:
    from receiver.sinks.templating import Templates, context

    (tmp_path / "h.j2").write_text("<b>{{ alert.title }}</b>")
    (tmp_path / "j.j2").write_text("{ not json")
    t = Templates("email", ("body.html",), {"body.html": tmp_path / "h.j2"})
    ctx = context(make_envelope(), Delivery(), "m")
    assert t.render("body.html", ctx) == "<b>Suspicious PowerShell &lt;download&gt; &amp; run</b>"
    tj = Templates("slack", ("message.json",), {"message.json": tmp_path / "j.j2"})
    with pytest.raises(PermanentError, match="did not render JSON"):
        tj.render_json("message.json", ctx)


@pytest.mark.parametrize(
    ("sink", "message"),
    [
        ({"type": "teams", "name": "t", "url": "ftp://x"}, "sinks[0].url: must be a URL"),
        ({"type": "teams", "name": "t", "url": "https://h/p", "format": "card"}, "sinks[0].format"),
        (
            {"type": "webhook", "name": "w", "url": "https://h/p", "signing_secret": "whsec_!!"},
            "sinks[0].signing_secret: must be a Standard Webhooks secret",
        ),
        (
            {"type": "webhook", "name": "w", "url": "https://h/p", "headers": {"webhook-id": "x"}},
            "is set by the sink",
        ),
        (
            {"type": "email", "name": "e", "host": "h", "sender": "a@b.c", "username": "u"},
            "give both username and password",
        ),
        (
            {
                "type": "jira",
                "name": "j",
                "url": "https://x.atlassian.net",
                "email": "a@b.c",
                "api_token": "t",
                "project": "sec",
            },
            "sinks[0].project",
        ),
        (
            {
                "type": "servicenow",
                "name": "s",
                "url": "https://x.service-now.com",
                "username": "u",
            },
            "sinks[0].password: required key is missing",
        ),
        ({"type": "pagerduty", "name": "p"}, "sinks[0].routing_key: required key is missing"),
        ({"type": "console", "name": "c", "templates": {"card": "x.j2"}}, "unknown template"),
        (
            {"type": "console", "name": "c", "templates": {"line.txt": "missing.j2"}},
            "does not exist",
        ),
    ],
)
def test_config_errors(sink: dict[str, object], message: str) -> None:
    data = base_settings_data()
    data["sinks"] = [sink]
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(data)
    assert message in info.value.render()
    assert "whsec_!!" not in info.value.render()


def test_secret_sources_and_no_echo(tmp_path: Path) -> None:
    url = "https://prod.logic.azure.com/workflows/1/invoke?sig=TOKEN-from-env-123456"
    data = base_settings_data()
    data["sinks"] = [
        {"type": "teams", "name": "t", "url_env": "TEAMS"},
        {"type": "pagerduty", "name": "p", "routing_key_file": "key.txt"},
    ]
    (tmp_path / "key.txt").write_text("file-routing-key-0123\n")
    settings = settings_from_mapping(data, source=str(tmp_path / "r.yaml"), environ={"TEAMS": url})
    teams, pd = settings.sinks
    assert teams.type == "teams" and teams.url.get_secret_value() == url
    assert pd.type == "pagerduty" and pd.routing_key.get_secret_value() == "file-routing-key-0123"
    assert "TOKEN-from-env" not in repr(settings)
    data["sinks"] = [{"type": "teams", "name": "t", "url": "not a url sig=LEAKME"}]
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(data)
    assert "LEAKME" not in info.value.render()


def test_ticket_sinks_need_a_store() -> None:
    jira = config(
        {
            "type": "jira",
            "name": "j",
            "url": "https://x.atlassian.net",
            "email": "a@b.c",
            "api_token": "t",
            "project": "SEC",
        }
    )
    with pytest.raises(SinkBuildError, match="ticket store"):
        build_sinks([jira], metrics=SinkMetrics())
