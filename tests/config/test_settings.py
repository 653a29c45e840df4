from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from receiver.config.files import ConfigError
from receiver.config.loader import load_settings, settings_from_mapping
from receiver.config.settings import LEGACY_ALERTS_RETIRED, Settings
from tests.fixtures.settings import CLIENT_SECRET, TENANT_ID, WriteConfig, base_settings_data

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "receiver.example.yaml"


def issues_of(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [i.render() for i in exc.value.issues]


def test_example_config_is_valid() -> None:
    settings = load_settings(EXAMPLE, environ={})
    assert settings.tenants[0].name == "contoso"
    assert settings.routes_file == REPO / "config" / "routes.example.yaml"
    assert settings.source == str(EXAMPLE)


def test_defaults_are_production_safe() -> None:
    settings = Settings()
    # Today's Graph: alerts_v2 and incidents are polled, every 10 s; nothing is subscribed.
    tenant = settings_from_mapping(base_settings_data()).tenants[0]
    assert (tenant.poll.alerts_v2, tenant.poll.incidents, tenant.poll.interval_s) == (
        True,
        True,
        10.0,
    )
    assert tenant.subscriptions == []
    assert settings.graph.authority_host == "https://login.microsoftonline.com"
    assert settings.web.public_url.startswith("https://")
    assert settings.web.max_body_bytes == 1024 * 1024
    assert settings.redis.key_prefix == "{receiver}"


def test_every_problem_reported_with_file_line_and_key(write_config: WriteConfig) -> None:
    path = write_config(
        "redis:\n"
        "  url: redis://127.0.0.1:6379/0\n"
        "  colour: blue\n"
        "web:\n"
        "  public_url: 'htps//nowhere'\n"
        "tenants:\n"
        "  - name: contoso\n"
        "    client_id: 0d6f9b8a-7c5e-4d3b-8a1f-2e4c6b8d0f1a\n"
        "    client_secret: topsecret-value\n"
        "    client_secret_file: /etc/hostname\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_settings(path, environ={})
    lines = issues_of(exc)
    assert f"{path}:3: redis.colour: unknown key" in lines
    assert f"{path}:5: web.public_url: must be a URL with scheme https or http" in lines
    assert f"{path}:7: tenants[0].tenant_id: required key is missing" in lines
    assert any(
        line.startswith(f"{path}:10: tenants[0].client_secret_file: secret given twice")
        for line in lines
    )
    assert len(lines) == 4
    assert "topsecret-value" not in exc.value.render()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"web": {"public_url": "http://x.example"}, "tenants": []}, "public_url must be https"),
        ({"redis": {"key_prefix": "receiver"}}, "hash tag"),
        ({"redis": {"url": "http://localhost"}}, "scheme redis or rediss"),
        ({"web": {"port": 70000}}, "web.port"),
        (
            {
                "tenants": [
                    {
                        "name": "a",
                        "tenant_id": "not-a-guid",
                        "client_id": TENANT_ID,
                        "client_secret": "x",
                    }
                ]
            },
            "must be a GUID",
        ),
        (
            {"tenants": [{"name": "a", "tenant_id": TENANT_ID, "client_id": TENANT_ID}]},
            "needs a credential",
        ),
        (
            {
                "tenants": [
                    {
                        "name": "a",
                        "tenant_id": TENANT_ID,
                        "client_id": TENANT_ID,
                        "client_secret": "x",
                        "certificate": {"private_key_file": "k.pem", "thumbprint": "A" * 40},
                    }
                ]
            },
            "not both",
        ),
        (
            {
                "tenants": [
                    {
                        "name": "a",
                        "tenant_id": TENANT_ID,
                        "client_id": TENANT_ID,
                        "certificate": {"private_key_file": "k.pem", "thumbprint": "xyz"},
                    }
                ]
            },
            "thumbprint",
        ),
        (
            {
                "tenants": [
                    {
                        "name": "a",
                        "tenant_id": TENANT_ID,
                        "client_id": TENANT_ID,
                        "client_secret": "x",
                        "subscriptions": [{"resource": "security/alerts"}],
                    }
                ]
            },
            "unfiltered 'security/alerts'",
        ),
        (
            {
                "tenants": [
                    {
                        "name": "a",
                        "tenant_id": TENANT_ID,
                        "client_id": TENANT_ID,
                        "client_secret": "x",
                        "subscriptions": [
                            {"resource": "security/alerts/x", "lifetime_minutes": 43_201}
                        ],
                    }
                ]
            },
            "lifetime_minutes",
        ),
        (
            {
                "tenants": [
                    {
                        "name": "a",
                        "tenant_id": TENANT_ID,
                        "client_id": TENANT_ID,
                        "client_secret": "x",
                        "subscriptions": [{}],
                    }
                ]
            },
            "tenants[0].subscriptions[0].resource: required key is missing",
        ),
        # Graph gives up on an answer after 3 s and counts one over 2.9 s as slow.
        (
            {
                "web": {
                    "public_url": "http://x.example",
                    "allow_http": True,
                    "enqueue_budget_ms": 2600,
                }
            },
            "web.enqueue_budget_ms",
        ),
        (
            {"sinks": [{"type": "console", "name": "x"}, {"type": "console", "name": "x"}]},
            "duplicate sink name: x",
        ),
        ({"sinks": [{"type": "carrier-pigeon", "name": "x"}]}, "sinks[0]"),
        ({"sinks": [{"type": "teams", "name": "t"}]}, "sinks[0].url"),
        ({"logging": {"level": "LOUD"}}, "logging.level"),
    ],
)
def test_invalid_settings_are_rejected(override: dict[str, object], expected: str) -> None:
    data = base_settings_data()
    data.update(override)
    with pytest.raises(ConfigError) as exc:
        settings_from_mapping(data)
    assert expected in exc.value.render()


def test_duplicate_tenants_rejected() -> None:
    data = base_settings_data()
    data["tenants"] = [dict(data["tenants"][0]), dict(data["tenants"][0], name="other")]
    with pytest.raises(ConfigError) as exc:
        settings_from_mapping(data)
    assert f"duplicate tenant_id: {TENANT_ID}" in exc.value.render()


def test_secret_from_file_relative_to_config(write_config: WriteConfig, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("from-a-file\n")
    data = base_settings_data()
    tenant = data["tenants"][0]
    del tenant["client_secret"]
    tenant["client_secret_file"] = "secret.txt"
    settings = load_settings(write_config(data), environ={})
    secret = settings.tenants[0].client_secret
    assert secret is not None
    assert secret.get_secret_value() == "from-a-file"
    assert "from-a-file" not in repr(settings)


def test_secret_from_named_env_var() -> None:
    data = base_settings_data()
    tenant = data["tenants"][0]
    del tenant["client_secret"]
    tenant["client_secret_env"] = "MY_GRAPH_SECRET"
    settings = settings_from_mapping(data, environ={"MY_GRAPH_SECRET": "from-env"})
    secret = settings.tenants[0].client_secret
    assert secret is not None and secret.get_secret_value() == "from-env"
    with pytest.raises(ConfigError) as exc:
        settings_from_mapping(data, environ={})
    assert "environment variable MY_GRAPH_SECRET is not set" in exc.value.render()


def test_missing_secret_file_named_without_content(write_config: WriteConfig) -> None:
    data = base_settings_data()
    del data["tenants"][0]["client_secret"]
    data["tenants"][0]["client_secret_file"] = "nope.txt"
    with pytest.raises(ConfigError) as exc:
        load_settings(write_config(data), environ={})
    assert "tenants[0].client_secret_file: cannot read secret file" in exc.value.render()


def test_environment_overrides_by_path(write_config: WriteConfig, tmp_path: Path) -> None:
    (tmp_path / "s").write_text("file-secret")
    env = {
        "RECEIVER_WEB__PORT": "9001",
        "REDIS_URL": "redis://10.0.0.1:6380/2",
        "RECEIVER_TENANTS__0__CLIENT_SECRET": "env-secret",
        "RECEIVER_LOGGING__LEVEL": "DEBUG",
        "RECEIVER_CONFIG": "ignored.yaml",
        "UNRELATED": "x",
    }
    settings = load_settings(write_config(base_settings_data()), environ=env)
    assert settings.web.port == 9001
    assert settings.redis.url == "redis://10.0.0.1:6380/2"
    assert settings.logging.level == "DEBUG"
    secret = settings.tenants[0].client_secret
    assert secret is not None and secret.get_secret_value() == "env-secret"


def test_env_file_variant_and_twice(write_config: WriteConfig, tmp_path: Path) -> None:
    (tmp_path / "s").write_text("file-secret")
    path = write_config(base_settings_data())
    env = {"RECEIVER_TENANTS__0__CLIENT_SECRET_FILE": str(tmp_path / "s")}
    # inline in the file and a file from the environment: given twice
    with pytest.raises(ConfigError) as exc:
        load_settings(path, environ=env)
    assert "secret given twice" in exc.value.render()
    data = base_settings_data()
    del data["tenants"][0]["client_secret"]
    settings = load_settings(write_config(data, "b.yaml"), environ=env)
    secret = settings.tenants[0].client_secret
    assert secret is not None and secret.get_secret_value() == "file-secret"


def test_env_errors_name_the_variable(write_config: WriteConfig) -> None:
    env = {"RECEIVER_WEB__PORT": "abc", "RECEIVER_NOPE__X": "1", "RECEIVER_TENANTS__5__NAME": "x"}
    with pytest.raises(ConfigError) as exc:
        load_settings(write_config(base_settings_data()), environ=env)
    text = exc.value.render()
    assert "environment RECEIVER_WEB__PORT: web.port:" in text
    assert "environment RECEIVER_NOPE__X: nope: unknown key" in text
    assert "environment RECEIVER_TENANTS__5__NAME: list index 5 out of range" in text


def test_secret_values_never_in_errors(write_config: WriteConfig) -> None:
    data = base_settings_data()
    data["sinks"] = [{"type": "teams", "name": "t", "url": 12345}]
    data["tenants"][0]["client_secret"] = ["not", "a", "string", CLIENT_SECRET]
    with pytest.raises(ConfigError) as exc:
        load_settings(write_config(data), environ={})
    text = exc.value.render()
    assert "tenants[0].client_secret" in text
    assert CLIENT_SECRET not in text
    assert "12345" not in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [1, 2\n", "invalid YAML"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("tenants:\n\t- x\n", "invalid YAML"),
    ],
)
def test_broken_yaml(write_config: WriteConfig, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(write_config(text), environ={})
    assert expected in exc.value.render()


def test_yaml_error_does_not_echo_the_line(write_config: WriteConfig) -> None:
    path = write_config("tenants:\n  - client_secret: hunter2-secret: [\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path, environ={})
    assert "hunter2" not in exc.value.render()
    assert f"{path}:2" in exc.value.render()


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings("/nonexistent/receiver.yaml", environ={})
    assert "/nonexistent/receiver.yaml: cannot read file" in exc.value.render()


def test_derived_urls(make_settings: object) -> None:
    settings = settings_from_mapping(
        {**base_settings_data(), "web": {"public_url": "https://r.example.com/base/"}}
    )
    assert settings.web.notification_url == "https://r.example.com/base/webhooks/graph"
    assert settings.web.lifecycle_url == "https://r.example.com/base/webhooks/graph/lifecycle"
    assert settings.allowed_tenant_ids == frozenset({TENANT_ID})


def test_legacy_subscription_warned_after_the_retirement_date() -> None:
    data = base_settings_data()
    data["tenants"][0]["subscriptions"] = [
        {"resource": "security/alerts?$filter=status eq 'newAlert'"},
        {"resource": "security/alerts_v2/abc"},
    ]
    settings = settings_from_mapping(data)
    before = settings.warnings(LEGACY_ALERTS_RETIRED - dt.timedelta(seconds=1))
    after = settings.warnings(LEGACY_ALERTS_RETIRED)
    assert before == []
    assert len(after) == 1
    assert after[0].startswith("tenants[0].subscriptions[0].resource: ")
    assert "retired on 2026-10-15" in after[0] and "sends nothing" in after[0]
    # A year on, still warned: the product's clock is passed, not today's date.
    assert settings.warnings(LEGACY_ALERTS_RETIRED + dt.timedelta(days=365)) == after


def test_tenant_with_nothing_to_read_is_warned() -> None:
    data = base_settings_data()
    data["tenants"][0]["poll"] = {"alerts_v2": False, "incidents": False}
    warnings = settings_from_mapping(data).warnings(LEGACY_ALERTS_RETIRED)
    assert warnings == [
        "tenants[0] (contoso): nothing is polled and no subscription is kept: "
        "this tenant's alerts reach no sink"
    ]
