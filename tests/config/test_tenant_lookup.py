"""The one tenant lookup (Settings.find_tenant): every command, sink and stage that names a
tenant goes through it, so `--tenant`, a sink's `tenant:` and the sign-in tenant read alike."""

from __future__ import annotations

import pytest

from receiver.config.settings import Settings
from tests.fixtures.settings import CLIENT_ID, CLIENT_SECRET, TENANT_ID, MakeSettings

OTHER = "33333333-3333-4333-8333-333333333333"


@pytest.fixture
def settings(make_settings: MakeSettings) -> Settings:
    second = {
        "name": "fabrikam-eu",
        "tenant_id": OTHER.upper(),
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    first = {
        "name": "contoso",
        "tenant_id": TENANT_ID,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    return make_settings(tenants=[first, second])


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("contoso", "contoso"),
        ("Contoso", "contoso"),  # names are lowercase in the settings: case folds to one
        ("  fabrikam-eu ", "fabrikam-eu"),
        (TENANT_ID, "contoso"),
        (TENANT_ID.upper(), "contoso"),  # a GUID in any case
        (OTHER, "fabrikam-eu"),  # configured in upper case, stored canonical
        ("{" + OTHER.upper() + "}", "fabrikam-eu"),
        (OTHER.replace("-", ""), "fabrikam-eu"),
        (f"urn:uuid:{TENANT_ID}", "contoso"),
    ],
)
def test_a_tenant_is_found_by_name_or_id(settings: Settings, given: str, expected: str) -> None:
    found = settings.find_tenant(given)
    assert found is not None and found.name == expected


@pytest.mark.parametrize(
    "given",
    [
        "",
        "nobody",
        "contoso2",
        "con",
        "99999999-9999-4999-8999-999999999999",
        TENANT_ID[:-1],
        "contoso fabrikam-eu",
    ],
)
def test_anything_else_is_no_tenant(settings: Settings, given: str) -> None:
    assert settings.find_tenant(given) is None


def test_tenant_by_id_any_case(settings: Settings) -> None:
    first = settings.tenant(TENANT_ID)
    assert first is not None and first.name == "contoso"
    upper = settings.tenant(OTHER.upper())
    assert upper is not None and upper.name == "fabrikam-eu"
    assert settings.tenant("contoso") is None  # by id only: a name is not an id
    assert settings.tenant("") is None


def test_sign_in_tenant_uses_the_same_rule(settings: Settings) -> None:
    sign_in = settings.actions.sign_in.model_copy(update={"tenant": "Fabrikam-EU"})
    assert sign_in.tenant_id_in(list(settings.tenants)) == OTHER
