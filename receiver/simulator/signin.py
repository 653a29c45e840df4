"""Entra ID user sign-in: who the users are, who sits at the browser, the codes handed out.

There is no browser in a test, so nobody types a password: the test defines users (with
their groups) through the control API (signin_control.py), says who sits at the browser
(``POST /_sim/signin``), and ``GET /{tenant}/oauth2/v2.0/authorize`` (signin_authorize.py)
signs that person in at once and redirects (302) to ``redirect_uri?code=...&state=...``, as
Entra does for a user who already has a session. A ``login_hint`` naming a user of the tenant
picks that user instead.

Wire format as Entra's v2 endpoints: query parameters ``client_id``, ``response_type=code``,
``redirect_uri`` (must be registered on the app: ``POST /_sim/tenants/{t}/apps/{c}/redirect-
uris``), ``scope``, ``state``, ``nonce``, ``code_challenge`` + ``code_challenge_method``
(PKCE, ``S256`` or ``plain``), ``response_mode=query``. Errors Entra shows on its own page
(unknown tenant or app, unregistered redirect URI, a user of another tenant) are an HTML page
here too, never a redirect; the others go back to the redirect URI as ``error`` and
``error_description`` (AADSTS text) with the state.

A code works once, for 10 minutes, for the client it was issued to, with the same
redirect URI and the PKCE verifier of its challenge (signin_grant.py). The token response
carries an RS256 ``id_token`` signed with the simulator's key (``kid`` in the JWKS): ``aud``
the client id, ``iss`` ``https://HOST/{tid}/v2.0``, ``tid``, ``oid``, ``sub``, ``name``,
``preferred_username``, ``nonce``, ``groups`` (over 200 groups: the overage claims
``_claim_names``/``_claim_sources`` instead, as Entra does in JWTs), ``iat``/``nbf``/``exp``.
The code is not bound to the tenant of the token endpoint that redeems it (Microsoft does not
document either way): a relying party must check ``tid`` and ``iss`` itself.

State lives beside the simulator object and is dropped with the tenants on ``/_sim/reset``
(an entry whose tenant object is gone counts as gone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from receiver.simulator.core import Simulator
    from receiver.simulator.state import Tenant

CODE_LIFETIME_S = 600  # Entra: "authorization codes ... expire after about 10 minutes"


@dataclass
class User:
    tenant: Tenant
    object_id: str
    user_principal_name: str
    display_name: str
    groups: tuple[str, ...]

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.object_id,
            "userPrincipalName": self.user_principal_name,
            "displayName": self.display_name,
            "groups": list(self.groups),
            "tenantId": self.tenant.tenant_id,
        }


@dataclass
class TenantUsers:
    tenant: Tenant
    users: dict[str, User] = field(default_factory=dict)  # by lower-case UPN
    redirect_uris: dict[str, list[str]] = field(default_factory=dict)  # by client id


@dataclass
class Code:
    """An authorization code handed out by the authorize endpoint."""

    tenant: Tenant
    user: User
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    nonce: str | None
    challenge: str | None
    method: str
    expires_at: float
    redeemed: bool = False


@dataclass
class SignInState:
    tenants: dict[str, TenantUsers] = field(default_factory=dict)
    browser: User | None = None  # who sits at the browser
    decline: bool = False  # that person declines consent (access_denied)
    codes: dict[str, Code] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)


def state_of(sim: Simulator) -> SignInState:
    found = vars(sim).get("_signin")
    if isinstance(found, SignInState):
        return found
    created = SignInState()
    vars(sim)["_signin"] = created
    return created


def live(sim: Simulator, tenant: Tenant) -> bool:
    """Whether `tenant` is still the simulator's (not dropped by a reset)."""
    return sim.directory.find(tenant.tenant_id) is tenant


def tenant_users(sim: Simulator, tenant: Tenant) -> TenantUsers:
    state = state_of(sim)
    entry = state.tenants.get(tenant.tenant_id)
    if entry is None or entry.tenant is not tenant:
        entry = state.tenants[tenant.tenant_id] = TenantUsers(tenant)
    return entry


def browser(sim: Simulator) -> User | None:
    """Who sits at the browser, unless their tenant is gone."""
    user = state_of(sim).browser
    return user if user is not None and live(sim, user.tenant) else None
