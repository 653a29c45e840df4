"""Graph security alert payloads: legacy `alert` (vendorInformation per provider),
`microsoft.graph.security.alert` (alerts_v2, with evidence) and `incident`, made from the
tables in payloads.py with a seeded random generator."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Mapping
from typing import Any

from receiver.simulator.clock import iso
from receiver.simulator.payloads import (
    FIRST_NAMES,
    INCIDENT_NAMES,
    LAST_NAMES,
    LEGACY_PROVIDERS,
    PORTAL,
    V2_SOURCES,
)


class AlertPayloads:
    """Makes alerts and incidents; all randomness comes from `rng`."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._incident_number = 10_000

    def guid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _user(self, domain: str) -> tuple[str, str, str]:
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        return f"{first}.{last}@{domain}", f"{first.title()} {last.title()}", self.guid()

    def _ip(self) -> str:
        return (
            f"{self.rng.randint(20, 220)}.{self.rng.randint(0, 255)}."
            f"{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}"
        )

    def _host(self) -> str:
        return f"wks-{self.rng.randint(100, 999)}"

    def _pick(self, given: str | None, table: Mapping[str, Any], label: str) -> str:
        """`given` (which must be a key of `table`), or a key chosen at random."""
        chosen = given or self.rng.choice(sorted(table))
        if chosen not in table:
            raise ValueError(f"unknown {label} {chosen!r}; one of {', '.join(sorted(table))}")
        return chosen

    # Legacy alerts (microsoft.graph.alert)

    def legacy_alert(
        self,
        tenant_id: str,
        domain: str,
        now: dt.datetime,
        provider: str | None = None,
        severity: str | None = None,
    ) -> dict[str, Any]:
        provider = self._pick(provider, LEGACY_PROVIDERS, "legacy provider")
        spec = LEGACY_PROVIDERS[provider]
        title, category = self.rng.choice(spec["alerts"])
        upn, _name, user_id = self._user(domain)
        ip = self._ip()
        event = now - dt.timedelta(minutes=self.rng.randint(1, 30))
        alert_id = self.rng.getrandbits(128).to_bytes(16, "big").hex().upper()
        host = self._host()
        return {
            "id": alert_id,
            "azureTenantId": tenant_id,
            "azureSubscriptionId": None,
            "riskScore": None,
            "tags": [],
            "activityGroupName": None,
            "assignedTo": None,
            "category": category,
            "closedDateTime": None,
            "comments": [],
            "confidence": self.rng.choice((None, 50, 80, 100)),
            "createdDateTime": iso(now),
            "description": f"{title} for {upn}.",
            "detectionIds": [],
            "eventDateTime": iso(event),
            "feedback": None,
            "incidentIds": [],
            "lastEventDateTime": iso(event),
            "lastModifiedDateTime": iso(now),
            "recommendedActions": [],
            "severity": severity or self.rng.choice(("low", "medium", "high")),
            "sourceMaterials": [f"{PORTAL}/alerts/{alert_id.lower()}?tid={tenant_id}"],
            "status": "newAlert",
            "title": title,
            "vendorInformation": dict(spec["vendor"]),
            "alertDetections": [],
            "cloudAppStates": [],
            "fileStates": [],
            "hostStates": [
                {
                    "fqdn": f"{host}.{domain}",
                    "isAzureAdJoined": True,
                    "netBiosName": host.upper(),
                    "os": "Windows 11",
                    "privateIpAddress": f"10.0.{self.rng.randint(0, 9)}.{self.rng.randint(2, 250)}",
                    "publicIpAddress": ip,
                    "riskScore": None,
                }
            ]
            if provider in ("Microsoft Defender ATP", "Azure Advanced Threat Protection")
            else [],
            "historyStates": [],
            "investigationSecurityStates": [],
            "malwareStates": [],
            "messageSecurityStates": [],
            "networkConnections": [],
            "processes": [],
            "registryKeyStates": [],
            "securityResources": [],
            "triggers": [],
            "userStates": [
                {
                    "aadUserId": user_id,
                    "accountName": upn.split("@")[0],
                    "domainName": domain,
                    "emailRole": "unknown",
                    "isVpn": None,
                    "logonDateTime": iso(event),
                    "logonId": None,
                    "logonIp": ip,
                    "logonLocation": self.rng.choice(
                        ("Lagos, NG", "Sao Paulo, BR", "Amsterdam, NL")
                    ),
                    "logonType": None,
                    "onPremisesSecurityIdentifier": None,
                    "riskScore": None,
                    "userAccountType": None,
                    "userPrincipalName": upn,
                }
            ],
            "uriClickSecurityStates": [],
            "vulnerabilityStates": [],
        }

    # alerts_v2 (microsoft.graph.security.alert) and incidents

    def _evidence(self, source: str, domain: str, now: dt.datetime) -> list[dict[str, Any]]:
        upn, name, user_id = self._user(domain)
        common: dict[str, Any] = {
            "createdDateTime": iso(now),
            "verdict": "suspicious",
            "remediationStatus": "none",
            "remediationStatusDetails": None,
            "roles": [],
            "detailedRoles": [],
            "tags": [],
        }
        user = {
            "@odata.type": "#microsoft.graph.security.userEvidence",
            **common,
            "userAccount": {
                "accountName": upn.split("@")[0],
                "domainName": domain,
                "userSid": f"S-1-5-21-{self.rng.randint(10**8, 10**9)}-1104",
                "azureAdUserId": user_id,
                "userPrincipalName": upn,
                "displayName": name,
            },
        }
        ip = {
            "@odata.type": "#microsoft.graph.security.ipEvidence",
            **common,
            "ipAddress": self._ip(),
            "countryLetterCode": self.rng.choice(("NG", "BR", "NL")),
        }
        evidence: list[dict[str, Any]] = [user, ip]
        if source in ("microsoftDefenderForEndpoint", "microsoftDefenderForIdentity"):
            host = self._host()
            evidence.append(
                {
                    "@odata.type": "#microsoft.graph.security.deviceEvidence",
                    **common,
                    "firstSeenDateTime": iso(now - dt.timedelta(days=90)),
                    "mdeDeviceId": self.rng.getrandbits(160).to_bytes(20, "big").hex(),
                    "azureAdDeviceId": self.guid(),
                    "deviceDnsName": f"{host}.{domain}",
                    "osPlatform": "Windows11",
                    "osBuild": 22631,
                    "version": "23H2",
                    "healthStatus": "active",
                    "riskScore": "high",
                    "rbacGroupId": 0,
                    "rbacGroupName": None,
                    "onboardingStatus": "onboarded",
                    "defenderAvStatus": "updated",
                    "loggedOnUsers": [],
                    "ipInterfaces": [],
                }
            )
        if source == "microsoftDefenderForEndpoint":
            evidence.append(
                {
                    "@odata.type": "#microsoft.graph.security.fileEvidence",
                    **common,
                    "detectionStatus": "detected",
                    "mdeDeviceId": None,
                    "fileDetails": {
                        "sha1": self.rng.getrandbits(160).to_bytes(20, "big").hex(),
                        "sha256": self.rng.getrandbits(256).to_bytes(32, "big").hex(),
                        "fileName": "invoice.ps1",
                        "filePath": "C:\\Users\\Public",
                        "fileSize": self.rng.randint(1_000, 90_000),
                        "filePublisher": None,
                        "signer": None,
                        "issuer": None,
                    },
                }
            )
        if source == "microsoftDefenderForOffice365":
            evidence.append(
                {
                    "@odata.type": "#microsoft.graph.security.urlEvidence",
                    **common,
                    "url": f"https://login-{self.rng.randint(1, 99)}.example.net/o365",
                }
            )
            evidence.append(
                {
                    "@odata.type": "#microsoft.graph.security.mailboxEvidence",
                    **common,
                    "primaryAddress": upn,
                    "displayName": name,
                    "userAccount": user["userAccount"],
                }
            )
        return evidence

    def v2_alert(
        self,
        tenant_id: str,
        domain: str,
        now: dt.datetime,
        incident_id: str,
        service_source: str | None = None,
        severity: str | None = None,
    ) -> dict[str, Any]:
        source = self._pick(service_source, V2_SOURCES, "serviceSource")
        prefix, product, detection, titles, techniques = V2_SOURCES[source]
        alert_id = (
            f"{prefix}{self.rng.randint(10**17, 10**18 - 1)}_{self.rng.randint(10**8, 10**9)}"
        )
        first = now - dt.timedelta(minutes=self.rng.randint(5, 60))
        title = self.rng.choice(titles)
        return {
            "@odata.type": "#microsoft.graph.security.alert",
            "id": alert_id,
            "providerAlertId": alert_id[2:],
            "incidentId": incident_id,
            "status": "new",
            "severity": severity or self.rng.choice(("low", "medium", "high")),
            "classification": "unknown",  # not classified yet: the member, not null
            "determination": "unknown",
            "serviceSource": source,
            "detectionSource": detection,
            "productName": product,
            "detectorId": self.guid(),
            "tenantId": tenant_id,
            "title": title,
            "description": f"{title}. Investigate the evidence attached to this alert.",
            "recommendedActions": "Review the activity and contain the affected accounts.",
            "category": self.rng.choice(("InitialAccess", "Execution", "CredentialAccess")),
            "assignedTo": None,
            "alertWebUrl": f"{PORTAL}/alerts/{alert_id}?tid={tenant_id}",
            "incidentWebUrl": f"{PORTAL}/incidents/{incident_id}?tid={tenant_id}",
            "actorDisplayName": None,
            "threatDisplayName": None,
            "threatFamilyName": None,
            "mitreTechniques": list(techniques),
            "createdDateTime": iso(now),
            "lastUpdateDateTime": iso(now),
            "resolvedDateTime": None,
            "firstActivityDateTime": iso(first),
            "lastActivityDateTime": iso(now - dt.timedelta(minutes=1)),
            "comments": [],
            "evidence": self._evidence(source, domain, now),
            "systemTags": [],
            "alertPolicyId": None,
            "additionalData": {},
        }

    def incident(
        self,
        tenant_id: str,
        now: dt.datetime,
        severity: str = "medium",
        display_name: str | None = None,
    ) -> dict[str, Any]:
        self._incident_number += self.rng.randint(1, 7)
        incident_id = str(self._incident_number)
        return {
            "id": incident_id,
            "tenantId": tenant_id,
            "status": "active",
            "incidentWebUrl": f"{PORTAL}/incidents/{incident_id}?tid={tenant_id}",
            "redirectIncidentId": None,
            "displayName": display_name or self.rng.choice(INCIDENT_NAMES),
            "createdDateTime": iso(now),
            "lastUpdateDateTime": iso(now),
            "assignedTo": None,
            "classification": "unknown",
            "determination": "unknown",
            "severity": severity,
            "customTags": [],
            "systemTags": [],
            "description": None,
            "summary": None,
            "lastModifiedBy": None,
            "resolvingComment": None,
            "comments": [],
        }
