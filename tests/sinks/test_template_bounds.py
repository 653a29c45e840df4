"""Issue 15, 8: a user template's failures and sizes are bounded, one bad card never takes the
status page down, and Slack's top-level text and context block are escaped like the facts."""

from __future__ import annotations

import dataclasses
import resource
import time
from pathlib import Path

import pytest

from receiver.admin._cards import CardPreviews
from receiver.sinks.base import Delivery, PermanentError
from receiver.sinks.http import ClientPool
from receiver.sinks.sample import sample_envelope
from receiver.sinks.slack import SlackSink
from receiver.sinks.templating import MAX_RENDERED_CHARS, Templates
from tests.fixtures.settings import MakeSettings

DELIVERY = Delivery(route="route", attempt=1)


def _templates(tmp_path: Path, text: str) -> Templates:
    override = tmp_path / "line.txt.j2"
    override.write_text(text, encoding="utf-8")
    return Templates("console", ("line.txt",), {"line.txt": override})


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{{ 'a' * 10**8 }}", "repeated string"),
        ("{{ ['a'] * 10**8 }}", "repeated string"),
        ("{{ 7 ** 100000000 }}", "power"),
        ("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "longer than"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ [].pop() }}", "IndexError"),
    ],
)
def test_a_template_fails_cleanly_and_small(tmp_path: Path, text: str, says: str) -> None:
    templates = _templates(tmp_path, text)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(PermanentError) as caught:
        templates.render("line.txt", {"alert": sample_envelope()})
    assert says in str(caught.value) and "console/line.txt" in str(caught.value)
    assert time.monotonic() - started < 2
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 50 * 1024  # 'a' * 10**8 alone is 100 MB


def test_a_message_up_to_the_bound_renders(tmp_path: Path) -> None:
    templates = _templates(tmp_path, "{{ 'a' * n }}")
    assert len(templates.render("line.txt", {"n": MAX_RENDERED_CHARS})) == MAX_RENDERED_CHARS


def test_a_failing_card_template_shows_its_error_not_a_500(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    bad = tmp_path / "adaptive.json.j2"
    bad.write_text("{{ 1 / 0 }}", encoding="utf-8")
    settings = make_settings(
        sinks=[
            {
                "type": "teams",
                "name": "teams",
                "url": "https://example.invalid/hook",
                "templates": {"adaptive.json": str(bad)},
            }
        ]
    )
    previews = CardPreviews(settings)
    name, card, note = previews.card(sample_envelope(), {"teams": "route"})
    assert (name, card) == ("teams", None)
    assert note.startswith("the card does not render") and "ZeroDivisionError" in note


async def test_slack_text_and_context_are_escaped(make_settings: MakeSettings) -> None:
    settings = make_settings(
        sinks=[
            {"type": "slack", "name": "slack", "url": "https://hooks.slack.invalid/services/T/B/x"}
        ]
    )
    [config] = settings.sinks
    pool = ClientPool()
    try:
        sink = SlackSink(config, pool)  # type: ignore[arg-type]
        envelope = dataclasses.replace(
            sample_envelope(),
            title="<!channel> <https://evil.example|Click> & more",
            provider="<!here> <@U123>",
        )
        message = sink.payload(envelope, DELIVERY)
    finally:
        await pool.aclose()
    context = next(b for b in message["blocks"] if b["type"] == "context")["elements"][0]["text"]
    for text in (message["text"], context):
        assert "<" not in text and ">" not in text, text
    assert "&lt;!channel&gt; &lt;https://evil.example|Click&gt; &amp; more" in message["text"]
    assert "&lt;!here&gt;" in context and "&lt;@U123&gt;" in context
    # every mrkdwn text (Slack parses <...> there); the header is plain_text, shown as typed
    mrkdwn = [t["text"] for t in _text_objects(message["blocks"]) if t["type"] == "mrkdwn"]
    assert mrkdwn and not any("<" in t for t in mrkdwn), mrkdwn
    header = message["blocks"][0]["text"]
    assert header["type"] == "plain_text" and header["text"].startswith("<!channel>")


def _text_objects(value: object) -> list[dict[str, str]]:
    if isinstance(value, list):
        return [t for v in value for t in _text_objects(v)]
    if isinstance(value, dict):
        found = (
            [value]
            if value.get("type") in ("mrkdwn", "plain_text") and isinstance(value.get("text"), str)
            else []
        )
        return found + [t for v in value.values() for t in _text_objects(v)]
    return []
