"""What a stage's handler is given and what it may raise (arq's job and its outcomes).

- :class:`Entry`: one stream entry being handled, with its attempt number and the (stream,
  group) it came from, so a handler can acknowledge it inside its own write.
- :class:`Retry`: try the entry again later; :class:`Poison`: it can never be handled.
- :class:`ConsumerConfig`: how a :class:`~receiver.pipeline.consumer.Consumer` reads.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from redis.asyncio.client import Pipeline

from receiver.store.entries import FIELD as PAYLOAD_FIELD

ATTEMPT_FIELD = "n"  # attempts made before this delivery of the entry (set by Retry)


class Retry(Exception):
    """Raised by a handler: try this entry again in ``delay_s`` seconds."""

    def __init__(self, delay_s: float, reason: str = "") -> None:
        super().__init__(reason or f"retry in {delay_s:g}s")
        self.delay_s = max(0.0, delay_s)
        self.reason = reason


class Poison(Exception):
    """Raised by a handler: this entry can never be handled (malformed, unknown tenant);
    it goes to the poison stream at once, without further attempts."""


_PAYLOAD = PAYLOAD_FIELD.encode()


@dataclass(slots=True)
class Entry:
    id: str
    fields: dict[bytes, bytes]
    attempt: int  # 1 for the first attempt
    # (stream, group) it was read from; a handler may acknowledge it in its own write
    source: tuple[str, str] | None = None
    acked: bool = False

    @property
    def value(self) -> bytes:
        """The entry's payload field (``e``)."""
        return self.fields.get(_PAYLOAD, b"")

    def ack_with(self, pipe: Pipeline) -> None:
        """Queue this entry's acknowledgement on the handler's own transaction, so handing
        it on and acknowledging it happen together (no duplicate after a crash between the
        two, and one round trip less). The consumer then does not acknowledge it again."""
        if self.source is None:
            return
        stream, group = self.source
        pipe.xack(stream, group, self.id)
        pipe.xdel(stream, self.id)
        self.acked = True

    def ack_script_args(self, placeholder: str) -> tuple[list[str], list[str]]:
        """(keys, args) for a Lua script that acknowledges the entry itself: the source
        stream, then its group and the entry id. With nothing to acknowledge, the args are
        empty and ``placeholder`` (another key of the script, so a cluster sees one slot)
        stands in for the stream."""
        if self.source is None:
            return [placeholder], ["", ""]
        self.acked = True
        return [self.source[0]], [self.source[1], self.id]


Handler = Callable[[Entry], Awaitable[None]]


@dataclass
class ConsumerConfig:
    stream: str
    group: str
    consumer: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    concurrency: int = 16
    batch: int = 64
    block_ms: int = 1000
    visibility_timeout_s: float = 60.0
    max_attempts: int = 10
    health_ttl_s: int = 30
    drain_timeout_s: float = 30.0
    # How often due retries are moved back and stale entries claimed (not on every read:
    # at high rates that would double the round trips).
    sweep_interval_s: float = 1.0
