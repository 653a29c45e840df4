from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config.files import ConfigError
from receiver.routing.config import load_routes, parse_duration
from tests.fixtures.settings import WriteConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "routes.example.yaml"


def test_example_routes_load() -> None:
    routes = load_routes(EXAMPLE, ["console", "archive"])
    assert routes.route.receiver == "console"
    first = routes.route.routes[0]
    assert first.receiver == "archive" and first.continue_ is True


def test_errors_name_key_and_line(write_config: WriteConfig) -> None:
    path = write_config(
        "route:\n"
        "  receiver: console\n"
        "  routes:\n"
        "    - matchers: ['severity=~\"(x\"']\n"
        "      receiver: console\n"
        "    - receiver: pager\n"
        "      group_wait: soon\n"
        "      colour: red\n",
        "routes.yaml",
    )
    with pytest.raises(ConfigError) as exc:
        load_routes(path, ["console"])
    lines = [i.render() for i in exc.value.issues]
    assert any(
        line.startswith(f"{path}:4: route.routes[0].matchers:")
        and "invalid regular expression" in line
        for line in lines
    )
    assert (
        f"{path}:6: route.routes[1].receiver: unknown sink 'pager' "
        "(configured sinks: console)" in lines
    )
    assert any(line.startswith(f"{path}:7: route.routes[1].group_wait:") for line in lines)
    assert f"{path}:8: route.routes[1].colour: unknown key" in lines


def test_root_route_rules(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError, match="needs a receiver"):
        load_routes(write_config("route:\n  routes: []\n", "r.yaml"), ["a"])
    with pytest.raises(ConfigError, match="cannot have matchers"):
        load_routes(write_config("route:\n  receiver: a\n  matchers: ['a=b']\n", "r2.yaml"), ["a"])


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("4h", 14400), ("1h30m", 5400), ("250ms", 0.25), (12, 12)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5d", "-3", "1.5h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
