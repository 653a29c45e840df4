"""The Slack app's interactivity endpoint: where Slack posts a click on a triage button.

Slack gives an app 3 seconds to answer an interaction, and a Graph update (read, PATCH,
comment, read back) can take longer, so this endpoint only checks and queues:

1. the body is read (bounded in size and time);
2. Slack's signature is verified (:func:`verify`): ``v0=`` + HMAC-SHA256 of
   ``v0:{X-Slack-Request-Timestamp}:{raw body}`` with the app's signing secret, compared in
   constant time; the timestamp must be within ``max_skew_s`` (5 minutes) of our clock;
3. a signature already seen in that window is a replay and refused (``SET NX`` of its digest
   in Redis, kept a little longer than the window);
4. the payload must be a ``block_actions`` click on one of our buttons;
5. the click is added to the ``slack_interactions`` stream and answered 200 at once.

A worker consumes that stream (:mod:`receiver.actions.slack_worker`): it acts in Graph with
the same rules as the action links, audits, and the pipeline updates the message; a refusal
goes back to the person as an ephemeral message. A click queued when a worker dies stays
pending in the stream and another worker takes it over.

Refused requests are answered 401 (signature, timestamp, replay) or 400 (not a click of
ours), counted, and never audited: forged requests must not push real records out of the
capped audit stream. The signing secret never appears in logs, errors or metrics.

Served on the web role's port like the action endpoint (``receiver.cli`` puts it in front of
the web app; ``web/`` does not import it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from receiver.actions.body import BodyTooLarge, read_body
from receiver.actions.rules import ACTIONS, parse_button_value
from receiver.config.settings import Settings
from receiver.redaction import register
from receiver.store.keys import Keys

__all__ = ["MAX_BODY_BYTES", "SignatureError", "create_slack_app", "mount", "sign", "verify"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024  # a block_actions payload carries the whole message
STREAM_MAXLEN = 100_000
VERSION = "v0"


class SignatureError(Exception):
    """A request that is not Slack's, or not now. ``reason``: missing | malformed | stale |
    forged | replayed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """Slack's request signature: ``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    base = f"{VERSION}:{timestamp}:".encode() + body
    return f"{VERSION}=" + hmac.new(secret, base, hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float,
    max_skew_s: float = 300,
) -> None:
    """Return if the request is Slack's and fresh; SignatureError otherwise. Pure."""
    if not timestamp or not signature:
        raise SignatureError("missing")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError("malformed")
    if abs(now - int(timestamp)) > max_skew_s:
        raise SignatureError("stale")
    expected = sign(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise SignatureError("forged")


def _click(form: dict[str, list[str]]) -> dict[str, Any] | None:
    """The one button click of ours in a block_actions payload, as the worker needs it."""
    raw = form.get("payload", [""])[0]
    try:
        payload = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        return None
    actions = payload.get("actions")
    user = payload.get("user")
    if not isinstance(actions, list) or len(actions) != 1 or not isinstance(user, dict):
        return None
    action = actions[0]
    if not isinstance(action, dict) or action.get("action_id") not in ACTIONS:
        return None
    if parse_button_value(str(action.get("value") or "")) is None:
        return None
    channel = payload.get("channel") if isinstance(payload.get("channel"), dict) else {}
    message = payload.get("message") if isinstance(payload.get("message"), dict) else {}
    team = payload.get("team") if isinstance(payload.get("team"), dict) else {}
    return {
        "action": str(action["action_id"]),
        "value": str(action.get("value") or "")[:2000],
        "user_id": str(user.get("id") or "")[:32],
        "user_name": str(user.get("name") or user.get("username") or "")[:100],
        "team_id": str(user.get("team_id") or (team or {}).get("id") or "")[:32],
        "channel": str((channel or {}).get("id") or "")[:32],
        "message_ts": str((message or {}).get("ts") or "")[:32],
        "response_url": str(payload.get("response_url") or "")[:1000],
        "action_ts": str(action.get("action_ts") or "")[:32],
        "trigger_id": str(payload.get("trigger_id") or "")[:100],
    }


def create_slack_app(  # noqa: C901 - 11, older than the limit
    settings: Settings,
    *,
    redis: Redis,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The interactivity endpoint (POST ``settings.actions.slack.path``)."""
    config = settings.actions.slack
    assert config.signing_secret is not None
    secret = config.signing_secret.get_secret_value()
    register(secret)
    key = secret.encode()
    keys = Keys(settings.redis.key_prefix)
    outcomes = Counter(
        "receiver_slack_interactions",
        "Slack interactivity requests by outcome",
        ["outcome"],
        registry=registry,
    )
    timeout_s = settings.web.body_timeout_s

    def refuse(status: int, outcome: str, text: str) -> Response:
        outcomes.labels(outcome).inc()
        log.info("slack interaction refused: %s", outcome, extra={"reason": outcome})
        return JSONResponse({"ok": False, "error": text}, status_code=status)

    async def interact(request: Request) -> Response:
        try:
            body = await read_body(request, MAX_BODY_BYTES, timeout_s)
        except BodyTooLarge:
            return refuse(413, "too_large", "request too large")
        except TimeoutError:
            return refuse(408, "timeout", "request body too slow")
        timestamp = request.headers.get("x-slack-request-timestamp")
        signature = request.headers.get("x-slack-signature")
        try:
            verify(key, timestamp, signature, body, now=clock(), max_skew_s=config.max_skew_s)
        except SignatureError as exc:
            return refuse(401, exc.reason, "request not verified")
        assert signature is not None
        digest = hashlib.sha256(signature.encode()).hexdigest()[:32]
        try:
            fresh = await redis.set(
                keys.slack_seen(digest), "1", nx=True, ex=config.max_skew_s * 2 + 60
            )
        except (RedisError, OSError):
            return refuse(503, "store_down", "try again")
        if not fresh:
            return refuse(401, "replayed", "request not verified")
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            return refuse(400, "bad_payload", "not a form")
        click = _click(form)
        if click is None:
            return refuse(400, "not_ours", "not a click on a triage button")
        click["received_at"] = f"{clock():.3f}"
        try:
            await redis.xadd(
                keys.slack_interactions,
                click,  # type: ignore[arg-type]
                maxlen=STREAM_MAXLEN,
                approximate=True,
            )
        except (RedisError, OSError):
            return refuse(503, "store_down", "try again")
        outcomes.labels("queued").inc()
        return Response(status_code=200)

    return Starlette(routes=[Route(config.path, interact, methods=["POST"])])


def mount(
    inner: ASGIApp,
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    redis: Redis | None = None,
) -> ASGIApp:
    """``inner`` (the web app) with the interactivity endpoint in front. Without ``redis`` it
    makes its own and closes it when the web app shuts down."""
    from receiver.actions.app import WithActions
    from receiver.store.client import make_redis

    client = redis if redis is not None else make_redis(settings.redis)

    async def close() -> None:
        if redis is None:
            await client.aclose()

    app = create_slack_app(settings, redis=client, registry=registry)
    return WithActions(inner, app, settings.actions.slack.path, close)
