"""The live side of `receiver tenants check`: ask Entra for a token, read one item per
configured feature from Graph, and call the public notification URL like Graph does.

Per tenant, in order: credentials (the product's own token path: MSAL, secret or
certificate), permissions (the token's roles against what the features need; pure logic in
``receiver.graph.check``), one ``$top=1`` GET per polled or watched API, and, only when the
tenant has a subscription, the push endpoint: https, resolves, answers the validation handshake
at its public address. `receiver tenants check` (``receiver.cli.tenants``) runs it all;
``serve`` and ``scheduler`` run the short form at start (no push probe: their own web may not
listen yet) and log one warning per tenant that cannot work. Every result is kept in Redis
(``Keys.tenant_checks``) for the status page.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
import uuid
from collections.abc import Sequence
from urllib.parse import quote, urlsplit

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError

from receiver import clock
from receiver.config.settings import (
    LEGACY_ALERTS_RETIRED,
    GraphSettings,
    Settings,
    TenantSettings,
    is_legacy_alerts,
)
from receiver.graph.auth import GraphAuthError, TokenProvider
from receiver.graph.check import (
    TenantReport,
    Verdict,
    consent_fix,
    credential_failure,
    credential_ok,
    needs,
    permission_verdict,
    token_claims,
)
from receiver.graph.client import GraphClient, GraphError
from receiver.store.keys import Keys

__all__ = ["probe_endpoint", "record", "run", "startup_check"]

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0  # Graph waits this long for the validation answer
RESOLVE_TIMEOUT_S = 5.0
# The reads of the check: one small page per feature, path -> (label, the need's feature).
READS = (
    ("alerts_v2", "security/alerts_v2", "poll alerts_v2"),
    ("incidents", "security/incidents", "poll incidents"),
    ("secureScores", "security/secureScores", "Secure Score"),
)


def _wanted_reads(tenant: TenantSettings) -> list[tuple[str, str, str]]:
    on = {
        "alerts_v2": tenant.poll.alerts_v2,
        "incidents": tenant.poll.incidents,
        "secureScores": tenant.secure_score.enabled,
    }
    return [r for r in READS if on[r[0]]]


async def _tenant_exists(graph: GraphSettings, tenant_id: str) -> bool | None:
    """False when Entra's discovery document for the tenant says it does not exist
    (AADSTS90002), True when it is served, None when it could not be asked."""
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=str(graph.ca_bundle)) if graph.ca_bundle else True
    )
    url = f"{graph.authority_host.rstrip('/')}/{tenant_id}/v2.0/.well-known/openid-configuration"
    try:
        async with httpx.AsyncClient(
            verify=verify, trust_env=False, timeout=graph.timeout_s
        ) as http:
            response = await http.get(url)
    except httpx.HTTPError:
        return None
    if response.status_code == 200:
        return True
    try:
        body = response.json()
    except ValueError:
        return None
    codes = body.get("error_codes") if isinstance(body, dict) else None
    return False if (isinstance(codes, list) and 90002 in codes) else None


async def _credentials(
    graph: GraphClient, tenant: TenantSettings
) -> tuple[Verdict, dict[str, object] | None]:
    try:
        token = await graph.tokens.token(tenant.tenant_id)
    except GraphAuthError as exc:
        message = str(exc).split("): ", 1)[-1]
        found = None
        if not exc.codes and "cannot set up the MSAL client" in message:
            found = await _tenant_exists(graph.settings, tenant.tenant_id)
        return credential_failure(message, exc.codes, tenant_found=found), None
    claims = token_claims(token)
    return credential_ok(claims), claims


async def _read(
    graph: GraphClient, tenant: TenantSettings, label: str, path: str, feature: str, add: str
) -> Verdict:
    what = f"GET {path}?$top=1"
    try:
        page = await graph.get(tenant.tenant_id, path, params={"$top": "1"})
    except GraphAuthError as exc:
        return Verdict(label, "fail", f"{what}: no token ({exc})", "Fix the credentials first.")
    except GraphError as exc:
        if exc.status == 0:
            return Verdict(
                label,
                "fail",
                f"{what}: Graph unreachable ({exc.code})",
                "Allow outbound HTTPS to the Graph host (proxy, firewall) and run the check again.",
            )
        detail = f"{what}: {exc.status} {exc.code}: {exc.message}"
        if exc.status == 403:
            return Verdict(label, "fail", detail, consent_fix([add]))
        if exc.status == 401:
            return Verdict(
                label,
                "fail",
                detail,
                "Graph refused the token: check that "
                "graph.graph_url and graph.authority_host belong to the same cloud.",
            )
        return Verdict(
            label,
            "fail",
            detail,
            f"Graph refused the read of {feature}; its "
            "message says why: fix that and run the check again.",
        )
    items = page.get("value")
    count = len(items) if isinstance(items, list) else 0
    return Verdict(label, "ok", f"{what}: 200 ({count} item{'' if count == 1 else 's'})")


async def _resolves(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
    )
    return sorted({str(info[4][0]) for info in infos})


async def probe_endpoint(
    url: str, *, allow_http: bool, http: httpx.AsyncClient, check: str = "push"
) -> Verdict:
    """Graph's view of a notification URL: https, a name that resolves, and the validation
    handshake (POST ?validationToken=..., 200 with the token as the body) within 10 s."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    notes: list[str] = []
    if parts.scheme != "https":
        if not allow_http:
            return Verdict(
                check,
                "fail",
                f"{url}: not https; Graph only posts to HTTPS",
                "Put the receiver behind an HTTPS ingress or load balancer with a "
                "publicly trusted certificate and set web.public_url to it.",
            )
        notes.append("http (allowed by web.allow_http: the simulator only; Graph needs https)")
    try:
        addresses = await _resolves(host, parts.port or (443 if parts.scheme == "https" else 80))
    except (OSError, TimeoutError):
        return Verdict(
            check,
            "fail",
            f"{url}: the name {host} does not resolve",
            f"Publish a DNS record for {host} pointing at your ingress or load balancer.",
        )
    notes.append(f"{host} resolves to {', '.join(addresses[:3])}")
    token = (
        "Validation: Testing client application reachability for subscription "
        f"Request-Id: {uuid.uuid4()}"
    )
    separator = "&" if parts.query else "?"
    target = f"{url}{separator}validationToken={quote(token, safe='')}"
    started = time.monotonic()
    try:
        response = await http.post(
            target,
            content=b"",
            timeout=HANDSHAKE_TIMEOUT_S,
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
    except httpx.TimeoutException:
        return Verdict(
            check,
            "fail",
            f"{url}: no answer to the validation handshake within {HANDSHAKE_TIMEOUT_S:g} s",
            "Check that the ingress forwards to a "
            "running `receiver web` (or serve) and that nothing holds the request.",
        )
    except httpx.ConnectError as exc:
        if isinstance(exc.__cause__, ssl.SSLError) or "CERTIFICATE" in str(exc).upper():
            return Verdict(
                check,
                "fail",
                f"{url}: its TLS certificate is not trusted",
                f"Serve {host} with a certificate from a public CA (Graph trusts "
                "no private CA) that names the host.",
            )
        return Verdict(
            check,
            "fail",
            f"{url}: connection failed ({type(exc).__name__})",
            "Start `receiver serve` (or web) and check that the ingress forwards "
            f"{host} to it, then run the check again.",
        )
    except httpx.HTTPError as exc:
        return Verdict(
            check,
            "fail",
            f"{url}: {type(exc).__name__}",
            "Check that the ingress forwards to a running `receiver web`.",
        )
    elapsed_ms = (time.monotonic() - started) * 1000
    if response.status_code != 200:
        return Verdict(
            check,
            "fail",
            f"{url}: the validation handshake got {response.status_code} instead of 200",
            f"Route POST {parts.path or '/'} to the receiver's web role, unchanged.",
        )
    if response.text != token:
        return Verdict(
            check,
            "fail",
            f"{url}: answered 200, but not with the validation token",
            "Route the path to the receiver's web role, which echoes the "
            "token; a proxy must not rewrite the answer.",
        )
    notes.append(f"answered the validation handshake in {elapsed_ms:.0f} ms")
    return Verdict(
        check,
        "warn" if parts.scheme != "https" else "ok",
        "; ".join(notes),
        "Use an https public_url for a real tenant." if parts.scheme != "https" else "",
    )


async def _push(
    settings: Settings, tenant: TenantSettings, http: httpx.AsyncClient, cache: dict[str, Verdict]
) -> list[Verdict]:
    out = []
    urls: list[tuple[str, str]] = []
    for spec in tenant.subscriptions:
        if is_legacy_alerts(spec.resource) and clock.now() >= LEGACY_ALERTS_RETIRED:
            out.append(
                Verdict(
                    "legacy",
                    "warn",
                    f"{spec.resource}: Graph retired the legacy "
                    "security/alerts API on 2026-10-15; the subscription is "
                    "created but delivers nothing",
                    "Poll alerts_v2 and incidents (poll.alerts_v2, poll.incidents) instead.",
                )
            )
        for check, url in (
            ("push", spec.notification_url or settings.web.notification_url),
            ("lifecycle", spec.lifecycle_url or settings.web.lifecycle_url),
        ):
            if (check, url) not in urls:
                urls.append((check, url))
    for check, url in urls:
        if url not in cache:
            cache[url] = await probe_endpoint(
                url, allow_http=settings.web.allow_http, http=http, check=check
            )
        out.append(cache[url])
    return out


async def check_tenant(
    settings: Settings,
    tenant: TenantSettings,
    graph: GraphClient,
    *,
    http: httpx.AsyncClient | None,
    cache: dict[str, Verdict],
) -> TenantReport:
    """Every verdict for one tenant; ``http`` None: no push probe (the short form)."""
    report = TenantReport(tenant.name, tenant.tenant_id, at=time.time())
    wanted, unknown = needs(settings, tenant)
    verdict, claims = await _credentials(graph, tenant)
    report.verdicts.append(verdict)
    reads = _wanted_reads(tenant)
    if claims is None:
        report.verdicts.append(Verdict("permissions", "skip", "no token to read the roles of"))
        report.verdicts += [Verdict(label, "skip", "no token") for label, _, _ in reads]
    else:
        raw = claims.get("roles")
        roles = [str(r) for r in raw] if isinstance(raw, list) else []
        report.verdicts += permission_verdict(wanted, unknown, roles)
        add = {n.feature: n.add for n in wanted}
        for label, path, feature in reads:
            report.verdicts.append(
                await _read(graph, tenant, label, path, feature, add.get(feature, ""))
            )
    if http is not None and tenant.subscriptions:
        report.verdicts += await _push(settings, tenant, http, cache)
    elif http is not None:
        report.verdicts.append(
            Verdict(
                "push", "skip", "no subscription configured (alerts_v2 and incidents are polled)"
            )
        )
    return report


def _check_client(settings: Settings) -> GraphClient:
    """A Graph client for the command: few retries, so a check answers in seconds."""
    graph = settings.graph.model_copy(update={"max_retries": 1, "max_retry_wait_s": 5.0})
    return GraphClient(graph, TokenProvider(graph, settings.tenants))


async def run(
    settings: Settings,
    tenants: Sequence[TenantSettings],
    *,
    graph: GraphClient | None = None,
    push: bool = True,
) -> list[TenantReport]:
    """Check ``tenants`` (several at once, up to graph.tenant_concurrency), in their order."""
    own = graph is None
    client = graph if graph is not None else _check_client(settings)
    http = httpx.AsyncClient(trust_env=False, follow_redirects=False) if push else None
    cache: dict[str, Verdict] = {}
    gate = asyncio.Semaphore(settings.graph.tenant_concurrency)

    async def one(tenant: TenantSettings) -> TenantReport:
        async with gate:
            return await check_tenant(settings, tenant, client, http=http, cache=cache)

    try:
        if push:  # one handshake per URL, however many tenants share it: not concurrently
            return [await one(t) for t in tenants]
        return list(await asyncio.gather(*(one(t) for t in tenants)))
    finally:
        if http is not None:
            await http.aclose()
        if own:
            await client.aclose()


async def record(redis: Redis, keys: Keys, reports: Sequence[TenantReport], source: str) -> None:
    """Keep each tenant's result for the status page (one hash field per tenant)."""
    if not reports:
        return
    await redis.hset(
        keys.tenant_checks,
        mapping={r.tenant_id: json.dumps({**r.to_dict(), "source": source}) for r in reports},
    )


async def startup_check(settings: Settings, redis: Redis, graph: GraphClient, role: str) -> None:
    """The short form at start of ``serve`` and ``scheduler``: one warning per tenant that
    cannot work, the results on the status page. Never raises: a role starts regardless."""
    try:
        reports = await run(settings, settings.tenants, graph=graph, push=False)
    except Exception as exc:  # the check must never stop a role
        log.warning("tenant check at start failed: %s: %s", type(exc).__name__, exc)
        return
    for report in reports:
        if not report.ok:
            first = report.failures[0]
            log.warning(
                "tenant %s cannot work: %s: %s. Fix: %s (all problems: receiver tenants check %s)",
                report.name,
                first.check,
                first.detail,
                first.fix,
                report.name,
                extra={"tenant_id": report.tenant_id},
            )
    try:
        await record(redis, Keys(settings.redis.key_prefix), reports, role)
    except (RedisError, OSError) as exc:
        log.warning("tenant check at start: not recorded (Redis: %s)", type(exc).__name__)
