from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from receiver.envelope import Envelope
from receiver.routing.silences import Silence, silenced_by

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ENV = Envelope(
    id="a",
    tenant_id="t",
    source_api="alerts_v2",
    title="Test alert",
    severity="low",
    tenant="contoso",
    provider="IPC",
)


def make(
    *matchers: str, start: timedelta = timedelta(hours=-1), end: timedelta = timedelta(hours=1)
) -> Silence:
    return Silence.new(matchers, NOW + end, "maintenance window, ask bob", starts_at=NOW + start)


@pytest.mark.parametrize(
    ("silence", "silenced"),
    [
        (make('tenant="contoso"'), True),
        (make('tenant="contoso"', 'severity="high"'), False),  # all matchers must match
        (make('title=~".*Test.*"'), True),
        (make('tenant="contoso"', start=timedelta(minutes=5)), False),  # not started
        (
            make('tenant="contoso"', start=timedelta(hours=-2), end=timedelta(seconds=-1)),
            False,
        ),  # expired
    ],
)
def test_silence_semantics(silence: Silence, silenced: bool) -> None:
    assert (silenced_by(ENV, [silence], NOW) is silence) is silenced


def test_json_round_trip() -> None:
    s = make('tenant="contoso"', 'severity=~"low|medium"')
    assert Silence.from_json(s.to_json()) == s


@pytest.mark.parametrize(
    ("matchers", "comment", "end", "message"),
    [
        ([], "why", timedelta(hours=1), "at least one matcher"),
        (['a="b"'], "  ", timedelta(hours=1), "needs a comment"),
        (['a="b"'], "why", timedelta(hours=-2), "must end after it starts"),
        (["garbage"], "why", timedelta(hours=1), "bad matcher"),
    ],
)
def test_invalid_silences(matchers: list[str], comment: str, end: timedelta, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Silence.new(matchers, NOW + end, comment, starts_at=NOW - timedelta(hours=1))
