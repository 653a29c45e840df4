"""Entra ID (v2 endpoints): OpenID discovery, signing keys, client-credentials tokens and the
authorization code grant of user sign-in (signin.py: the authorize endpoint, users, codes).

Just enough for MSAL's ConfidentialClientApplication to run unchanged: it discovers
`{authority}/v2.0/.well-known/openid-configuration`, then POSTs the token request with a
client secret or a certificate-signed client assertion (RS256 with `x5t`, or PS256 with
`x5t#S256`). Errors come back in Entra's JSON shape with its AADSTS codes and texts.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import jwt
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.simulator import signin
from receiver.simulator.tokens import GRAPH_AUDIENCE

if TYPE_CHECKING:
    from receiver.simulator.core import Simulator
    from receiver.simulator.state import App, RegisteredCertificate, Tenant

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRAPH_SCOPES = frozenset(
    {f"{GRAPH_AUDIENCE}/.default", "00000003-0000-0000-c000-000000000000/.default"}
)
IGNORED_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
ASSERTION_DOCS = (
    "Review the documentation at "
    "https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
)
CLOCK_SKEW_S = 300


class EntraError(Exception):
    def __init__(self, status: int, error: str, code: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.error = error
        self.code = code
        self.text = text


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(
        json.dumps(body),
        status_code=status,
        media_type="application/json; charset=utf-8",
        headers={
            "Cache-Control": "no-store, no-cache",
            "Pragma": "no-cache",
            "x-ms-request-id": str(uuid.uuid4()),
        },
    )


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def error_response(request: Request, exc: EntraError) -> Response:
    trace_id = str(uuid.uuid4())
    correlation_id = request.headers.get("client-request-id") or str(uuid.uuid4())
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    description = (
        f"AADSTS{exc.code}: {exc.text}\r\nTrace ID: {trace_id}\r\n"
        f"Correlation ID: {correlation_id}\r\nTimestamp: {stamp}"
    )
    return _json(
        {
            "error": exc.error,
            "error_description": description,
            "error_codes": [exc.code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{_base(request)}/error?code={exc.code}",
        },
        status=exc.status,
    )


def _unknown_tenant(tenant: str) -> EntraError:
    return EntraError(
        400,
        "invalid_tenant",
        90002,
        f"Tenant '{tenant}' not found. Check to make sure you have the correct "
        "tenant ID and are signing into the correct cloud. Check with your "
        "subscription administrator, this may happen if there are no active "
        "subscriptions for the tenant.",
    )


def openid_configuration(base: str, tenant_id: str) -> dict[str, Any]:
    root = f"{base}/{tenant_id}"
    return {
        "token_endpoint": f"{root}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{root}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{root}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{base}/oidc/userinfo",
        "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
        "claims_supported": [
            "sub",
            "iss",
            "cloud_instance_name",
            "cloud_instance_host_name",
            "cloud_graph_host_name",
            "msgraph_host",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "acr",
            "nonce",
            "preferred_username",
            "name",
            "tid",
            "ver",
            "at_hash",
            "c_hash",
            "email",
        ],
        "kerberos_endpoint": f"{root}/kerberos",
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }


async def discovery(request: Request) -> Response:
    sim: Simulator = request.app.state.sim
    name = request.path_params["tenant"]
    sim.counters["entra.discovery"] += 1
    if name.lower() in ("common", "organizations"):
        return _json(openid_configuration(_base(request), "{tenantid}"))
    tenant = sim.directory.find(name)
    if tenant is None:
        return error_response(request, _unknown_tenant(name))
    return _json(openid_configuration(_base(request), tenant.tenant_id))


async def keys(request: Request) -> Response:
    sim: Simulator = request.app.state.sim
    name = request.path_params.get("tenant", "common")
    if name.lower() not in ("common", "organizations") and sim.directory.find(name) is None:
        return error_response(request, _unknown_tenant(name))
    return _json(sim.tokens.jwks())


def _client_auth(request: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
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


def _check_secret(app: App, secret: str, now: dt.datetime) -> None:
    if not any(hmac.compare_digest(secret.encode(), s.encode()) for s in app.secrets):
        raise EntraError(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the "
            "request is the client secret value, not the client secret ID, for a "
            f"secret added to app '{app.client_id}'.",
        )
    if app.secret_expires_at is not None and app.secret_expires_at <= now:
        raise EntraError(
            401,
            "invalid_client",
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


def _check_assertion(
    app: App, assertion: str, token_endpoints: set[str], now_virtual: dt.datetime
) -> None:
    """Entra's checks of a certificate credential. The certificate's own validity is a
    calendar matter (virtual clock); the assertion's exp/nbf are checked in real time, as the
    client signs them with its own clock."""
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError as exc:
        raise EntraError(
            401, "invalid_client", 50027, "JWT token is invalid or malformed."
        ) from exc
    sha256 = _thumb_hex(header.get("x5t#S256", ""))
    sha1 = _thumb_hex(header.get("x5t", ""))
    used = (sha256 or sha1).upper()
    cert: RegisteredCertificate | None = next(
        (
            c
            for c in app.certificates
            if (sha256 and c.thumbprint_sha256 == sha256) or (sha1 and c.thumbprint_sha1 == sha1)
        ),
        None,
    )
    if cert is None:
        raise EntraError(
            401,
            "invalid_client",
            700027,
            "Client assertion contains an invalid signature. [Reason - The key was "
            f"not found., Thumbprint of key used by client: '{used}', Please visit "
            "the Azure Portal, Graph Explorer or directly use MS Graph to see "
            f"configured keys for app Id '{app.client_id}'.]",
        )
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
        raise EntraError(
            401,
            "invalid_client",
            700027,
            "Client assertion contains an invalid signature. [Reason - The provided "
            "signature value did not match the expected signature value., "
            f"Thumbprint of key used by client: '{used}', Found key 'Start="
            f"{cert.not_before:%m/%d/%Y %H:%M:%S}, End="
            f"{cert.not_after:%m/%d/%Y %H:%M:%S}']",
        ) from exc
    if not cert.not_before <= now_virtual <= cert.not_after:
        raise EntraError(
            401,
            "invalid_client",
            1000502,
            "The provided certificate is not within its specified validity window. "
            f"Thumbprint of key used by client: '{used}', Found key 'Start="
            f"{cert.not_before:%m/%d/%Y %H:%M:%S}, End={cert.not_after:%m/%d/%Y %H:%M:%S}'",
        )
    now = time.time()
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if (
        not isinstance(exp, int | float)
        or exp <= now - CLOCK_SKEW_S
        or (isinstance(nbf, int | float) and nbf > now + CLOCK_SKEW_S)
    ):

        def stamp(value: Any) -> str:
            seconds = float(value) if isinstance(value, int | float) else 0.0
            return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")

        raise EntraError(
            401,
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range. Current time: "
            f"{stamp(now)}, assertion valid from {stamp(nbf)}, expiry time of "
            f"assertion {stamp(exp)}. {ASSERTION_DOCS}",
        )
    if claims.get("aud") not in token_endpoints:
        raise EntraError(
            401,
            "invalid_client",
            700023,
            f"Client assertion audience claim does not match Realm issuer. {ASSERTION_DOCS}",
        )
    if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
        raise EntraError(
            401,
            "invalid_client",
            700021,
            "Client assertion application identifier doesn't match 'client_id' "
            f"parameter. {ASSERTION_DOCS}",
        )
    if not claims.get("jti"):
        raise EntraError(
            401,
            "invalid_client",
            50027,
            "JWT token is invalid or malformed. The 'jti' claim is missing.",
        )


def _check_scope(scope: str | None, tenant: Tenant) -> None:
    if not scope:
        raise EntraError(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        )
    scopes = set(scope.split()) - IGNORED_SCOPES
    if not scopes & GRAPH_SCOPES or len(scopes) != 1:
        if not any(s.endswith("/.default") for s in scopes):
            raise EntraError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential "
                "flows must have a scope value with /.default suffixed to the resource "
                "identifier (application ID URI).",
            )
        resource = next(iter(s for s in scopes if s not in GRAPH_SCOPES)).rsplit("/", 1)[0]
        raise EntraError(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {resource} was not found in the tenant "
            f"named {tenant.display_name}. This can happen if the application has "
            "not been installed by the administrator of the tenant or consented to "
            "by any user in the tenant. You might have sent your authentication "
            "request to the wrong tenant.",
        )


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded token request (parsed here: python-multipart is not a dependency)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


async def token(request: Request) -> Response:
    sim: Simulator = request.app.state.sim
    try:
        return _issue(request, sim, await _form(request))
    except EntraError as exc:
        sim.counters["entra.token.failed"] += 1
        return error_response(request, exc)


def _issue(request: Request, sim: Simulator, form: dict[str, str]) -> Response:  # noqa: C901 - 11, older than the limit
    if sim.faults.take("token_failures"):
        sim.counters["fault.token_failure"] += 1
        raise EntraError(
            sim.faults.token_failure_status,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
        )
    name = request.path_params["tenant"]
    tenant = sim.directory.find(name)
    if tenant is None:
        raise _unknown_tenant(name)
    grant_type = form.get("grant_type")
    if grant_type not in ("client_credentials", "authorization_code"):
        raise EntraError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'.",
        )
    client_id, secret = _client_auth(request, form)
    if not client_id:
        raise EntraError(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        )
    app = tenant.apps.get(client_id.lower())
    if app is None:
        raise EntraError(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the "
            f"directory '{tenant.display_name}'. This can happen if the application "
            "has not been installed by the administrator of the tenant or consented "
            "to by any user in the tenant. You may have sent your authentication "
            "request to the wrong tenant.",
        )
    assertion = form.get("client_assertion")
    if assertion:
        if form.get("client_assertion_type") != JWT_BEARER:
            raise EntraError(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_assertion_type'.",
            )
        base = _base(request)
        endpoints = {
            f"{base}/{n}/oauth2/v2.0/token" for n in (name, tenant.tenant_id, tenant.domain)
        }
        _check_assertion(app, assertion, endpoints, sim.clock.now())
        credential = "certificate"
    elif secret:
        _check_secret(app, secret, sim.clock.now())
        credential = "secret"
    else:
        raise EntraError(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: "
            "'client_assertion' or 'client_secret'.",
        )
    if grant_type == "authorization_code":
        try:
            return _json(signin.redeem(sim, app, form, _base(request)))
        except signin.GrantError as exc:
            raise EntraError(400, exc.error, exc.code, exc.text) from None
    _check_scope(form.get("scope"), tenant)
    access_token = sim.tokens.issue(
        tenant_id=tenant.tenant_id,
        app_id=app.client_id,
        app_display_name=app.display_name,
        object_id=app.service_principal_id,
        roles=app.roles,
        credential=credential,
    )
    sim.counters["entra.token.issued"] += 1
    return _json(
        {
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": access_token,
        }
    )


routes = [
    Route("/common/discovery/v2.0/keys", keys, methods=["GET"]),
    Route("/{tenant}/v2.0/.well-known/openid-configuration", discovery, methods=["GET"]),
    Route("/{tenant}/discovery/v2.0/keys", keys, methods=["GET"]),
    Route("/{tenant}/discovery/keys", keys, methods=["GET"]),
    Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
    *signin.routes,
]
