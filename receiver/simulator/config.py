"""The simulator's settings: one frozen dataclass, built once and passed down."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HANDSHAKE_TIMEOUT_S = 10.0  # Graph's documented limit for the validation answer
# concepts/change-notifications-delivery-webhooks.md (Throttling): notifications are published
# with a 3-second client timeout (an answer not in by then failed and is retried); an answer
# over 2,900 ms is slow.
DEFAULT_NOTIFICATION_TIMEOUT_S = 3.0
DEFAULT_NOTIFIER_SLOW_S = 2.9
# concepts/alertsv1-alertsv2-migration.md (latest revision): the legacy alerts API is retired
# on 2026-10-15 and "stops returning data" (earlier revisions said 2026-08-31, April 2026).
LEGACY_ALERTS_RETIRED_AT = dt.datetime(2026, 10, 15, tzinfo=dt.UTC)
LEGACY_ALERTS_MODES = ("live", "retired", "auto")
DEFAULT_NOTIFIER_MAX_AGE_S = 4 * 3600.0  # Graph retries a notification for up to 4 hours
DEFAULT_SECURITY_REQUESTS_PER_MINUTE = 150  # per app per tenant on /security alert endpoints


@dataclass(frozen=True)
class AppSeed:
    """An app registration to create at start (client id, secret and/or certificate)."""

    client_id: str | None = None
    display_name: str = "Graph alert receiver"
    secret: str | None = None
    certificate_pem: str | None = None
    roles: tuple[str, ...] | None = None  # None: every role the simulator knows
    # The secret stops working at this moment of the virtual clock (AADSTS7000222); None: never.
    secret_expires_at: dt.datetime | None = None


@dataclass(frozen=True)
class TenantSeed:
    tenant_id: str | None = None
    display_name: str = "Contoso"
    domain: str | None = None
    apps: tuple[AppSeed, ...] = ()


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything `create_app` needs. Defaults match Graph; tests shorten the timeouts."""

    tenants: tuple[TenantSeed, ...] | None = None  # None: one demo tenant with a known app
    allow_http: bool = False  # accept http:// notification URLs (loopback tests)
    handshake_timeout_s: float = DEFAULT_HANDSHAKE_TIMEOUT_S
    notification_timeout_s: float = DEFAULT_NOTIFICATION_TIMEOUT_S
    throttle: bool = True
    security_requests_per_minute: int = DEFAULT_SECURITY_REQUESTS_PER_MINUTE
    secure_score_profile_requests_per_10_minutes: int = 10_000
    subscription_writes_per_20_s: int = 1_000
    notifier_backoff_base_s: float = 2.0
    notifier_backoff_max_s: float = 600.0
    notifier_max_age_s: float = DEFAULT_NOTIFIER_MAX_AGE_S
    notifier_batch_window_s: float = 0.05
    notifier_max_batch: int = 50
    notifier_verify: bool | str = True  # TLS verification of receivers (bool or CA bundle path)
    subscription_page_size: int = 100
    alert_page_size: int = 100
    random_seed: int = 20260101
    control_token: str | None = None
    signing_key_path: Path | None = None  # PEM; generated (and written here if set) if missing
    secure_score_days: int = 30
    # Legacy /security/alerts: "live" serves it, "retired" answers as Graph does since its
    # retirement (empty lists, 404 itemNotFound, subscriptions that never notify), "auto" is
    # live before `legacy_alerts_retired_at` on the virtual clock and retired from then on.
    legacy_alerts: str = "auto"
    legacy_alerts_retired_at: dt.datetime = LEGACY_ALERTS_RETIRED_AT
    # Webhook delivery throttling (concepts/change-notifications-delivery-webhooks.md): once an
    # endpoint has `notifier_flag_min_count` notifications counted in the current window, 10%
    # slow answers delay all its notifications by `notifier_slow_delay_s`, 15% drop them; the
    # counts are flushed every `notifier_count_window_s`. Real time; tests shrink them.
    notifier_slow_s: float = DEFAULT_NOTIFIER_SLOW_S
    notifier_flag_min_count: int = 100
    notifier_delay_ratio: float = 0.10
    notifier_drop_ratio: float = 0.15
    # A simulator process of its own (`receiver simulator`) keeps what it stores out of the
    # cyclic collector's sight (receiver.simulator.app.keep_out_of_gc); 0: not (an embedded
    # simulator shares its process with the tests).
    gc_freeze_every_s: float = 0.0
    notifier_slow_delay_s: float = 600.0
    notifier_count_window_s: float = 600.0

    def __post_init__(self) -> None:
        if self.legacy_alerts not in LEGACY_ALERTS_MODES:
            raise ValueError(
                f"legacy_alerts must be one of {', '.join(LEGACY_ALERTS_MODES)}, "
                f"not {self.legacy_alerts!r}"
            )
