"""Seed files and the CLI's configuration."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from receiver.simulator import cli
from receiver.simulator.seed import SeedError, load_seed
from receiver.simulator.tls import ensure_tls, make_client_certificate


def test_yaml_seed(tmp_path: Path) -> None:
    cert = make_client_certificate()
    (tmp_path / "app.pem").write_text(cert.certificate_pem)
    seed = tmp_path / "seed.yaml"
    seed.write_text(
        "tenants:\n"
        "  - tenantId: 11111111-2222-3333-4444-555555555555\n"
        "    displayName: Fabrikam\n"
        "    apps:\n"
        "      - clientId: 66666666-7777-8888-9999-000000000000\n"
        "        secret: s\n"
        "        certificatePath: app.pem\n"
        "        roles: [SecurityAlert.Read.All]\n"
    )
    (tenant,) = load_seed(seed)
    assert tenant.display_name == "Fabrikam"
    assert tenant.apps[0].roles == ("SecurityAlert.Read.All",)
    assert tenant.apps[0].certificate_pem == cert.certificate_pem


def test_bad_seed(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text('{"tenants": [{"apps": [{"clientId": "x"}]}]}')
    with pytest.raises(SeedError, match="give a secret"):
        load_seed(seed)


def test_cli_arguments_build_config(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        ["--allow-http", "--no-throttle", "--handshake-timeout", "2", "--control-token", "t"]
    )
    config = cli.build_config(args, tmp_path)
    assert config.allow_http and not config.throttle
    assert config.handshake_timeout_s == 2.0
    assert config.control_token == "t"
    assert config.tenants is None  # the demo tenant


def test_tls_dir_is_reused(tmp_path: Path) -> None:
    first = ensure_tls(tmp_path)
    ca = first.ca_path.read_bytes()
    second = ensure_tls(tmp_path)
    assert second.ca_path.read_bytes() == ca


def test_control_token_is_required(make_simulator) -> None:  # type: ignore[no-untyped-def]
    sim = make_simulator(control_token="let-me-in")
    assert sim.control.tenants()  # the fixture's client sends the token
    with sim.http_client() as client:
        assert client.get(f"{sim.base_url}/_sim/tenants").status_code == 401
