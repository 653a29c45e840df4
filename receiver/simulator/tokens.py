"""The simulator's token signing key: issues Graph access tokens and verifies them.

Access tokens are RS256 JWTs shaped like Entra's v1 app-only tokens for Graph. Verified
tokens are cached by their text, so a Graph request costs a dict lookup and an expiry check.
Expiry uses real time (see clock.py).
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

GRAPH_AUDIENCE = "https://graph.microsoft.com"
GRAPH_AUDIENCES = frozenset(
    {GRAPH_AUDIENCE, f"{GRAPH_AUDIENCE}/", "00000003-0000-0000-c000-000000000000"}
)
ACCESS_TOKEN_LIFETIME_S = 3599
_CACHE_LIMIT = 50_000


class TokenError(Exception):
    """An access token Graph refuses; `message` is Graph's InvalidAuthenticationToken text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Caller:
    """Who a verified token speaks for."""

    tenant_id: str
    app_id: str
    roles: frozenset[str]
    object_id: str
    expires_at: float


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_uint(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def load_or_create_key(path: Path | None) -> rsa.RSAPrivateKey:
    """The RSA signing key from `path` (PEM), made and saved there when missing."""
    if path is not None and path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path}: expected an RSA private key")
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
    return key


class TokenService:
    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._key = key
        self._public = key.public_key()
        der = self._public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = _b64url(hashlib.sha256(der).digest()[:20])
        self._cache: dict[str, Caller] = {}

    def jwks(self) -> dict[str, Any]:
        numbers = self._public.public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "kid": self.kid,
                    "x5t": self.kid,
                    "n": _b64url_uint(numbers.n),
                    "e": _b64url_uint(numbers.e),
                    "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
                }
            ]
        }

    def sign(self, claims: dict[str, Any]) -> str:
        """Any token the simulated Entra issues (ID tokens, user access tokens): RS256 with
        the one key whose kid the JWKS publishes."""
        return jwt.encode(
            claims, self._key, algorithm="RS256", headers={"typ": "JWT", "kid": self.kid}
        )

    def issue(
        self,
        *,
        tenant_id: str,
        app_id: str,
        app_display_name: str,
        object_id: str,
        roles: tuple[str, ...],
        credential: str,
        lifetime_s: int = ACCESS_TOKEN_LIFETIME_S,
        audience: str = GRAPH_AUDIENCE,
        now: float | None = None,
    ) -> str:
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{tenant_id}/",
            "iat": issued,
            "nbf": issued,
            "exp": issued + lifetime_s,
            "aio": _b64url(uuid.uuid4().bytes),
            "app_displayname": app_display_name,
            "appid": app_id,
            "appidacr": "2" if credential == "certificate" else "1",
            "idp": f"https://sts.windows.net/{tenant_id}/",
            "idtyp": "app",
            "oid": object_id,
            "rh": "0.simulator.",
            "sub": object_id,
            "tenant_region_scope": "EU",
            "tid": tenant_id,
            "uti": _b64url(uuid.uuid4().bytes),
            "ver": "1.0",
            "xms_tcdt": issued - 86_400 * 365,
        }
        if roles:  # Entra leaves the claim out when no application permission is consented
            claims["roles"] = list(roles)
        headers = {"typ": "JWT", "kid": self.kid, "x5t": self.kid}
        return jwt.encode(claims, self._key, algorithm="RS256", headers=headers)

    def verify(self, token: str) -> Caller:
        """The caller of a valid Graph token; `TokenError` with Graph's message otherwise."""
        caller = self._cache.get(token)
        if caller is None:
            caller = self._decode(token)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[token] = caller
        if caller.expires_at <= time.time():
            raise TokenError("Access token has expired or is not yet valid.")
        return caller

    def _decode(self, token: str) -> Caller:
        if token.count(".") != 2:
            raise TokenError("IDX14100: JWT is not well formed, there are no dots (.).")
        try:
            claims = jwt.decode(
                token,
                self._public,
                algorithms=["RS256"],
                options={
                    "verify_aud": False,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidSignatureError as exc:
            raise TokenError("Access token validation failure.") from exc
        except jwt.PyJWTError as exc:
            raise TokenError("Access token validation failure.") from exc
        if claims.get("aud") not in GRAPH_AUDIENCES:
            raise TokenError("Access token validation failure. Invalid audience.")
        tenant_id = str(claims.get("tid", ""))
        if claims.get("iss") != f"https://sts.windows.net/{tenant_id}/":
            raise TokenError("Access token validation failure. Invalid issuer.")
        now = time.time()
        if float(claims.get("nbf", 0)) > now + 300:
            raise TokenError("Access token has expired or is not yet valid.")
        roles = claims.get("roles") or []
        return Caller(
            tenant_id=tenant_id,
            app_id=str(claims.get("appid", "")),
            roles=frozenset(str(r) for r in roles),
            object_id=str(claims.get("oid", "")),
            expires_at=float(claims.get("exp", 0)),
        )
