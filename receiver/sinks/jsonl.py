"""JSON lines: one envelope per line appended to a file, for a log shipper.

Writes are serialised per sink and each line is written with one ``write`` call on a file
opened for appending, so lines never interleave. ``fsync: true`` makes each line durable
before the delivery counts as done (slower; for when the file is the system of record).
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

from receiver.config.sinks import JsonlSinkSettings
from receiver.envelope import Envelope
from receiver.sinks.base import BaseSink, Delivery, PermanentError, Result, RetryableError
from receiver.sinks.metrics import SinkMetrics

# Errors an operator must fix; anything else (ENOSPC, EIO, ...) may pass.
_PERMANENT_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR, errno.ENAMETOOLONG}
)


class JsonlSink(BaseSink):
    type = "jsonl"

    def __init__(self, config: JsonlSinkSettings, *, metrics: SinkMetrics | None = None) -> None:
        super().__init__(config.name, metrics=metrics)
        self.path: Path = config.path
        self.fsync = config.fsync
        self._lock = asyncio.Lock()

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    async def _send(self, envelope: Envelope, delivery: Delivery) -> Result:
        line = (envelope.to_json() + "\n").encode()
        async with self._lock:
            try:
                await asyncio.to_thread(self._append, line)
            except OSError as exc:
                message = f"jsonl {self.path}: {exc.strerror or type(exc).__name__}"
                if exc.errno in _PERMANENT_ERRNOS:
                    raise PermanentError(message) from None
                raise RetryableError(message) from None
        return Result(detail=f"appended to {self.path.name}")
