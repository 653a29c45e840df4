"""Write-back: after a ticket sink created a ticket, record it on the alert in Graph, so
analysts in the Defender portal see it. alerts_v2: a comment; legacy alerts: a tag (PATCH
with the vendorInformation Graph requires). A failure is logged by the sink and never fails
the delivery: the ticket exists either way."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from receiver.envelope import Envelope

if TYPE_CHECKING:
    from receiver.config.settings import TenantSettings

TAG_PREFIX = "ticket:"


class GraphWriter(Protocol):
    async def post(self, tenant_id: str, path: str, body: Any = None) -> dict[str, Any]: ...

    async def patch(self, tenant_id: str, path: str, body: Any) -> dict[str, Any]: ...

    async def request(
        self,
        tenant_id: str,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        content_type: str | None = None,
    ) -> Any: ...


class GraphWriteBack:
    def __init__(self, graph: GraphWriter) -> None:
        self.graph = graph

    async def ticket_created(
        self, envelope: Envelope, sink: str, ticket_id: str, ticket_url: str
    ) -> None:
        note = f"{sink} ticket {ticket_id}" + (f": {ticket_url}" if ticket_url else "")
        if envelope.source_api == "alerts_v2":
            await self.graph.post(
                envelope.tenant_id,
                f"security/alerts_v2/{envelope.id}/comments",
                {"@odata.type": "microsoft.graph.security.alertComment", "comment": note},
            )
        elif envelope.source_api == "alerts_v1":
            vendor = envelope.raw.get("vendorInformation") or {}
            tags = [t for t in envelope.tags if not t.startswith(TAG_PREFIX + sink + ":")]
            await self.graph.patch(
                envelope.tenant_id,
                f"security/alerts/{envelope.id}",
                {
                    "vendorInformation": {
                        "provider": vendor.get("provider"),
                        "vendor": vendor.get("vendor"),
                    },
                    "tags": [*tags, f"{TAG_PREFIX}{sink}:{ticket_id}"],
                },
            )


class GraphMail:
    """Graph sendMail for the email sink's graph transport, with the tenant's app token."""

    def __init__(
        self,
        graph: GraphWriter,
        tenants: Callable[[str], TenantSettings | None] | Mapping[str, str],
    ) -> None:
        """``tenants``: the settings' one lookup (``settings.find_tenant``), or a fixed
        name-or-id -> tenant id map (tests)."""
        self.graph = graph
        self._find: Callable[[str], TenantSettings | None] | None = None
        self._ids: Mapping[str, str] = {}
        if callable(tenants):
            self._find = tenants
        else:
            self._ids = tenants

    def tenant_id(self, tenant: str) -> str | None:
        """The id of the tenant a sink names (by name or id), or None."""
        if self._find is not None:
            found = self._find(tenant)
            return found.tenant_id if found is not None else None
        return self._ids.get(tenant) or self._ids.get(tenant.lower())

    async def send_mail(self, tenant: str, sender: str, message: dict[str, Any]) -> None:
        await self._send(tenant, sender, message, None)

    async def send_mime(self, tenant: str, sender: str, mime: bytes) -> None:
        """sendMail in MIME form: the body is the base64 of the message, Content-Type
        text/plain (user-sendmail.md, "Example 4")."""
        await self._send(tenant, sender, None, base64.b64encode(mime))

    async def _send(
        self, tenant: str, sender: str, message: dict[str, Any] | None, mime_b64: bytes | None
    ) -> None:
        from receiver.graph.client import GraphError, GraphUnavailable
        from receiver.sinks.base import PermanentError, RetryableError

        tenant_id = self.tenant_id(tenant)
        if tenant_id is None:
            raise PermanentError(f"graph mail: tenant {tenant!r} is not configured")
        path = f"users/{sender}/sendMail"
        try:
            if mime_b64 is not None:
                await self.graph.request(
                    tenant_id, "POST", path, content=mime_b64, content_type="text/plain"
                )
            else:
                await self.graph.post(tenant_id, path, message)
        except GraphUnavailable as exc:
            raise RetryableError(
                f"graph sendMail: {exc.status or exc.code}", status=exc.status or None
            ) from None
        except GraphError as exc:
            raise PermanentError(
                f"graph sendMail: {exc.status} {exc.code}: {exc.message}", status=exc.status
            ) from None
