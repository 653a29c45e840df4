"""Every Redis key and stream name, in one place.

All names start with one configurable prefix that carries a Redis Cluster hash tag (the part in
braces, e.g. ``{receiver}``), so every key of a deployment lives in one slot: pipelines and
multi-key scripts work on a cluster, and several deployments can share one Redis by using
different prefixes.

TTLs are set where the key is written; each name below says whether it has one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PREFIX = "{receiver}"

_HASH_TAG = re.compile(r"\{[^{}]+\}")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def validate_prefix(prefix: str) -> str | None:
    """Return why ``prefix`` is unusable, or None if it is fine."""
    if not prefix:
        return "must not be empty"
    match = re.search(r"\{[^}]*\}", prefix)
    if match is None or not _HASH_TAG.fullmatch(match.group()):
        return "must contain a Redis Cluster hash tag with a non-empty name, e.g. '{receiver}'"
    if any(c.isspace() for c in prefix):
        return "must not contain white space"
    return None


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"invalid {kind} name {name!r}: use letters, digits, '_', '-', '.'")
    return name


@dataclass(frozen=True, slots=True)
class Keys:
    """Key and stream names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        problem = validate_prefix(self.prefix)
        if problem:
            raise ValueError(f"key prefix {self.prefix!r} {problem}")

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # --- streams (no TTL; trimmed by MAXLEN/MINID where they are written) -----------------
    @property
    def notifications(self) -> str:
        """Validated Graph change notifications and poller items, for the fetch stage."""
        return self._k("stream", "notifications")

    @property
    def lifecycle(self) -> str:
        """Graph lifecycle events, for the subscription supervisor."""
        return self._k("stream", "lifecycle")

    @property
    def alerts(self) -> str:
        """Normalised alert envelopes, for the route stage."""
        return self._k("stream", "alerts")

    def sink(self, name: str) -> str:
        """Deliveries waiting for one sink."""
        return self._k("stream", "sink", _check_name("sink", name))

    def dlq(self, name: str) -> str:
        """Dead-lettered deliveries of one sink."""
        return self._k("stream", "dlq", _check_name("sink", name))

    @property
    def poison(self) -> str:
        """Stream entries that failed too often in a non-sink stage."""
        return self._k("stream", "poison")

    def delayed(self, stream: str) -> str:
        """Sorted set: entries of ``stream`` waiting for a retry, scored by due time (ms);
        moved back into the stream when due (no TTL)."""
        return f"{stream}:delayed"

    # --- subscription registry (no TTL; removed when the subscription is deleted) ---------
    def subscription(self, subscription_id: str) -> str:
        """Hash: tenant, resource, clientState, expiry of one subscription this deployment owns."""
        return self._k("sub", subscription_id)

    @property
    def subscriptions(self) -> str:
        """Sorted set: subscription id scored by expiry (epoch seconds)."""
        return self._k("subs")

    @property
    def subscriptions_version(self) -> str:
        """Counter: bumped on every registry write, so readers reload only on change."""
        return self._k("subs", "version")

    def subscription_touch(self, subscription_id: str) -> str:
        """Hash: the supervisor's last Graph write on a subscription: kind, at, fence
        (TTL: a day; it only has to outlive Graph's 10-minute reauthorize/renew rule)."""
        return self._k("sub", subscription_id, "touch")

    def reconciled(self, tenant_id: str) -> str:
        """String: when a reconcile last found the tenant's subscriptions healthy (ISO, no TTL)."""
        return self._k("reconciled", tenant_id)

    def attempts(self, stream: str) -> str:
        """Hash: stream entry id -> failed handling attempts (field removed on ack; no TTL)."""
        return self._k("attempts", _check_name("stream", stream))

    # --- pipeline state ------------------------------------------------------------------
    def dedup(self, tenant_id: str, alert_id: str) -> str:
        """String: last seen version of an alert (TTL: the dedup window)."""
        return self._k("dedup", tenant_id, alert_id)

    def alert_state(self, tenant_id: str, alert_id: str) -> str:
        """Hash: material fields of the last routed version (TTL: the dedup window)."""
        return self._k("alert", tenant_id, alert_id)

    def deliveries(self, tenant_id: str, alert_id: str) -> str:
        """List: delivery timeline of one alert (TTL: delivery record retention)."""
        return self._k("deliveries", tenant_id, alert_id)

    @property
    def recent_alerts(self) -> str:
        """Stream: the envelopes of the latest routed alerts, for the status page (no TTL;
        capped by MAXLEN where written)."""
        return self._k("stream", "recent")

    def action_link(self, nonce: str) -> str:
        """String: state of one action link once used (pending, then the audit record), set
        with NX so a link works once (TTL: until the link expires)."""
        return self._k("action", _check_name("nonce", nonce))

    def signin_flow(self, digest: str) -> str:
        """String: an Entra ID sign-in in progress at the action endpoint (MSAL's auth code
        flow and the link to return to), keyed by a hash of the flow cookie's value
        (TTL: 10 minutes; deleted when Entra redirects back)."""
        return self._k("signin", "flow", _check_name("flow", digest))

    def signin_session(self, digest: str) -> str:
        """String: a signed-in person at the action endpoint (name, UPN, oid, tid, groups,
        CSRF token), keyed by a hash of the session cookie's value, so a copy of Redis holds
        no usable session (TTL: actions.sign_in.session_ttl_s)."""
        return self._k("signin", "session", _check_name("session", digest))

    @property
    def actions_audit(self) -> str:
        """Stream: every triage action and alert update, who, what, when, Graph's answer
        (no TTL; capped by MAXLEN where written)."""
        return self._k("stream", "audit", "actions")

    def ticket(self, sink: str, tenant_id: str, alert_id: str) -> str:
        """String: the ticket/incident id a sink created for an alert (no TTL)."""
        return self._k("ticket", _check_name("sink", sink), tenant_id, alert_id)

    def ticket_lock(self, sink: str, tenant_id: str, alert_id: str) -> str:
        """String: the lock a ticket sink creates or updates an alert's ticket under
        (TTL: the lock's TTL; released only by its owner)."""
        return self.ticket(sink, tenant_id, alert_id) + ":lock"

    def slack_message(self, channel: str, tenant_id: str, alert_id: str) -> str:
        """String: the Slack app's parent message about an alert (or group) in a channel,
        JSON {channel id, ts, ...}; written before the delivery is acknowledged (no TTL)."""
        return self._k("slack", "msg", _check_name("channel", channel), tenant_id, alert_id)

    def slack_message_lock(self, channel: str, tenant_id: str, alert_id: str) -> str:
        """String: the lock a Slack app sink posts or updates an alert's message under
        (TTL: the lock's TTL; released only by its owner)."""
        return self.slack_message(channel, tenant_id, alert_id) + ":lock"

    @property
    def slack_interactions(self) -> str:
        """Stream: verified Slack button clicks, acted on by the workers (group ``slack``;
        no TTL, capped by MAXLEN where written)."""
        return self._k("stream", "slack", "interactions")

    def slack_seen(self, digest: str) -> str:
        """String: a Slack request signature already accepted, so a replay inside the 5-minute
        window is refused (TTL: a little over the window)."""
        return self._k("slack", "seen", _check_name("digest", digest))

    def slack_claim(self, tenant_id: str, alert_id: str, action: str, version: str) -> str:
        """String: a Slack button used, one per (alert, action, version): who claimed it and
        the outcome (TTL: days; the version moves on with every change)."""
        return self._k(
            "slack", "claim", tenant_id, alert_id, _check_name("action", action), version
        )

    def watermark(self, tenant_id: str, source: str) -> str:
        """String: the poller's lastUpdateDateTime watermark per tenant and source (no TTL)."""
        return self._k("watermark", tenant_id, source)

    @property
    def poll_jobs(self) -> str:
        """Stream: poll jobs (tenant, source, watermark) the scheduler's leader queues for
        the workers (group ``poll``); acknowledged entries are deleted."""
        return self._k("stream", "poll")

    def poll_job(self, tenant_id: str, source: str) -> str:
        """String: the stream id of the (tenant, source)'s outstanding poll job, written with
        the job and deleted with its acknowledgement; a job is queued only when this entry
        is gone from the stream (no TTL)."""
        return self._k("polljob", tenant_id, source)

    @property
    def push_seen(self) -> str:
        """Hash: subscription id -> when the fetch stage last handled a pushed notification of
        it (ms since the epoch; written at most once a minute per subscription; no TTL, a
        field per subscription, removed with the subscription's registry entry)."""
        return self._k("seen", "push")

    @property
    def poll_seen(self) -> str:
        """Hash: tenant id -> when the fetch stage last handled a change the poller found
        (ms since the epoch; at most once a minute per tenant; no TTL)."""
        return self._k("seen", "poll")

    # --- groups (routes with group_by): receiver.pipeline.grouping -------------------------
    @property
    def groups_due(self) -> str:
        """Sorted set: group id -> when its next message is due (ms since the epoch)."""
        return self._k("groups", "due")

    def group_members(self, gid: str) -> str:
        """Hash: alert key -> the member's latest envelope JSON (TTL: group retention)."""
        return self._k("group", gid, "members")

    def group_changed(self, gid: str) -> str:
        """Set: members new or changed since the group's last message (TTL as above)."""
        return self._k("group", gid, "changed")

    def group_meta(self, gid: str) -> str:
        """Hash: sink, route, labels, started, last_sent, version, sent (TTL as above)."""
        return self._k("group", gid, "meta")

    def secure_score(self, tenant_id: str) -> str:
        """Hash: the Secure Score watch's state per tenant: ``evaluated`` (the last score date
        checked, YYYY-MM-DD) and ``digest_week`` (the last digest's ISO week) (no TTL)."""
        return self._k("securescore", tenant_id)

    @property
    def tenant_checks(self) -> str:
        """Hash: tenant id -> that tenant's last `receiver tenants check` (JSON: name, ok, at,
        source, verdicts), written by the command and at start of serve and scheduler, shown
        on the status page (no TTL; one field per tenant, overwritten)."""
        return self._k("tenantchecks")

    @property
    def backfill_requests(self) -> str:
        """Stream: backfill requests from the supervisor to the poller."""
        return self._k("stream", "backfill")

    @property
    def silences(self) -> str:
        """Hash: silence id -> silence JSON (expired ones are pruned on read)."""
        return self._k("silences")

    # --- coordination --------------------------------------------------------------------
    @property
    def leader(self) -> str:
        """String: the scheduler lease holder (TTL: the lease time)."""
        return self._k("leader")

    @property
    def fencing(self) -> str:
        """Counter: fencing token, incremented on every lease acquisition (no TTL)."""
        return self._k("leader", "fencing")

    def rate_limit(self, tenant_id: str, bucket: str) -> str:
        """Sorted set or counter for the per-tenant Graph rate limiter (TTL: its window)."""
        return self._k("ratelimit", tenant_id, bucket)

    def health(self, role: str, instance: str) -> str:
        """String: heartbeat of one process (TTL: a few heartbeat intervals)."""
        return self._k("health", _check_name("role", role), instance)

    def counter(self, name: str) -> str:
        """Hash of counters shared by all processes (no TTL)."""
        return self._k("counters", _check_name("counter", name))
