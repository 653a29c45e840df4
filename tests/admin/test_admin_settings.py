"""The admin section of the settings and starting the admin server."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from receiver.admin.server import start_admin
from receiver.config.files import ConfigError
from receiver.config.loader import load_settings
from tests.fixtures.settings import MakeSettings, WriteConfig, base_settings_data

TOKEN = "a-long-enough-admin-token-42"


def test_off_by_default(make_settings: MakeSettings) -> None:
    settings = make_settings()
    assert settings.admin.port == 0 and settings.admin.token is None
    assert start_admin(settings) is None


def test_non_loopback_host_needs_a_token(write_config: WriteConfig) -> None:
    data = base_settings_data()
    data["admin"] = {"host": "0.0.0.0", "port": 9109}
    path = write_config(data)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    text = caught.value.render()
    assert str(path) in text and "admin" in text
    assert "reachable from other machines: set token" in text
    for host in ("127.0.0.1", "::1", "localhost"):
        data["admin"]["host"] = host
        assert load_settings(write_config(data)).admin.host == host


def test_token_from_file_env_or_inline(write_config: WriteConfig, tmp_path: Path) -> None:
    (tmp_path / "admin-token").write_text(TOKEN + "\n")
    data = base_settings_data()
    data["admin"] = {"host": "0.0.0.0", "port": 9109, "token_file": "admin-token"}
    settings = load_settings(write_config(data))
    assert settings.admin.token is not None
    assert settings.admin.token.get_secret_value() == TOKEN
    data["admin"] = {"host": "0.0.0.0", "port": 9109, "token_env": "ADMIN_TOKEN"}
    settings = load_settings(write_config(data), environ={"ADMIN_TOKEN": TOKEN})
    assert settings.admin.token is not None
    assert settings.admin.token.get_secret_value() == TOKEN
    # Overridable from the environment like every key.
    settings = load_settings(
        write_config(base_settings_data()), environ={"RECEIVER_ADMIN__PORT": "9109"}
    )
    assert settings.admin.port == 9109


def test_short_token_refused_without_echo(write_config: WriteConfig) -> None:
    data = base_settings_data()
    data["admin"] = {"port": 9109, "token": "short-secret"}
    with pytest.raises(ConfigError) as caught:
        load_settings(write_config(data))
    text = caught.value.render()
    assert "at least 16 characters" in text and "short-secret" not in text


def test_port_in_use_is_a_clear_error(make_settings: MakeSettings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = make_settings(admin={"port": port})
        with pytest.raises(ValueError, match=f"admin.port {port} on 127.0.0.1: "):
            start_admin(settings)
