"""Rich notifications: Graph's ``validationTokens`` and ``encryptedContent``.

- Each validation token is a JWT Graph signs per app and tenant in the batch. It is verified
  against the Microsoft identity platform's published keys (cached, refetched when an unknown
  key id appears), for audience = the tenant's app id, issuer = that tenant, not expired, and
  issued to Graph's change-notification publisher app.
- ``encryptedContent``: the symmetric key is RSA-OAEP (SHA-1) encrypted with our certificate,
  chosen by ``encryptionCertificateId`` (two at once during a rotation). The HMAC-SHA256 of the
  data is verified with that key *before* anything is decrypted; then AES-256-CBC with
  IV = key[:16] and PKCS7 padding.

Pure functions here except :class:`KeySet`, which fetches keys with httpx.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

log = logging.getLogger(__name__)

# The app id Graph's change notifications are issued by (validation token appid/azp).
GRAPH_PUBLISHER_APP_ID = "0bf30f3b-4a52-48df-9a82-234910c4a086"
DEFAULT_KEYS_URL = "https://login.microsoftonline.com/common/discovery/v2.0/keys"
UNKNOWN_KID_REFETCH_S = 60.0


class RichError(ValueError):
    """A validation token or encrypted content that must not be trusted."""


class ContentError(RichError):
    """Encrypted content that is authentic (its signature holds) but not a UTF-8 JSON object:
    malformed rather than forged, so the item is refused as a bad request (400)."""


class ThrottledWarning:
    """At most one WARNING per ``interval_s`` for one kind of refusal, carrying how many were
    held back since the last one: forged traffic must not flood the log (a batch of 64 junk
    tokens once made 64 lines)."""

    def __init__(
        self, logger: logging.Logger, interval_s: float = 10.0, clock: Any = time.monotonic
    ) -> None:
        self._log = logger
        self.interval_s = interval_s
        self._clock = clock
        self._last = float("-inf")
        self.held = 0

    def warning(self, message: str, *args: Any, **kwargs: Any) -> bool:
        now = self._clock()
        if now - self._last < self.interval_s:
            self.held += 1
            return False
        held, self.held, self._last = self.held, 0, now
        suffix = f" ({held} more like it not logged)" if held else ""
        self._log.warning(message + suffix, *args, **kwargs)
        return True


KEY_FETCH_TIMEOUT_S = 1.0


@dataclass
class KeySet:
    """Signing keys from a JWKS URL, cached; refetched on an unknown key id (rate-limited)."""

    url: str
    client: httpx.AsyncClient
    max_age_s: float = 24 * 3600
    _keys: dict[str, Any] = field(default_factory=dict)
    _fetched_at: float = float("-inf")

    async def get(self, kid: str) -> Any:
        age = time.monotonic() - self._fetched_at
        if (kid not in self._keys and age >= UNKNOWN_KID_REFETCH_S) or age >= self.max_age_s:
            await self._fetch()
        try:
            return self._keys[kid]
        except KeyError:
            raise RichError("validation token signed by an unknown key") from None

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            # Graph gives up on an answer after 3 s: a slow key endpoint may not eat that.
            # Unfetched keys make the tokens fail (the items are ignored, 202) and the next
            # unknown key id refetches after UNKNOWN_KID_REFETCH_S.
            response = await self.client.get(self.url, timeout=KEY_FETCH_TIMEOUT_S)
            response.raise_for_status()
            jwks = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            log.warning("fetching token signing keys failed: %s", type(exc).__name__)
            return
        self._keys = {k.key_id: k.key for k in jwks.keys if k.key_id}


async def verify_validation_token(
    token: str,
    keys: KeySet,
    app_ids: frozenset[str],
    allowed_tenants: frozenset[str],
    leeway_s: float = 300,
) -> tuple[str, str]:
    """Verify one token; returns (tenant id, app id) it vouches for. Raises RichError."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise RichError("validation token is not a JWT") from None
    kid = header.get("kid")
    if not isinstance(kid, str) or header.get("alg") != "RS256":
        raise RichError("validation token has no key id or an unexpected algorithm")
    key = await keys.get(kid)
    try:
        claims = jwt.decode(
            token,
            key=key,
            algorithms=["RS256"],
            audience=list(app_ids),
            leeway=leeway_s,
            options={"require": ["exp", "iat", "aud", "iss"]},
        )
    except jwt.PyJWTError as exc:
        raise RichError(f"validation token rejected: {type(exc).__name__}") from None
    tid = str(claims.get("tid", "")).lower()
    if tid not in allowed_tenants:
        raise RichError("validation token for a tenant that is not configured")
    issuers = {f"https://sts.windows.net/{tid}/", f"https://login.microsoftonline.com/{tid}/v2.0"}
    if str(claims.get("iss", "")).lower() not in issuers:
        raise RichError("validation token from an unexpected issuer")
    publisher = claims.get("azp") or claims.get("appid")
    if publisher != GRAPH_PUBLISHER_APP_ID:
        raise RichError("validation token not issued to Microsoft Graph change notifications")
    return tid, str(claims["aud"]).lower()


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise RichError("encryptedContent field missing or not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RichError("encryptedContent field is not base64") from None


def decrypt_content(
    content: Mapping[str, Any], private_keys: Mapping[str, rsa.RSAPrivateKey]
) -> str:
    """Verify and decrypt one ``encryptedContent``; the decrypted JSON object as text.
    RichError when it is not authentic, ContentError when it is but is not UTF-8 JSON."""
    cert_id = content.get("encryptionCertificateId")
    key = private_keys.get(cert_id) if isinstance(cert_id, str) else None
    if key is None:
        raise RichError("encryptedContent for an unknown encryptionCertificateId")
    data = _b64(content.get("data"))
    signature = _b64(content.get("dataSignature"))
    try:
        sym = key.decrypt(
            _b64(content.get("dataKey")),
            OAEP(
                mgf=MGF1(algorithm=hashes.SHA1()),  # noqa: S303 - Graph's wire format
                algorithm=hashes.SHA1(),  # noqa: S303
                label=None,
            ),
        )
    except ValueError:
        raise RichError("dataKey does not decrypt with that certificate") from None
    if len(sym) != 32:
        raise RichError("dataKey is not a 256-bit key")
    if not hmac.compare_digest(hmac.new(sym, data, sha256).digest(), signature):
        raise RichError("dataSignature does not match: content tampered with or wrong key")
    if not data or len(data) % 16:
        raise RichError("encrypted data is not whole AES blocks")
    decryptor = Cipher(algorithms.AES(sym), modes.CBC(sym[:16])).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise RichError("bad padding in decrypted content") from None
    # json.loads(bytes) would also take UTF-16 and UTF-32; JSON between systems is UTF-8
    # (RFC 8259, 8.1) and the entry stores text, so decode strictly first.
    try:
        text = plain.decode("utf-8")
        document = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ContentError("decrypted content is not UTF-8 JSON") from None
    if not isinstance(document, dict):
        raise ContentError("decrypted content is not a JSON object")
    return text
