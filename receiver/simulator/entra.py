"""Entra ID (v2 endpoints): OpenID discovery and signing keys (entra_discovery.py), the token
endpoint with client credentials and the authorization code grant (entra_token.py,
entra_credentials.py), and the authorize endpoint of user sign-in (signin_authorize.py).

Just enough for MSAL's ConfidentialClientApplication to run unchanged: it discovers
`{authority}/v2.0/.well-known/openid-configuration`, then POSTs the token request with a
client secret or a certificate-signed client assertion (RS256 with `x5t`, or PS256 with
`x5t#S256`). Errors come back in Entra's JSON shape with its AADSTS codes and texts
(entra_http.py).
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from receiver.simulator import entra_discovery as discovery
from receiver.simulator import entra_token as token
from receiver.simulator import signin_authorize as authorize

routes: list[BaseRoute] = [
    Route("/common/discovery/v2.0/keys", discovery.keys, methods=["GET"]),
    Route("/{tenant}/v2.0/.well-known/openid-configuration", discovery.discovery, methods=["GET"]),
    Route("/{tenant}/discovery/v2.0/keys", discovery.keys, methods=["GET"]),
    Route("/{tenant}/discovery/keys", discovery.keys, methods=["GET"]),
    Route("/{tenant}/oauth2/v2.0/token", token.token, methods=["POST"]),
    Route("/{tenant}/oauth2/v2.0/authorize", authorize.authorize, methods=["GET"]),
]
