"""The data behind the simulator's Graph security payloads: enum members, providers, service
sources, Secure Score controls and the names users get.

Shapes follow microsoft-graph-docs: legacy `alert` (vendorInformation per provider),
`microsoft.graph.security.alert` (alerts_v2, with evidence), `incident`, `secureScore` and
`secureScoreControlProfile`. The payloads are made from these tables with a seeded random
generator (alert_payloads.py, score_payloads.py): the same seed gives the same alerts.
"""

from __future__ import annotations

from typing import Any

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

FIRST_NAMES = ("adele", "alex", "diego", "grady", "isaiah", "johanna", "lidia", "megan", "nestor")
LAST_NAMES = ("vance", "wilber", "siciliani", "archie", "langer", "lauer", "holloway", "bowen")
INCIDENT_NAMES = (
    "Multi-stage incident involving Initial access & Execution on one endpoint",
    "Suspicious sign-in activity involving one user",
    "Credential access incident on multiple endpoints",
)

SECURE_SCORE_VENDOR: dict[str, Any] = {
    "provider": "SecureScore",
    "providerVersion": None,
    "subProvider": None,
    "vendor": "Microsoft",
}
# Secure Score control profiles: (control, category, title, service, maximum points), by rank.
CONTROL_PROFILES: tuple[tuple[str, str, str, str, float], ...] = (
    (
        "AdminMFAV2",
        "Identity",
        "Ensure multifactor authentication is enabled for all users in administrative roles",
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
)
