from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from receiver import __version__
from receiver.cli import main
from receiver.cli.common import pick_tenant
from tests.fixtures.settings import (
    CLIENT_SECRET,
    TENANT_ID,
    MakeSettings,
    WriteConfig,
    base_settings_data,
)

REPO = Path(__file__).resolve().parents[2]
FABRIKAM = "8e0c6a4f-3b2d-4c1e-9f7a-5d6b4c3a2e1f"
SUBCOMMANDS = [
    "serve",
    "web",
    "worker",
    "scheduler",
    "simulator",
    "demo",
    "subscriptions",
    "dlq",
    "route",
    "config",
    "version",
]


def test_help_lists_every_subcommand() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "receiver.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in SUBCOMMANDS:
        assert f"    {name} " in out or f"    {name}\n" in out, name


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_console_script_installed() -> None:
    exe = Path(sys.executable).parent / "receiver"
    out = subprocess.run([str(exe), "version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("receiver ")


def test_config_check_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(REPO / "config" / "receiver.example.yaml")]) == 0
    assert "OK" in capsys.readouterr().out


def test_config_check_reports_each_problem(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    data = base_settings_data()
    tenant = data["tenants"][0]
    del tenant["tenant_id"]  # missing tenant id
    tenant["client_secret_file"] = "/etc/hostname"  # secret given twice (inline too)
    data["web"]["public_url"] = "ftp://nowhere"  # bad URL
    data["unknown_section"] = {"a": 1}  # unknown key
    path = write_config(data)
    assert main(["config", "check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "tenants[0].tenant_id: required key is missing" in err
    assert "web.public_url: must be a URL with scheme https or http" in err
    assert "unknown_section: unknown key" in err
    assert "tenants[0].client_secret_file: secret given twice" in err
    assert "4 problems" in err
    assert CLIENT_SECRET not in err
    assert str(path) in err


def test_config_check_validates_the_routes_file(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    write_config("route:\n  receiver: nowhere\n", "routes.yaml")
    data = base_settings_data()
    data["routes_file"] = "routes.yaml"
    assert main(["config", "check", str(write_config(data))]) == 1
    assert "route.receiver: unknown sink 'nowhere'" in capsys.readouterr().err


def test_config_check_uses_receiver_config_env(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECEIVER_CONFIG", str(write_config(base_settings_data())))
    assert main(["config", "check"]) == 0
    monkeypatch.delenv("RECEIVER_CONFIG")
    assert main(["config", "check"]) == 2


@pytest.mark.parametrize("name", ["serve", "worker", "scheduler", "web"])
def test_roles_need_a_config(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECEIVER_CONFIG", raising=False)
    assert main([name]) == 1
    assert "--config FILE or RECEIVER_CONFIG" in capsys.readouterr().err


def test_worker_refuses_settings_without_routes(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", "--config", str(write_config(base_settings_data()))]) == 1
    assert "routes file" in capsys.readouterr().err


def test_pick_tenant_reads_names_and_ids_in_any_case(make_settings: MakeSettings) -> None:
    """Every command's tenant argument: Settings.find_tenant's rule (an id as a GUID in any
    case or form, a name in any case), the only tenant when none is named, else why not."""
    fabrikam = {**base_settings_data()["tenants"][0], "name": "fabrikam", "tenant_id": FABRIKAM}
    settings = make_settings(tenants=[base_settings_data()["tenants"][0], fabrikam])
    for name in ("CONTOSO", "contoso", f" {TENANT_ID} "):
        assert pick_tenant(settings, name) == settings.tenants[0], name
    for name in ("Fabrikam", FABRIKAM.upper(), "{" + FABRIKAM.upper() + "}"):
        assert pick_tenant(settings, name) == settings.tenants[1], name
    assert pick_tenant(settings, "northwind") == (
        "no tenant 'northwind' in the settings (configured: contoso, fabrikam)"
    )
    assert pick_tenant(settings, None) == (
        "name the tenant with --tenant (configured: contoso, fabrikam)"
    )
    assert pick_tenant(make_settings(), None) == make_settings().tenants[0]


def test_the_asyncio_roles_run_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve, worker and scheduler run their coroutine on uvloop's event loop (as the web
    role's uvicorn does), after the common start-up."""
    import asyncio
    import types

    import uvloop

    from receiver.cli import roles

    def start(args: object, run: Callable[[object], int]) -> int:
        return run(object())  # the settings, as the start-up would pass them

    loops: list[type] = []

    async def role(settings: object) -> int:
        loops.append(type(asyncio.get_running_loop()))
        return 7

    monkeypatch.setattr(roles, "_start", start)
    assert roles._run_async(types.SimpleNamespace(), role) == 7
    assert loops == [uvloop.Loop]
