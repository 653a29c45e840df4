"""What the web role's endpoints share: the settings, Redis, the registry cache, the enqueuer,
the metrics and, when rich notifications are on, their keys."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from receiver.config.settings import Settings
from receiver.store.keys import Keys
from receiver.web.enqueue import Enqueuer
from receiver.web.metrics import WebMetrics
from receiver.web.registry_cache import RegistryCache
from receiver.web.rich import KeySet, ThrottledWarning

__all__ = ["RichConfig", "WebState"]

log = logging.getLogger("receiver.web.app")  # the web role's logger name, as before the split


@dataclass
class RichConfig:
    keys: KeySet
    private_keys: dict[str, rsa.RSAPrivateKey]
    app_ids: frozenset[str]
    require: bool


@dataclass
class WebState:
    settings: Settings
    keys: Keys
    redis: Redis
    cache: RegistryCache
    enqueuer: Enqueuer
    metrics: WebMetrics = field(default_factory=WebMetrics)
    rich: RichConfig | None = None
    http: httpx.AsyncClient | None = None
    app_id_by_tenant: dict[str, str] = field(default_factory=dict)
    # Refusals of rich content are logged at most once per interval each (forged traffic).
    token_log: ThrottledWarning = field(default_factory=lambda: ThrottledWarning(log))
    content_log: ThrottledWarning = field(default_factory=lambda: ThrottledWarning(log))
    # Registries of other roles in the same process (`receiver serve`), shown on /metrics.
    extra_registries: list[CollectorRegistry] = field(default_factory=list)
