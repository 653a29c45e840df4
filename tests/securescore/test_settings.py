"""The per-tenant ``secure_score`` settings: defaults, and errors with file, line, key and
reason."""

from __future__ import annotations

import pytest

from receiver.config.files import ConfigError
from receiver.config.loader import load_settings
from receiver.securescore.job import policy_of
from tests.fixtures.settings import WriteConfig, base_settings_data


def test_defaults_and_policy(write_config: WriteConfig) -> None:
    data = base_settings_data()
    data["tenants"][0]["secure_score"] = {"enabled": True, "digest_weekday": "friday"}
    config = load_settings(write_config(data)).tenants[0].secure_score
    assert (
        config.enabled,
        config.interval_s,
        config.drop_threshold,
        config.top_actions,
        config.history_days,
        config.initial_lookback_days,
    ) == (True, 86_400, 2.0, 5, 30, 1)
    policy = policy_of(config)
    assert policy.digest_weekday == 4 and policy.history_days == 30
    data["tenants"][0]["secure_score"] = {"digest_weekday": None}
    assert (
        policy_of(load_settings(write_config(data)).tenants[0].secure_score).digest_weekday is None
    )
    assert (
        load_settings(write_config(base_settings_data())).tenants[0].secure_score.enabled is False
    )


def test_errors_name_file_line_and_key(write_config: WriteConfig) -> None:
    data = base_settings_data()
    data["tenants"][0]["secure_score"] = {
        "enabled": True,
        "digest_weekday": "funday",
        "history_days": 400,
        "drop_treshold": 3,
    }
    path = write_config(data)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    text = info.value.render()
    assert "3 problems" in text
    for key in ("digest_weekday", "history_days", "drop_treshold"):
        line = next(x for x in text.splitlines() if f"secure_score.{key}" in x)
        assert line.strip().startswith(f"{path}:")  # the file and its line
    assert "less than or equal to 90" in text and "monday" in text
