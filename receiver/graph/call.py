"""What one Graph call carries through the httpx layers: its tenant and rate-limit bucket.

The Graph client is layered the httpx way: the bearer token (and its one refresh after a
401) is an ``httpx.Auth`` (receiver.graph.auth.GraphAuth) and the per-tenant rate limiter a
transport (receiver.graph.ratelimit.RateLimitedTransport). Both need to know which tenant a
request is for, and neither may guess it from the URL (every tenant shares Graph's origin), so
the client puts a :class:`GraphCall` in the request's ``extensions``: it never goes on the
wire. One object per ``GraphClient.request`` (shared by its retries), so the 401 refresh
happens once per call, as it did when the loop did it itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

EXTENSION = "receiver.graph_call"


@dataclass(slots=True)
class GraphCall:
    tenant_id: str
    bucket: str | None = None  # the rate-limit bucket (receiver.graph.client.bucket_of)
    refreshed: bool = False  # a fresh token was already fetched after a 401

    def attach(self, extensions: dict[str, object]) -> dict[str, object]:
        extensions[EXTENSION] = self
        return extensions

    @staticmethod
    def of(request: httpx.Request) -> GraphCall | None:
        call = request.extensions.get(EXTENSION)
        return call if isinstance(call, GraphCall) else None
