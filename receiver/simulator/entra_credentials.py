"""How the token endpoint knows the client: a client secret (in the body or HTTP Basic) or a
certificate-signed client assertion (RS256 with `x5t`, or PS256 with `x5t#S256`), each
refused with Entra's AADSTS code and text when it does not hold."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import time
from typing import TYPE_CHECKING, Any

import jwt
from starlette.requests import Request

from receiver.simulator.entra_http import EntraError, missing_parameter

if TYPE_CHECKING:
    from receiver.simulator.state import App, RegisteredCertificate

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_DOCS = (
    "Review the documentation at "
    "https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
)
CLOCK_SKEW_S = 300


def _invalid_client(code: int, text: str) -> EntraError:
    return EntraError(401, "invalid_client", code, text)


def client_auth(request: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
    """client_id and client_secret from the body, or from HTTP Basic (client_secret_basic)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:]).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        user, _, password = decoded.partition(":")
        return form.get("client_id") or user or None, password or None
    return form.get("client_id"), form.get("client_secret")


def authenticate(
    app: App, form: dict[str, str], secret: str | None, token_endpoints: set[str], now: dt.datetime
) -> str:
    """Check the client's credential; which one it was (`certificate` or `secret`)."""
    assertion = form.get("client_assertion")
    if assertion:
        if form.get("client_assertion_type") != JWT_BEARER:
            raise EntraError(
                400, "invalid_request", 900144, missing_parameter("client_assertion_type")
            )
        check_assertion(app, assertion, token_endpoints, now)
        return "certificate"
    if secret:
        check_secret(app, secret, now)
        return "secret"
    raise _invalid_client(
        7000218,
        "The request body must contain the following parameter: "
        "'client_assertion' or 'client_secret'.",
    )


def check_secret(app: App, secret: str, now: dt.datetime) -> None:
    if not any(hmac.compare_digest(secret.encode(), s.encode()) for s in app.secrets):
        raise _invalid_client(
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the "
            "request is the client secret value, not the client secret ID, for a "
            f"secret added to app '{app.client_id}'.",
        )
    if app.secret_expires_at is not None and app.secret_expires_at <= now:
        raise _invalid_client(
            7000222,
            f"The provided client secret keys for app '{app.client_id}' are expired. "
            "Visit the Azure portal to create new keys for your app: "
            "https://aka.ms/NewClientSecret, or consider using certificate credentials "
            "for added security: https://aka.ms/certCreds.",
        )


def _thumb_hex(value: Any) -> str:
    try:
        return base64.urlsafe_b64decode(str(value) + "=" * (-len(str(value)) % 4)).hex()
    except (binascii.Error, ValueError):
        return ""


def _found_key(cert: RegisteredCertificate) -> str:
    start, end = f"{cert.not_before:%m/%d/%Y %H:%M:%S}", f"{cert.not_after:%m/%d/%Y %H:%M:%S}"
    return f"Found key 'Start={start}, End={end}'"


def _certificate(app: App, assertion: str) -> tuple[RegisteredCertificate, str]:
    """The app's certificate the assertion names by thumbprint, and the thumbprint used."""
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError as exc:
        raise _invalid_client(50027, "JWT token is invalid or malformed.") from exc
    sha256 = _thumb_hex(header.get("x5t#S256", ""))
    sha1 = _thumb_hex(header.get("x5t", ""))
    used = (sha256 or sha1).upper()
    for cert in app.certificates:
        if (sha256 and cert.thumbprint_sha256 == sha256) or (sha1 and cert.thumbprint_sha1 == sha1):
            return cert, used
    raise _invalid_client(
        700027,
        "Client assertion contains an invalid signature. [Reason - The key was "
        f"not found., Thumbprint of key used by client: '{used}', Please visit "
        "the Azure Portal, Graph Explorer or directly use MS Graph to see "
        f"configured keys for app Id '{app.client_id}'.]",
    )


def _check_times(claims: dict[str, Any]) -> None:
    """The assertion's exp/nbf, in real time with Entra's clock skew."""
    now = time.time()
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if (
        isinstance(exp, int | float)
        and exp > now - CLOCK_SKEW_S
        and not (isinstance(nbf, int | float) and nbf > now + CLOCK_SKEW_S)
    ):
        return

    def stamp(value: Any) -> str:
        seconds = float(value) if isinstance(value, int | float) else 0.0
        return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")

    raise _invalid_client(
        700024,
        "Client assertion is not within its valid time range. Current time: "
        f"{stamp(now)}, assertion valid from {stamp(nbf)}, expiry time of "
        f"assertion {stamp(exp)}. {ASSERTION_DOCS}",
    )


def check_assertion(
    app: App, assertion: str, token_endpoints: set[str], now_virtual: dt.datetime
) -> None:
    """Entra's checks of a certificate credential. The certificate's own validity is a
    calendar matter (virtual clock); the assertion's exp/nbf are checked in real time, as the
    client signs them with its own clock."""
    cert, used = _certificate(app, assertion)
    try:
        claims = jwt.decode(
            assertion,
            cert.public_key,  # type: ignore[arg-type]
            algorithms=["RS256", "PS256"],
            options={
                "verify_aud": False,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_iss": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise _invalid_client(
            700027,
            "Client assertion contains an invalid signature. [Reason - The provided "
            "signature value did not match the expected signature value., "
            f"Thumbprint of key used by client: '{used}', {_found_key(cert)}]",
        ) from exc
    if not cert.not_before <= now_virtual <= cert.not_after:
        raise _invalid_client(
            1000502,
            "The provided certificate is not within its specified validity window. "
            f"Thumbprint of key used by client: '{used}', {_found_key(cert)}",
        )
    _check_times(claims)
    if claims.get("aud") not in token_endpoints:
        raise _invalid_client(
            700023,
            f"Client assertion audience claim does not match Realm issuer. {ASSERTION_DOCS}",
        )
    if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
        raise _invalid_client(
            700021,
            "Client assertion application identifier doesn't match 'client_id' "
            f"parameter. {ASSERTION_DOCS}",
        )
    if not claims.get("jti"):
        raise _invalid_client(
            50027, "JWT token is invalid or malformed. The 'jti' claim is missing."
        )
