"""The Slack Web API methods the Slack app sink calls (``chat.postMessage``, ``chat.update``,
``conversations.history``), on the sinks' shared httpx client.

Not slack-sdk's AsyncWebClient (which needs aiohttp, a second HTTP stack): a Web API method is a
JSON POST (or a GET with a query) with a bearer token, classified by the sinks' one retry
decision (:func:`receiver.sinks.http.classify`). Slack's answers on top of that: ``ok: false``
with a transient error -> RetryableError (Retry-After honoured); any other ``ok: false``
(``channel_not_found``, ``not_in_channel``, ``invalid_auth``) -> PermanentError.
"""

from __future__ import annotations

from typing import Any

from receiver.sinks import http
from receiver.sinks.base import PermanentError, RetryableError

__all__ = ["TRANSIENT", "SlackApi"]

# Slack errors worth trying again (api.slack.com/methods/chat.postMessage, "Errors").
TRANSIENT = frozenset(
    {
        "ratelimited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
    }
)


class SlackApi:
    """Calls Web API methods with the bot token on the shared httpx client."""

    def __init__(
        self, client: Any, base_url: str, token: str, *, timeout_s: float, what: str
    ) -> None:
        self._client = client
        self._base = base_url.rstrip("/") + "/"
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = timeout_s
        self._what = what

    async def call(
        self,
        method: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The method's answer (``ok: true``); RetryableError / PermanentError otherwise."""
        what = f"{self._what} {method}"
        verb, options = (
            ("GET", {"params": params}) if params is not None else ("POST", {"json": body})
        )
        response = await http.request(
            self._client,
            verb,
            self._base + method,
            what=what,
            timeout_s=self._timeout,
            headers=self._headers,
            **options,
        )
        data = http.json_object(response, what=what, retryable=True)
        if data.get("ok") is True:
            return data
        error = str(data.get("error") or "unknown_error")[:100]
        if error in TRANSIENT:
            retry_after = http.parse_retry_after(response.headers.get("retry-after"))
            raise RetryableError(
                f"{what}: Slack answered {error}",
                status=response.status_code,
                retry_after=retry_after,
            )
        raise PermanentError(f"{what}: Slack answered {error}", status=response.status_code)
