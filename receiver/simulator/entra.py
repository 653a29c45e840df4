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

from starlette.routing import BaseRoute

from receiver.simulator import entra_discovery, entra_token, signin_authorize

routes: list[BaseRoute] = [
    *entra_discovery.routes,
    *entra_token.routes,
    *signin_authorize.routes,
]
