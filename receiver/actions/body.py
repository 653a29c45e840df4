"""A request's body, read bounded in size and in the time it may take to arrive.

The action endpoint's confirmation form and Slack's interactivity posts are sent by the
public: neither may hold a worker with an endless or a slow body.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request

__all__ = ["BodyTooLarge", "read_body"]


class BodyTooLarge(Exception):
    """The body went past the limit (the rest was not read)."""


async def read_body(request: Request, max_bytes: int, timeout_s: float) -> bytes:
    """The whole body; :class:`BodyTooLarge` past ``max_bytes``, :class:`TimeoutError` when
    it takes longer than ``timeout_s`` to arrive."""
    body = b""
    async with asyncio.timeout(timeout_s):
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise BodyTooLarge
    return body
