"""The triage sections (``actions``): signed action links, sign-in with Entra ID before an
action, and the Slack app's interactivity endpoint."""

from __future__ import annotations

import re
import typing
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from receiver.config.tenants import TenantSettings, find_tenant_in
from receiver.config.types import Guid, HttpUrl, Model, Secret, as_guid, repeated

ActionName = Literal["take", "resolve_true_positive", "resolve_false_positive"]
ACTION_NAMES: tuple[ActionName, ...] = typing.get_args(ActionName)
# A URL path the web role serves under (actions.path, actions.slack.path).
_PATH = r"^/[A-Za-z0-9_\-/]*[A-Za-z0-9_\-]$"


class SigningKey(Model):
    """One HMAC key for action links. The first of the list signs; every one verifies, so a
    key is rotated by putting the new one first and dropping the old one after the link TTL."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,32}$")
    key: Secret

    @field_validator("key")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < 32:
            raise ValueError(
                "must be at least 32 bytes (e.g. the output of `openssl rand -base64 48`)"
            )
        return value


class SignInSettings(Model):
    """Sign-in with Entra ID before a triage action (OIDC authorization code flow, MSAL).
    Entra redirects back to ``{base_url}{path}/signin/callback``: register that URL (type
    Web) on the app registration ``client_id``, and add a groups claim to its tokens when
    ``allowed_groups`` is set."""

    enabled: bool = False
    # The tenant people sign in to: a configured tenant's name or tenant_id, or any tenant
    # GUID. Unset: the only configured tenant.
    tenant: str | None = None
    client_id: Guid | None = None
    client_secret: Secret | None = None
    # Group object ids; a person must be in one of them. Empty: anyone of the tenant.
    allowed_groups: list[Guid] = Field(default_factory=list, max_length=100)
    session_ttl_s: int = Field(8 * 3600, ge=60, le=7 * 86_400)

    @model_validator(mode="after")
    def _complete(self) -> SignInSettings:
        if self.enabled:
            missing = [k for k in ("client_id", "client_secret") if getattr(self, k) is None]
            if missing:
                raise ValueError(
                    f"enabled sign-in needs {' and '.join(missing)} (the secret "
                    "as client_secret, client_secret_file or client_secret_env)"
                )
        return self

    def tenant_id_in(self, tenants: list[TenantSettings]) -> str | None:
        """The tenant id people sign in to, or None when ``tenant`` names none."""
        if self.tenant is None:
            return tenants[0].tenant_id if len(tenants) == 1 else None
        found = find_tenant_in(tenants, self.tenant)
        if found is not None:
            return found.tenant_id
        try:
            return as_guid(self.tenant)
        except ValueError:
            return None


class SlackInteractivitySettings(Model):
    """The Slack app's buttons (Take it, Resolve: ...): Slack posts each click to
    ``{base_url}{path}`` (the app's Interactivity Request URL), signed with the app's signing
    secret. The web role verifies and queues the click; a worker acts on it in Graph."""

    enabled: bool = False
    path: str = Field("/slack/interactivity", pattern=_PATH)
    # The app's Signing Secret (Basic Information page); signing_secret_file / _env.
    signing_secret: Secret | None = None
    # Slack user id -> the UPN Graph gets as assignedTo (else the Slack name is used).
    users: dict[str, str] = Field(default_factory=dict, max_length=10_000)
    # Only the users listed in ``users`` may act; others are told they are not allowed.
    only_listed_users: bool = False
    # Where ephemeral refusals may be posted: Slack's response_url must start with this.
    response_url_prefix: str = "https://hooks.slack.com/"
    # How far Slack's request timestamp may be from our clock (Slack's advice: 5 minutes).
    max_skew_s: int = Field(300, ge=1, le=3600)

    @model_validator(mode="after")
    def _complete(self) -> SlackInteractivitySettings:
        if self.enabled and self.signing_secret is None:
            raise ValueError(
                "enabled Slack interactivity needs signing_secret (or "
                "signing_secret_file / signing_secret_env)"
            )
        for user in self.users:
            if not re.fullmatch(r"[UW][A-Z0-9]{2,20}", user):
                raise ValueError(f"users: {user!r} is not a Slack user id (U... or W...)")
        return self


class ActionsSettings(Model):
    """Triage links in messages ("Take it", "Resolve: true positive", ...), served by the web
    role under ``path`` at ``base_url`` (default: web.public_url)."""

    enabled: bool = False
    base_url: HttpUrl | None = None
    path: str = Field("/actions", pattern=_PATH)
    signing_keys: list[SigningKey] = Field(default_factory=list, max_length=8)
    link_ttl_s: int = Field(7 * 86_400, ge=60, le=90 * 86_400)
    actions: list[ActionName] = Field(
        default_factory=lambda: list(ACTION_NAMES),
        min_length=1,
    )
    sign_in: SignInSettings = Field(default_factory=SignInSettings)
    # Slack app buttons, served beside the links (needs no signing_keys of its own).
    slack: SlackInteractivitySettings = Field(default_factory=SlackInteractivitySettings)

    @model_validator(mode="after")
    def _keys(self) -> ActionsSettings:
        if self.enabled and not self.signing_keys:
            raise ValueError("enabled actions need signing_keys (id and key, key_file or key_env)")
        if repeated(k.id for k in self.signing_keys):
            raise ValueError("signing key ids must be unique")
        return self
