"""The normalised alert envelope and its JSON codec.

Graph has two alert shapes: the legacy ``microsoft.graph.alert`` (``/security/alerts``) and
``microsoft.graph.security.alert`` (``/security/alerts_v2``), plus incidents. Routing, sinks and
templates see one shape, :class:`Envelope`; the original is kept in ``raw``.

Normalised values: ``severity`` is one of informational, low, medium, high, unknown;
``status`` one of new, inProgress, resolved, unknown (legacy ``newAlert`` and an incident's
``active`` become ``new``). Graph's enum members are camelCase on the wire, but Microsoft's own
examples also print them in PascalCase ("Active", "Medium", "TruePositive"), so every enum value
is read case-insensitively and kept in its camelCase spelling; an unclassified alert's
``"unknown"`` classification or determination reads as empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

SEVERITIES = ("unknown", "informational", "low", "medium", "high")
STATUSES = ("new", "inProgress", "resolved", "unknown")
# Fields whose change is worth telling a human about (an update message, a ticket comment).
MATERIAL_FIELDS = ("status", "severity", "assigned_to", "classification", "determination")

_LEGACY_STATUS = {
    "newalert": "new",
    "new": "new",
    "inprogress": "inProgress",
    "resolved": "resolved",
}
# An incident's status: active, inProgress, resolved, redirected (merged into another incident:
# nothing is left to do on this one), awaitingAction (waiting on the customer).
_INCIDENT_STATUS = {
    "active": "new",
    "inprogress": "inProgress",
    "resolved": "resolved",
    "redirected": "resolved",
    "awaitingaction": "inProgress",
}
MAX_INCIDENT_ALERTS = 20  # an incident's alerts listed in its description
_PORTAL = "https://security.microsoft.com"


@dataclass(frozen=True, slots=True)
class Entity:
    """One involved thing, summarised for a message: a user, device, IP, file, URL, mailbox."""

    type: str
    name: str


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str
    tenant_id: str
    source_api: str  # alerts_v1 | alerts_v2 | incidents
    title: str
    severity: str = "unknown"
    status: str = "unknown"
    kind: str = "alert"  # alert | incident
    tenant: str = ""  # the configured tenant name
    description: str = ""
    category: str = ""
    classification: str = ""
    determination: str = ""
    provider: str = ""  # vendorInformation.provider or serviceSource
    product: str = ""
    detection_source: str = ""
    assigned_to: str = ""
    created_at: str = ""
    updated_at: str = ""  # the version: lastModifiedDateTime / lastUpdateDateTime
    first_activity_at: str = ""
    last_activity_at: str = ""
    incident_id: str = ""
    web_url: str = ""
    incident_web_url: str = ""
    tags: tuple[str, ...] = ()
    mitre_techniques: tuple[str, ...] = ()
    entities: tuple[Entity, ...] = ()
    recommended_actions: str = ""
    # Set by the fetch stage: whether this is the first version routed, and which material
    # fields changed since the last routed version.
    first_seen: bool = True
    changes: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def version(self) -> str:
        return self.updated_at or self.created_at

    @property
    def is_update(self) -> bool:
        return not self.first_seen

    def value(self, name: str) -> str | None:
        """A field for matchers and templates: an envelope field, ``tags`` (comma-joined),
        or a dotted path into the alert as Graph sent it (``raw.vendorInformation.provider``)."""
        if name.startswith("raw."):
            node: Any = self.raw
            for part in name[4:].split("."):
                if isinstance(node, dict) and part in node:
                    node = node[part]
                elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                else:
                    return None
            return None if node is None or isinstance(node, dict | list) else str(node)
        if name in _FIELD_NAMES:
            value = getattr(self, name)
            if isinstance(value, tuple):
                return ",".join(e.name if isinstance(e, Entity) else str(e) for e in value)
            return str(value)
        return None

    def as_update(self, changes: tuple[str, ...]) -> Envelope:
        return replace(self, first_seen=False, changes=changes)

    def material(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in MATERIAL_FIELDS}

    # --- codec ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain dict (``raw`` is shared, not copied: it can be large)."""
        out = {name: getattr(self, name) for name in _FIELD_ORDER}
        for name in ("tags", "mitre_techniques", "changes"):
            out[name] = list(out[name])
        out["entities"] = [[e.type, e.name] for e in self.entities]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Envelope:
        known = {k: v for k, v in data.items() if k in _FIELD_NAMES}
        for name in ("tags", "mitre_techniques", "changes"):
            if name in known:
                known[name] = tuple(known[name])
        if "entities" in known:
            known["entities"] = tuple(Entity(t, n) for t, n in known["entities"])
        return cls(**known)

    @classmethod
    def from_json(cls, text: str | bytes) -> Envelope:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("an envelope is a JSON object")
        return cls.from_dict(data)


_FIELD_ORDER = tuple(f.name for f in fields(Envelope))
_FIELD_NAMES = frozenset(_FIELD_ORDER)


# --- normalisation -----------------------------------------------------------------------


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def _severity(value: Any) -> str:
    s = _s(value).lower()
    return s if s in SEVERITIES else "unknown"


def _status(value: Any) -> str:
    return _LEGACY_STATUS.get(_s(value).lower(), "unknown")


def _enum(value: Any) -> str:
    """An enum member in Graph's camelCase, whatever casing it came in ("TruePositive" ->
    "truePositive", "APT" -> "apt"); ``unknown`` (unclassified) and null read as empty."""
    text = _s(value).strip()
    if not text or text.lower() == "unknown":
        return ""
    if text.isupper():
        return text.lower()
    return text[0].lower() + text[1:]


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value if v is not None) if isinstance(value, list) else ()


def _dedupe(entities: list[Entity], limit: int = 20) -> tuple[Entity, ...]:
    seen: dict[tuple[str, str], Entity] = {}
    for e in entities:
        if e.name and (e.type, e.name) not in seen:
            seen[(e.type, e.name)] = e
    return tuple(seen.values())[:limit]


def _legacy_entities(alert: dict[str, Any]) -> tuple[Entity, ...]:
    out: list[Entity] = []
    for u in alert.get("userStates") or []:
        if isinstance(u, dict):
            out.append(Entity("user", _s(u.get("userPrincipalName") or u.get("accountName"))))
            if u.get("logonIp"):
                out.append(Entity("ip", _s(u["logonIp"])))
    for h in alert.get("hostStates") or []:
        if isinstance(h, dict):
            out.append(Entity("device", _s(h.get("fqdn") or h.get("netBiosName"))))
    for f in alert.get("fileStates") or []:
        if isinstance(f, dict):
            out.append(Entity("file", _s(f.get("name") or f.get("path"))))
    for n in alert.get("networkConnections") or []:
        if isinstance(n, dict):
            out.append(Entity("ip", _s(n.get("destinationAddress"))))
            out.append(Entity("url", _s(n.get("destinationUrl"))))
    return _dedupe(out)


def _v2_entities(alert: dict[str, Any]) -> tuple[Entity, ...]:
    out: list[Entity] = []
    for ev in alert.get("evidence") or []:
        if not isinstance(ev, dict):
            continue
        kind = _s(ev.get("@odata.type")).rsplit(".", 1)[-1].removesuffix("Evidence")
        if kind == "user":
            acct = ev.get("userAccount") or {}
            out.append(Entity("user", _s(acct.get("userPrincipalName") or acct.get("accountName"))))
        elif kind == "device":
            out.append(Entity("device", _s(ev.get("deviceDnsName") or ev.get("hostName"))))
        elif kind == "ip":
            out.append(Entity("ip", _s(ev.get("ipAddress"))))
        elif kind == "url":
            out.append(Entity("url", _s(ev.get("url"))))
        elif kind == "file":
            details = ev.get("fileDetails") or {}
            out.append(Entity("file", _s(details.get("fileName") or details.get("sha256"))))
        elif kind in ("mailbox", "analyzedMessage"):
            out.append(
                Entity("mailbox", _s(ev.get("primaryAddress") or ev.get("recipientEmailAddress")))
            )
        elif kind == "process":
            details = ev.get("imageFile") or {}
            out.append(Entity("process", _s(details.get("fileName"))))
    return _dedupe(out)


def from_legacy(alert: dict[str, Any], tenant: str = "") -> Envelope:
    """A legacy ``microsoft.graph.alert``."""
    vendor = alert.get("vendorInformation") or {}
    alert_id = _s(alert.get("id"))
    tenant_id = _s(alert.get("azureTenantId")).lower()
    sources = _strings(alert.get("sourceMaterials"))
    web_url = (
        sources[0]
        if sources
        else (f"{_PORTAL}/alerts/{alert_id.lower()}?tid={tenant_id}" if alert_id else "")
    )
    feedback = _s(alert.get("feedback"))
    incidents = _strings(alert.get("incidentIds"))
    return Envelope(
        id=alert_id,
        tenant_id=tenant_id,
        source_api="alerts_v1",
        tenant=tenant,
        title=_s(alert.get("title")),
        severity=_severity(alert.get("severity")),
        status=_status(alert.get("status")),
        description=_s(alert.get("description")),
        category=_s(alert.get("category")),
        classification="" if feedback in ("", "unknown") else feedback,
        provider=_s(vendor.get("provider") if isinstance(vendor, dict) else ""),
        product=_s(vendor.get("subProvider") if isinstance(vendor, dict) else ""),
        assigned_to=_s(alert.get("assignedTo")),
        created_at=_s(alert.get("createdDateTime")),
        updated_at=_s(alert.get("lastModifiedDateTime") or alert.get("createdDateTime")),
        first_activity_at=_s(alert.get("eventDateTime")),
        last_activity_at=_s(alert.get("lastEventDateTime")),
        incident_id=incidents[0] if incidents else "",
        web_url=web_url,
        tags=_strings(alert.get("tags")),
        recommended_actions="; ".join(_strings(alert.get("recommendedActions"))),
        entities=_legacy_entities(alert),
        raw=alert,
    )


def from_v2(alert: dict[str, Any], tenant: str = "") -> Envelope:
    """A ``microsoft.graph.security.alert`` (alerts_v2)."""
    return Envelope(
        id=_s(alert.get("id")),
        tenant_id=_s(alert.get("tenantId")).lower(),
        source_api="alerts_v2",
        tenant=tenant,
        title=_s(alert.get("title")),
        severity=_severity(alert.get("severity")),
        status=_status(alert.get("status")),
        description=_s(alert.get("description")),
        category=_s(alert.get("category")),
        classification=_enum(alert.get("classification")),
        determination=_enum(alert.get("determination")),
        provider=_enum(alert.get("serviceSource")),
        product=_s(alert.get("productName")),
        detection_source=_enum(alert.get("detectionSource")),
        assigned_to=_s(alert.get("assignedTo")),
        created_at=_s(alert.get("createdDateTime")),
        updated_at=_s(alert.get("lastUpdateDateTime") or alert.get("createdDateTime")),
        first_activity_at=_s(alert.get("firstActivityDateTime")),
        last_activity_at=_s(alert.get("lastActivityDateTime")),
        incident_id=_s(alert.get("incidentId")),
        web_url=_s(alert.get("alertWebUrl")),
        incident_web_url=_s(alert.get("incidentWebUrl")),
        tags=_strings(alert.get("systemTags")),
        mitre_techniques=_strings(alert.get("mitreTechniques")),
        recommended_actions=_s(alert.get("recommendedActions")),
        entities=_v2_entities(alert),
        raw=alert,
    )


def from_incident(incident: dict[str, Any], tenant: str = "") -> Envelope:
    """A ``microsoft.graph.security.incident``; read with ``$expand=alerts`` its alerts are
    listed in the description and their evidence gives its entities."""
    alerts = [from_v2(a) for a in incident.get("alerts") or [] if isinstance(a, dict)]
    lines = [
        f"- [{a.severity.capitalize()}] {a.title} · {a.status}"
        + (f" · {a.provider}" if a.provider else "")
        for a in alerts[:MAX_INCIDENT_ALERTS]
    ]
    if len(alerts) > MAX_INCIDENT_ALERTS:
        lines.append(f"... and {len(alerts) - MAX_INCIDENT_ALERTS} more")
    description = _s(incident.get("description") or incident.get("summary"))
    if lines:
        description = "\n".join(
            [*([description] if description else []), f"{len(alerts)} alert(s):", *lines]
        )
    providers = {a.provider for a in alerts if a.provider}
    return Envelope(
        id=_s(incident.get("id")),
        tenant_id=_s(incident.get("tenantId")).lower(),
        source_api="incidents",
        kind="incident",
        tenant=tenant,
        title=_s(incident.get("displayName")),
        severity=_severity(incident.get("severity")),
        status=_INCIDENT_STATUS.get(_s(incident.get("status")).lower(), "unknown"),
        description=description,
        classification=_enum(incident.get("classification")),
        determination=_enum(incident.get("determination")),
        provider=providers.pop() if len(providers) == 1 else "",
        assigned_to=_s(incident.get("assignedTo")),
        created_at=_s(incident.get("createdDateTime")),
        updated_at=_s(incident.get("lastUpdateDateTime") or incident.get("createdDateTime")),
        incident_id=_s(incident.get("id")),
        web_url=_s(incident.get("incidentWebUrl")),
        incident_web_url=_s(incident.get("incidentWebUrl")),
        tags=_strings(incident.get("systemTags")) + _strings(incident.get("customTags")),
        mitre_techniques=tuple(dict.fromkeys(t for a in alerts for t in a.mitre_techniques)),
        entities=_dedupe([e for a in alerts for e in a.entities]),
        raw=incident,
    )


def material_changes(previous: dict[str, str] | None, current: Envelope) -> tuple[str, ...]:
    """Which material fields differ from the last routed version (() for a first version)."""
    if previous is None:
        return ()
    now = current.material()
    return tuple(name for name in MATERIAL_FIELDS if previous.get(name, "") != now[name])
