"""Action links: signed, expiring, single-use capabilities to triage one alert.

A link is ``{base_url}{path}/{token}``; the token is a JWT (HS256, PyJWT) whose header names
the signing key (``kid``) and whose claims bind it to one alert, one tenant, one action:
``aid`` alert id, ``tid`` tenant id, ``src`` alerts_v1 | alerts_v2, ``act`` the action,
``iat``/``exp``, ``jti`` a random nonce. A JWT rather than a home-made format because PyJWT
already verifies HMACs in constant time, checks expiry and is a dependency for Graph's
validation tokens; ``kid`` gives key rotation for free (the first key signs, every key
verifies). Single use is not the token's business: the action endpoint marks the nonce used
in Redis before it acts.

Everything here is pure (no I/O): tokens in, claims or a :class:`LinkError` out.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from receiver.actions.rules import ACTIONS, SOURCES, Action, offered
from receiver.config.settings import ActionsSettings, Settings
from receiver.envelope import Envelope

__all__ = ["ACTIONS", "Action", "ActionLinks", "LinkClaim", "LinkError", "LinkSigner", "offered"]

ALGORITHM = "HS256"
TOKEN_TYPE = "alert-action"  # noqa: S105 - the JWT typ header, not a secret
MAX_TOKEN_CHARS = 2048
# The sinks whose messages show the links (tickets and pages carry no buttons).
LINK_SINK_TYPES = frozenset({"teams", "slack", "email"})
_NONCE = re.compile(r"^[A-Za-z0-9_\-]{16,64}$")
_CLAIMS = ("aid", "tid", "src", "act", "exp", "iat", "jti")


class LinkError(Exception):
    """A token that must not be acted on. ``reason``: ``invalid`` (tampered, malformed, signed
    with an unknown key) or ``expired`` (genuine, but too old)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LinkClaim:
    """What a verified token says."""

    alert_id: str
    tenant_id: str
    source_api: str
    action: str
    issued_at: int
    expires_at: int
    nonce: str
    key_id: str


class LinkSigner:
    """Signs with the first key, verifies with any. ``clock`` (epoch seconds) is for tests."""

    def __init__(
        self,
        keys: Sequence[tuple[str, bytes]],
        ttl_s: int,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys:
            raise ValueError("a link signer needs at least one key")
        self._keys = dict(keys)
        self._signing_id, self._signing_key = keys[0]
        self.ttl_s = ttl_s
        self._clock = clock

    @classmethod
    def from_settings(cls, actions: ActionsSettings) -> LinkSigner:
        return cls(
            [(k.id, k.key.get_secret_value().encode()) for k in actions.signing_keys],
            actions.link_ttl_s,
        )

    def sign(self, alert_id: str, tenant_id: str, source_api: str, action: str) -> str:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        if source_api not in SOURCES:
            raise ValueError(f"no actions for {source_api!r}")
        now = int(self._clock())
        claims = {
            "aid": alert_id,
            "tid": tenant_id,
            "src": source_api,
            "act": action,
            "iat": now,
            "exp": now + self.ttl_s,
            "jti": secrets.token_urlsafe(16),
        }
        return jwt.encode(
            claims,
            self._signing_key,
            algorithm=ALGORITHM,
            headers={"kid": self._signing_id, "typ": TOKEN_TYPE},
        )

    def verify(self, token: str) -> LinkClaim:
        """The claims of a genuine, unexpired token; LinkError otherwise."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise LinkError("invalid", "malformed link")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise LinkError("invalid", "malformed link") from None
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None or header.get("typ") != TOKEN_TYPE:
            raise LinkError("invalid", "link signed with an unknown key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[ALGORITHM], leeway=0, options={"require": list(_CLAIMS)}
            )
        except jwt.ExpiredSignatureError:
            raise LinkError("expired", "link expired") from None
        except jwt.InvalidTokenError:
            raise LinkError("invalid", "bad signature or claims") from None
        strings = ("aid", "tid", "src", "act", "jti")
        if not all(isinstance(claims[c], str) and claims[c] for c in strings) or not all(
            isinstance(claims[c], int) for c in ("iat", "exp")
        ):
            raise LinkError("invalid", "bad claim types")
        if (
            claims["act"] not in ACTIONS
            or claims["src"] not in SOURCES
            or not _NONCE.match(claims["jti"])
        ):
            raise LinkError("invalid", "bad claim values")
        return LinkClaim(
            alert_id=claims["aid"],
            tenant_id=claims["tid"],
            source_api=claims["src"],
            action=claims["act"],
            issued_at=claims["iat"],
            expires_at=claims["exp"],
            nonce=claims["jti"],
            key_id=kid,  # type: ignore[arg-type]
        )


class ActionLinks:
    """The links a message about an alert carries: (label, url) pairs."""

    def __init__(
        self, signer: LinkSigner, base_url: str, path: str, allowed: Sequence[str]
    ) -> None:
        self.signer = signer
        self.prefix = base_url.rstrip("/") + path
        self.allowed = tuple(allowed)

    @classmethod
    def from_settings(cls, settings: Settings) -> ActionLinks:
        actions = settings.actions
        return cls(
            LinkSigner.from_settings(actions),
            actions.base_url or settings.web.public_url,
            actions.path,
            actions.actions,
        )

    def url(self, token: str) -> str:
        return f"{self.prefix}/{token}"

    def for_alert(self, envelope: Envelope) -> tuple[tuple[str, str], ...]:
        return tuple(
            (
                ACTIONS[name].label,
                self.url(
                    self.signer.sign(envelope.id, envelope.tenant_id, envelope.source_api, name)
                ),
            )
            for name in offered(envelope, self.allowed)
        )
