"""`receiver securescore show` and `receiver controls update` against the simulator: the trend
table, the top actions, a control's state set and read back, Graph's refusals shown as given."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from receiver.cli import main
from tests.fixtures.settings import WriteConfig, base_settings_data
from tests.fixtures.simulator import SimulatorHandle
from tests.graph.helpers import tenant_entry


def _config(write_config: WriteConfig, sim: SimulatorHandle, **tenant: Any) -> str:
    data = base_settings_data()
    # These commands talk to Graph only: a Redis nobody listens on proves it.
    data["redis"]["url"] = "redis://127.0.0.1:1/0"
    data["graph"] = {
        "authority_host": sim.base_url,
        "graph_url": sim.graph_url,
        "ca_bundle": str(sim.ca_path),
        "max_retries": 0,
    }
    entry = tenant_entry(sim.tenant, "contoso")
    entry.update(tenant)
    data["tenants"] = [entry]
    return str(write_config(data))


@pytest.fixture
def seeded(simulator: SimulatorHandle) -> SimulatorHandle:
    simulator.control.seed_secure_scores(simulator.tenant.tenant_id, 30, 10, 15.0)
    return simulator


def _today(sim: SimulatorHandle) -> dt.date:
    return dt.date.fromisoformat(str(sim.control.clock()["now"])[:10])


def test_show_prints_the_trend_and_the_top_actions(
    seeded: SimulatorHandle, write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(write_config, seeded)
    assert main(["securescore", "show", "contoso", "--config", config, "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    today = _today(seeded)
    assert lines[0].startswith(f"Secure Score of contoso on {today}: ")
    assert " of 350 (" in lines[0] and "over 30 days" in lines[0]
    assert lines[2].split() == ["DATE", "SCORE", "MAX", "%", "CHANGE"]
    rows = [line.split() for line in lines[3:33]]
    assert [r[0] for r in rows] == [
        (today - dt.timedelta(days=29 - i)).isoformat() for i in range(30)
    ]
    assert len(rows[0]) == 4  # the first day has no change
    changes = {r[0]: float(r[4]) for r in rows[1:]}
    drop_day = (today - dt.timedelta(days=10)).isoformat()
    assert changes[drop_day] <= -13
    assert all(-1.1 <= c <= 2.1 for d, c in changes.items() if d != drop_day)
    assert lines[34] == "Top improvement actions (points to gain):"
    assert lines[35].split()[:4] == ["#", "GAIN", "CONTROL", "SERVICE"]
    first = lines[36].split()
    assert first[:4] == ["1", "+10", "AdminMFAV2", "AzureAD"]
    assert lines[36].endswith(
        "Ensure multifactor authentication is enabled for all users in administrative roles"
    )
    assert len(lines) == 39  # three actions

    assert (
        main(["securescore", "show", seeded.tenant.tenant_id, "--days", "7", "--config", config])
        == 0
    )
    out = capsys.readouterr().out
    assert "over 7 days" in out and out.count(f"\n{today.year}-") == 7


def test_update_sets_the_state_and_show_leaves_the_control_out(
    seeded: SimulatorHandle, write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(write_config, seeded)
    assert (
        main(
            [
                "controls",
                "update",
                "AdminMFAV2",
                "--state",
                "thirdParty",
                "--comment",
                "covered by the third-party MFA",
                "--assigned-to",
                "ciso@contoso.com",
                "--config",
                config,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "contoso: control AdminMFAV2 (Ensure multifactor authentication is "
        "enabled for all users in administrative roles)"
    )
    assert out[1].split() == ["state", "ThirdParty"]
    assert out[2] == "  comment     covered by the third-party MFA"
    assert out[3].split() == ["assigned", "to", "ciso@contoso.com"]
    assert out[4].startswith("  updated by  ") and " at 20" in out[4]
    with seeded.graph() as graph:
        profile = graph.get("/security/secureScoreControlProfiles/AdminMFAV2").json()
    assert profile["controlStateUpdates"][-1]["state"] == "ThirdParty"

    assert main(["securescore", "show", "contoso", "--config", config]) == 0
    shown = capsys.readouterr().out
    assert "AdminMFAV2" not in shown and "MFARegistrationV2" in shown

    assert (
        main(
            [
                "controls",
                "update",
                "AdminMFAV2",
                "--state",
                "DEFAULT",
                "--comment",
                "back on the list",
                "--config",
                config,
            ]
        )
        == 0
    )
    assert "state       Default" in capsys.readouterr().out


def test_refused_updates_show_graphs_answer(
    make_simulator: Callable[..., SimulatorHandle],
    write_config: WriteConfig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # An app that may read Secure Score but not change it.
    sim = make_simulator(roles=("SecurityEvents.Read.All",))
    config = _config(write_config, sim)
    assert (
        main(
            [
                "controls",
                "update",
                "AdminMFAV2",
                "--state",
                "ignored",
                "--comment",
                "risk accepted",
                "--config",
                config,
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith(
        "receiver controls update: Graph 403 Forbidden: Missing application roles"
    )
    assert "PATCH security/secureScoreControlProfiles/AdminMFAV2" in err
    assert "request-id" in err and sim.tenant.app.secret not in err
    with sim.graph() as graph:
        profile = graph.get("/security/secureScoreControlProfiles/AdminMFAV2").json()
    assert profile["controlStateUpdates"] == []

    assert (
        main(
            [
                "controls",
                "update",
                "NoSuchControl",
                "--state",
                "reviewed",
                "--comment",
                "x",
                "--config",
                config,
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert (
        "Graph 404 NotFound: secureScoreControlProfile with id 'NoSuchControl' was not "
        "found." in err
    )


def test_show_names_the_tenant_in_any_case(
    seeded: SimulatorHandle, write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tenant by name or id in any case (Settings.find_tenant), as every command reads it."""
    config = _config(write_config, seeded)
    for name in ("CONTOSO", seeded.tenant.tenant_id.upper()):
        assert main(["securescore", "show", name, "--config", config, "--top", "0"]) == 0
        assert capsys.readouterr().out.startswith("Secure Score of contoso on ")


def test_bad_arguments_and_tenants(
    simulator: SimulatorHandle,
    write_config: WriteConfig,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    config = _config(write_config, simulator)
    assert main(["securescore", "show", "nope", "--config", config]) == 1
    assert (
        "receiver securescore show: no tenant 'nope' in the settings (configured: contoso)"
        in capsys.readouterr().err
    )
    with pytest.raises(SystemExit) as usage:
        main(
            [
                "controls",
                "update",
                "AdminMFAV2",
                "--state",
                "fixed",
                "--comment",
                "x",
                "--config",
                config,
            ]
        )
    assert usage.value.code == 2
    assert "invalid choice: 'fixed'" in capsys.readouterr().err
    wrong = _config(write_config, simulator, client_secret="wrong-secret-for-the-test")
    assert main(["securescore", "show", "contoso", "--config", wrong]) == 1
    err = capsys.readouterr().err
    assert "AADSTS7000215" in err and "wrong-secret-for-the-test" not in err
