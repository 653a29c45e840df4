"""Realistic Graph security payloads, made from a seeded random generator.

Shapes follow microsoft-graph-docs: legacy `alert` (vendorInformation per provider),
`microsoft.graph.security.alert` (alerts_v2, with evidence), `incident`, `secureScore` and
`secureScoreControlProfile`. The same seed gives the same alerts.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

from receiver.simulator.clock import iso

LEGACY_SEVERITIES = ("unknown", "informational", "low", "medium", "high")
LEGACY_STATUSES = ("unknown", "newAlert", "inProgress", "resolved", "unknownFutureValue")
LEGACY_FEEDBACK = (
    "unknown",
    "truePositive",
    "falsePositive",
    "benignPositive",
    "unknownFutureValue",
)
V2_SEVERITIES = ("unknown", "informational", "low", "medium", "high", "unknownFutureValue")
V2_STATUSES = ("unknown", "new", "inProgress", "resolved", "unknownFutureValue")
V2_CLASSIFICATIONS = (
    "unknown",
    "falsePositive",
    "truePositive",
    "informationalExpectedActivity",
    "unknownFutureValue",
)
# Secure Score controls in the daily snapshots: (category, controlName, maximum points).
SCORE_CONTROLS = (
    ("Identity", "AdminMFAV2", 10.0),
    ("Identity", "MFARegistrationV2", 9.0),
    ("Identity", "BlockLegacyAuthentication", 8.0),
    ("Data", "DLPEnabled", 4.0),
    ("Apps", "mdo_safelinksforOfficeApps", 3.0),
    ("Device", "scid_2010", 2.0),
)
# Evolvable enums: Graph returns a member listed after `unknownFutureValue` only to a request
# with `Prefer: include-unknown-enum-members`; to any other it answers `unknownFutureValue`
# (concepts/best-practices-concept.md, "Evolvable enums"). Members and order as in
# microsoft-graph-docs-contrib api-reference/v1.0/resources/security-incident.md (status) and
# security-alert.md (serviceSource, detectionSource; beta adds microsoftThreatIntelligence).
INCIDENT_STATUSES = (
    "active",
    "resolved",
    "inProgress",
    "redirected",
    "unknownFutureValue",
    "awaitingAction",
)
V2_SERVICE_SOURCES = (
    "unknown",
    "microsoftDefenderForEndpoint",
    "microsoftDefenderForIdentity",
    "microsoftDefenderForCloudApps",
    "microsoftDefenderForOffice365",
    "microsoft365Defender",
    "azureAdIdentityProtection",
    "microsoftAppGovernance",
    "dataLossPrevention",
    "unknownFutureValue",
    "microsoftDefenderForCloud",
    "microsoftSentinel",
    "microsoftThreatIntelligence",
)
V2_DETECTION_SOURCES = (
    "unknown",
    "microsoftDefenderForEndpoint",
    "antivirus",
    "smartScreen",
    "customTi",
    "microsoftDefenderForOffice365",
    "automatedInvestigation",
    "microsoftThreatExperts",
    "customDetection",
    "microsoftDefenderForIdentity",
    "cloudAppSecurity",
    "microsoft365Defender",
    "azureAdIdentityProtection",
    "manual",
    "microsoftDataLossPrevention",
    "appGovernancePolicy",
    "appGovernanceDetection",
    "unknownFutureValue",
    "microsoftDefenderForCloud",
    "microsoftDefenderForIoT",
    "microsoftDefenderForServers",
    "microsoftDefenderForStorage",
    "microsoftDefenderForDNS",
    "microsoftDefenderForDatabases",
    "microsoftDefenderForContainers",
    "microsoftDefenderForNetwork",
    "microsoftDefenderForAppService",
    "microsoftDefenderForKeyVault",
    "microsoftDefenderForResourceManager",
    "microsoftDefenderForApiManagement",
    "microsoftSentinel",
    "nrtAlerts",
    "scheduledAlerts",
    "microsoftDefenderThreatIntelligenceAnalytics",
    "builtInMl",
)
# The alertDetermination table of security-alert.md (and the v1.0 SDK): `confirmedActivity`
# (the property's prose once said `confirmedUserActivity`; the member table never did).
V2_DETERMINATIONS = (
    "unknown",
    "apt",
    "malware",
    "securityPersonnel",
    "securityTesting",
    "unwantedSoftware",
    "other",
    "multiStagedAttack",
    "compromisedAccount",
    "phishing",
    "maliciousUserActivity",
    "notMalicious",
    "notEnoughDataToValidate",
    "confirmedActivity",
    "lineOfBusinessApplication",
    "unknownFutureValue",
)


def evolvable(members: tuple[str, ...]) -> frozenset[str]:
    """The members listed after `unknownFutureValue`: served only on request."""
    return frozenset(members[members.index("unknownFutureValue") + 1 :])


# Per entity: property -> its evolvable members.
V2_EVOLVABLE: dict[str, frozenset[str]] = {
    "serviceSource": evolvable(V2_SERVICE_SOURCES),
    "detectionSource": evolvable(V2_DETECTION_SOURCES),
}
INCIDENT_EVOLVABLE: dict[str, frozenset[str]] = {"status": evolvable(INCIDENT_STATUSES)}
PORTAL = "https://security.microsoft.com"

# Legacy providers: vendorInformation, then (title, category) pairs they raise.
LEGACY_PROVIDERS: dict[str, dict[str, Any]] = {
    "IPC": {
        "vendor": {
            "provider": "IPC",
            "providerVersion": "2.0",
            "subProvider": None,
            "vendor": "Microsoft",
        },
        "alerts": [
            ("Unfamiliar sign-in properties", "UnfamiliarLocation"),
            ("Atypical travel", "ImpossibleTravel"),
            ("Anonymous IP address", "AnonymousLogin"),
            ("Leaked credentials", "LeakedCredentials"),
        ],
    },
    "MCAS": {
        "vendor": {
            "provider": "MCAS",
            "providerVersion": None,
            "subProvider": None,
            "vendor": "Microsoft",
        },
        "alerts": [
            ("Impossible travel activity", "ImpossibleTravel"),
            ("Mass download by a single user", "MassDownload"),
            ("Suspicious inbox forwarding", "SuspiciousInboxForwarding"),
        ],
    },
    "Azure Advanced Threat Protection": {
        "vendor": {
            "provider": "Azure Advanced Threat Protection",
            "providerVersion": None,
            "subProvider": None,
            "vendor": "Microsoft",
        },
        "alerts": [
            ("Suspected DCSync attack (replication of directory services)", "CredentialAccess"),
            ("Suspected Brute Force attack (Kerberos, NTLM)", "CredentialAccess"),
            ("User and IP address reconnaissance (SMB)", "Discovery"),
        ],
    },
    "Azure Sentinel": {
        "vendor": {
            "provider": "Azure Sentinel",
            "providerVersion": "1.0",
            "subProvider": None,
            "vendor": "Microsoft",
        },
        "alerts": [
            ("Rare RDP Connections", "LateralMovement"),
            ("Multiple password reset by user", "CredentialAccess"),
        ],
    },
    "Microsoft Defender ATP": {
        "vendor": {
            "provider": "Microsoft Defender ATP",
            "providerVersion": None,
            "subProvider": "MicrosoftDefenderATP",
            "vendor": "Microsoft",
        },
        "alerts": [
            ("Suspicious PowerShell command line", "Execution"),
            ("Ransomware behavior detected in the file system", "Ransomware"),
        ],
    },
}

# alerts_v2 service sources: (id prefix, productName, detectionSource, titles, MITRE techniques)
V2_SOURCES: dict[str, tuple[str, str, str, tuple[str, ...], tuple[str, ...]]] = {
    "microsoftDefenderForEndpoint": (
        "da",
        "Microsoft Defender for Endpoint",
        "microsoftDefenderForEndpoint",
        ("Suspicious PowerShell command line", "Horizontal port scan initiated"),
        ("T1059.001", "T1046"),
    ),
    "microsoftDefenderForIdentity": (
        "aa",
        "Microsoft Defender for Identity",
        "microsoftDefenderForIdentity",
        (
            "Suspected DCSync attack (replication of directory services)",
            "Suspected Kerberos SPN exposure",
        ),
        ("T1003.006", "T1558.003"),
    ),
    "microsoftDefenderForCloudApps": (
        "ca",
        "Microsoft Defender for Cloud Apps",
        "cloudAppSecurity",
        ("Impossible travel activity", "Mass download by a single user"),
        ("T1078", "T1530"),
    ),
    "microsoftDefenderForOffice365": (
        "fa",
        "Microsoft Defender for Office 365",
        "microsoftDefenderForOffice365",
        (
            "Email messages containing malicious URL removed after delivery",
            "A potentially malicious URL click was detected",
        ),
        ("T1566.002",),
    ),
    "azureAdIdentityProtection": (
        "ad",
        "Microsoft Entra ID Protection",
        "azureAdIdentityProtection",
        ("Unfamiliar sign-in properties", "Anonymous IP address"),
        ("T1078.004",),
    ),
    "microsoftSentinel": (
        "sn",
        "Microsoft Sentinel",
        "microsoftSentinel",
        ("Rare RDP Connections", "Multiple password reset by user"),
        ("T1021.001", "T1098"),
    ),
}

_FIRST = ("adele", "alex", "diego", "grady", "isaiah", "johanna", "lidia", "megan", "nestor")
_LAST = ("vance", "wilber", "siciliani", "archie", "langer", "lauer", "holloway", "bowen")


class PayloadFactory:
    """Makes payloads; all randomness comes from one seeded `random.Random`."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - reproducible test data, not security
        self._incident_number = 10_000

    def guid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _user(self, domain: str) -> tuple[str, str, str]:
        first, last = self.rng.choice(_FIRST), self.rng.choice(_LAST)
        return f"{first}.{last}@{domain}", f"{first.title()} {last.title()}", self.guid()

    def _ip(self) -> str:
        return (
            f"{self.rng.randint(20, 220)}.{self.rng.randint(0, 255)}."
            f"{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}"
        )

    def _host(self) -> str:
        return f"wks-{self.rng.randint(100, 999)}"

    # Legacy alerts (microsoft.graph.alert)

    def legacy_alert(
        self,
        tenant_id: str,
        domain: str,
        now: dt.datetime,
        provider: str | None = None,
        severity: str | None = None,
    ) -> dict[str, Any]:
        provider = provider or self.rng.choice(sorted(LEGACY_PROVIDERS))
        if provider not in LEGACY_PROVIDERS:
            raise ValueError(
                f"unknown legacy provider {provider!r}; one of "
                f"{', '.join(sorted(LEGACY_PROVIDERS))}"
            )
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
        source = service_source or self.rng.choice(sorted(V2_SOURCES))
        if source not in V2_SOURCES:
            raise ValueError(
                f"unknown serviceSource {source!r}; one of {', '.join(sorted(V2_SOURCES))}"
            )
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
            "displayName": display_name
            or self.rng.choice(
                (
                    "Multi-stage incident involving Initial access & Execution on one endpoint",
                    "Suspicious sign-in activity involving one user",
                    "Credential access incident on multiple endpoints",
                )
            ),
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

    # Secure score

    def secure_scores(
        self,
        tenant_id: str,
        today: dt.datetime,
        days: int,
        drop_on_day: int | None = None,
        drop_by: float = 15.0,
    ) -> list[dict[str, Any]]:
        """Daily snapshots, newest first; day 0 is today, `drop_on_day` N days ago drops.

        Control scores hold from day to day, as in a real tenant whose settings do not change;
        on the drop days the lost points come off the controls in order (the first control
        regresses first), so the drop shows in `controlScores` too.
        """
        max_score = 350.0
        score = 180.0 + self.rng.uniform(0, 40)
        shares = [self.rng.uniform(0.3, 1.0) for _ in SCORE_CONTROLS]
        snapshots: list[dict[str, Any]] = []
        midnight = today.replace(hour=0, minute=0, second=0, microsecond=0)
        for age in range(days - 1, -1, -1):
            score = min(max_score, score + self.rng.uniform(-1.0, 2.0))
            lost = drop_by if drop_on_day is not None and age <= drop_on_day else 0.0
            day = midnight - dt.timedelta(days=age)
            snapshots.append(
                self._snapshot(tenant_id, day, round(score - lost, 2), max_score, shares, lost)
            )
        snapshots.reverse()
        return snapshots

    def _snapshot(
        self,
        tenant_id: str,
        day: dt.datetime,
        score: float,
        max_score: float,
        shares: list[float],
        lost: float,
    ) -> dict[str, Any]:
        controls = []
        for (cat, name, top), share in zip(SCORE_CONTROLS, shares, strict=True):
            points = round(top * share, 2)
            cut = min(points, lost)
            lost -= cut
            controls.append((cat, name, round(points - cut, 2)))
        return {
            "id": f"{tenant_id}_{day:%Y-%m-%d}",
            "azureTenantId": tenant_id,
            "activeUserCount": 180 + self.rng.randint(0, 20),
            "createdDateTime": iso(day),
            "currentScore": score,
            "enabledServices": ["HasExchange", "HasSharePoint", "HasOD4B", "HasEOP", "HasMDO"],
            "licensedUserCount": 250,
            "maxScore": max_score,
            "vendorInformation": {
                "provider": "SecureScore",
                "providerVersion": None,
                "subProvider": None,
                "vendor": "Microsoft",
            },
            "averageComparativeScores": [
                {"basis": "AllTenants", "averageScore": 41.6},
                {
                    "basis": "TotalSeats",
                    "averageScore": 46.2,
                    "seatSizeRangeLowerValue": "100",
                    "seatSizeRangeUpperValue": "249",
                },
            ],
            "controlScores": [
                {
                    "controlCategory": cat,
                    "controlName": name,
                    "description": f"{name} control",
                    "score": points,
                    "scoreInPercentage": None,
                    "lastSynced": iso(day),
                    "implementationStatus": None,
                    "count": None,
                    "total": None,
                }
                for cat, name, points in controls
            ],
        }

    def control_profiles(self, tenant_id: str, now: dt.datetime) -> list[dict[str, Any]]:
        rows = [
            (
                "AdminMFAV2",
                "Identity",
                "Ensure multifactor authentication is enabled for all "
                "users in administrative roles",
                "AzureAD",
                10.0,
            ),
            (
                "MFARegistrationV2",
                "Identity",
                "Ensure all users can complete multifactor authentication",
                "AzureAD",
                9.0,
            ),
            (
                "BlockLegacyAuthentication",
                "Identity",
                "Enable Conditional Access policies to block legacy authentication",
                "AzureAD",
                8.0,
            ),
            ("DLPEnabled", "Data", "Turn on data loss prevention policies", "SCC", 4.0),
            (
                "mdo_safelinksforOfficeApps",
                "Apps",
                "Ensure Safe Links for Office applications is enabled",
                "MDO",
                3.0,
            ),
        ]
        return [
            {
                "id": control,
                "azureTenantId": tenant_id,
                "actionType": "Config",
                "actionUrl": f"{PORTAL}/securescore?viewid=actions",
                "controlCategory": category,
                "title": title,
                "complianceInformation": [],
                "controlStateUpdates": [],
                "deprecated": False,
                "implementationCost": "Low",
                "lastModifiedDateTime": iso(now),
                "maxScore": top,
                "rank": rank,
                "remediation": f"Follow the guidance for {control}.",
                "remediationImpact": "Users will be prompted as configured.",
                "service": service,
                "threats": ["accountBreach"],
                "tier": "Core",
                "userImpact": "Low",
                "vendorInformation": {
                    "provider": "SecureScore",
                    "providerVersion": None,
                    "subProvider": None,
                    "vendor": "Microsoft",
                },
            }
            for rank, (control, category, title, service, top) in enumerate(rows, start=1)
        ]
