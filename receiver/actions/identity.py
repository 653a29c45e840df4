"""Who signed in: the checks of an ID token Entra ID sent (:func:`check_claims`, pure), the
:class:`Identity` they give, and :class:`SignInError`, every refusal of a sign-in (signin.py
runs the flow).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["Identity", "SignInError", "check_claims", "in_allowed_groups"]

CLOCK_SKEW_S = 300
_MAX_DETAIL = 300


class SignInError(Exception):
    """A sign-in that must not give a session. ``reason`` names the refusal page; ``upn`` and
    ``return_to`` (the link) are known when the failure came late enough to tell."""

    def __init__(
        self, reason: str, detail: str = "", *, upn: str = "", return_to: str = ""
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail[:_MAX_DETAIL]
        self.upn = upn
        self.return_to = return_to


@dataclass(frozen=True, slots=True)
class Identity:
    """A signed-in person, as the ID token named them."""

    name: str
    upn: str  # preferred_username
    oid: str
    tid: str
    groups: tuple[str, ...] = ()
    csrf: str = ""
    expires_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Identity:
        data = json.loads(text)
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["groups"] = tuple(values.get("groups") or ())
        return cls(**values)

    @property
    def account(self) -> str:
        """For the audit: which Entra ID object acted (the UPN can be renamed)."""
        return f"{self.name} (oid {self.oid}, tenant {self.tid})"


def _lower(values: Sequence[Any]) -> tuple[str, ...]:
    return tuple(str(v).lower() for v in values)


def in_allowed_groups(groups: Sequence[Any], allowed: Sequence[str]) -> bool:
    """Whether ``groups`` meet the allow-list (any group of it, ignoring case; an empty
    list allows everyone)."""
    wanted = set(_lower(allowed))
    return not wanted or bool(wanted & set(_lower(groups)))


def check_claims(  # noqa: C901 - 11, older than the limit
    claims: Mapping[str, Any],
    *,
    client_id: str,
    tenant_id: str,
    issuer: str,
    allowed_groups: Sequence[str],
    now: float,
) -> Identity:
    """The person an ID token names, if it is for us, current, from the tenant and (with an
    allow-list) in an allowed group; :class:`SignInError` otherwise. Pure."""
    upn = str(claims.get("preferred_username") or claims.get("upn") or "")
    if claims.get("aud") != client_id:
        raise SignInError("signin_failed", "the ID token is for another application", upn=upn)
    tid = str(claims.get("tid") or "").lower()
    if tid != tenant_id.lower():
        raise SignInError("wrong_signin_tenant", f"signed in to tenant {tid or 'unknown'}", upn=upn)
    if claims.get("iss") != issuer:
        raise SignInError("signin_failed", "the ID token has another issuer", upn=upn)
    exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
    if not isinstance(exp, int | float) or exp < now - CLOCK_SKEW_S:
        raise SignInError("signin_failed", "the ID token has expired", upn=upn)
    if isinstance(nbf, int | float) and nbf > now + CLOCK_SKEW_S:
        raise SignInError("signin_failed", "the ID token is not valid yet", upn=upn)
    oid = str(claims.get("oid") or "")
    if not upn or not oid:
        raise SignInError(
            "signin_failed", "the ID token names no user (oid, preferred_username)", upn=upn
        )
    names = claims.get("_claim_names")
    raw_groups = claims.get("groups")
    if allowed_groups:
        if isinstance(names, Mapping) and "groups" in names:
            raise SignInError("groups_overage", upn=upn)
        if not isinstance(raw_groups, list):
            raise SignInError("no_groups_claim", upn=upn)
        if not in_allowed_groups(raw_groups, allowed_groups):
            raise SignInError("not_allowed", f"{upn} is in none of the allowed groups", upn=upn)
    groups = _lower(raw_groups) if isinstance(raw_groups, list) else ()
    return Identity(name=str(claims.get("name") or upn), upn=upn, oid=oid, tid=tid, groups=groups)
