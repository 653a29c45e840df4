"""The authorization code grant of user sign-in, called by the token endpoint: a code is
redeemed once, before it expires, by the client it was issued to, with its redirect URI and
the PKCE verifier of its challenge; the answer carries an ``id_token`` and a delegated access
token (signin.py tells their claims)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from typing import TYPE_CHECKING, Any

from receiver.simulator.entra_http import EntraError, missing_parameter
from receiver.simulator.signin import Code, User, live, state_of

if TYPE_CHECKING:
    from receiver.simulator.core import Simulator
    from receiver.simulator.state import App

ID_TOKEN_LIFETIME_S = 3600
GROUPS_LIMIT = 200  # more groups than this: the overage claim instead (JWT tokens)


def _invalid_grant(code: int, text: str) -> EntraError:
    return EntraError(400, "invalid_grant", code, text)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _pkce_ok(code: Code, verifier: str | None) -> bool:
    if code.challenge is None:
        return True
    if not verifier:
        return False
    expected = (
        _b64url(hashlib.sha256(verifier.encode()).digest()) if code.method == "S256" else verifier
    )
    return hmac.compare_digest(expected.encode(), code.challenge.encode())


def _claim(sim: Simulator, app: App, form: dict[str, str]) -> Code:
    value = form.get("code")
    if not value:
        raise EntraError(400, "invalid_request", 900144, missing_parameter("code"))
    code = state_of(sim).codes.get(value)
    if code is None or not live(sim, code.tenant) or code.client_id != app.client_id:
        raise _invalid_grant(
            9002313,
            "Invalid request. Request is malformed or "
            "invalid. - [The provided value for the 'code' parameter is not "
            "valid.]",
        )
    if code.redeemed:
        raise _invalid_grant(
            54005,
            "OAuth2 Authorization code was already "
            "redeemed, please retry with a new valid code or use an existing "
            "refresh token.",
        )
    if code.expires_at <= time.time():
        raise _invalid_grant(
            70008,
            "The provided authorization code or refresh "
            "token has expired due to inactivity. Send a new interactive "
            "authorization request for this user and resource.",
        )
    code.redeemed = True  # a failed redemption spends the code too, as Entra does
    if form.get("redirect_uri") != code.redirect_uri:
        raise _invalid_grant(
            500112,
            f"The reply address "
            f"'{form.get('redirect_uri')}' does not match the reply address "
            f"'{code.redirect_uri}' provided when requesting Authorization code.",
        )
    if not _pkce_ok(code, form.get("code_verifier")):
        raise _invalid_grant(
            501481,
            "The Code_Verifier does not match the "
            "code_challenge supplied in the authorization request.",
        )
    return code


def _id_claims(code: Code, app: App, base: str, now: int) -> dict[str, Any]:
    user, tid = code.user, code.tenant.tenant_id
    claims: dict[str, Any] = {
        "aud": app.client_id,
        "iss": f"{base}/{tid}/v2.0",
        "iat": now,
        "nbf": now,
        "exp": now + ID_TOKEN_LIFETIME_S,
        "name": user.display_name,
        "oid": user.object_id,
        "preferred_username": user.user_principal_name,
        "rh": "0.simulator.",
        "sub": _b64url(hashlib.sha256(f"{app.client_id}:{user.object_id}".encode()).digest()),
        "tid": tid,
        "uti": _b64url(uuid.uuid4().bytes),
        "ver": "2.0",
    }
    if code.nonce is not None:
        claims["nonce"] = code.nonce
    if len(user.groups) > GROUPS_LIMIT:
        claims["_claim_names"] = {"groups": "src1"}
        claims["_claim_sources"] = {
            "src1": {
                "endpoint": f"https://graph.windows.net/{tid}/users/{user.object_id}"
                "/getMemberObjects"
            }
        }
    else:
        claims["groups"] = list(user.groups)
    return claims


def _access_claims(
    user: User, tid: str, app: App, granted: list[str], subject: str, now: int
) -> dict[str, Any]:
    return {
        "aud": "00000003-0000-0000-c000-000000000000",
        "iss": f"https://sts.windows.net/{tid}/",
        "iat": now,
        "nbf": now,
        "exp": now + 3599,
        "appid": app.client_id,
        "idtyp": "user",
        "name": user.display_name,
        "oid": user.object_id,
        "scp": " ".join(granted),
        "sub": subject,
        "tid": tid,
        "upn": user.user_principal_name,
        "ver": "1.0",
    }


def redeem(sim: Simulator, app: App, form: dict[str, str], base: str) -> dict[str, Any]:
    """The token response for an authorization code; :class:`EntraError` if refused."""
    code = _claim(sim, app, form)
    user, tid = code.user, code.tenant.tenant_id
    now = int(time.time())
    id_claims = _id_claims(code, app, base, now)
    granted = sorted((set(code.scopes) - {"offline_access"}) | {"User.Read"})
    access_claims = _access_claims(user, tid, app, granted, id_claims["sub"], now)
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": " ".join(granted),
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": sim.tokens.sign(access_claims),
        "id_token": sim.tokens.sign(id_claims),
    }
    if "offline_access" in code.scopes:
        body["refresh_token"] = "1.Asim" + secrets.token_urlsafe(64)
    if form.get("client_info") == "1":
        body["client_info"] = _b64url(json.dumps({"uid": user.object_id, "utid": tid}).encode())
    sim.counters["entra.token.user"] += 1
    return body
