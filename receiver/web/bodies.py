"""The request body of a notification POST, read with a size limit and a deadline."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Receive

from receiver.web.deadlines import Deadlines

__all__ = ["BodyReads", "TooLarge", "read_body"]


class TooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes:
    """The request body, refused as soon as it passes ``limit`` (never read to the end)."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class BodyReads:
    """Cuts off request bodies that trickle in (slow-loris): a read past its deadline is
    cancelled by the sweep (:mod:`receiver.web.deadlines`) and ends in TimeoutError."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._deadlines = Deadlines(min(1.0, timeout_s / 2))
        self._expired: set[asyncio.Task[Any]] = set()

    async def read(self, receive: Receive, limit: int) -> bytes:
        task = asyncio.current_task()
        assert task is not None

        def expire() -> None:
            self._expired.add(task)
            task.cancel()

        self._deadlines.add(task, self.timeout_s, expire)
        try:
            return await read_body(receive, limit)
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            self._expired.discard(task)
            task.uncancel()
            raise TimeoutError from None
        finally:
            self._deadlines.remove(task)
