"""Console: one human-readable line per alert on stdout (the demo) or stderr."""

from __future__ import annotations

import sys

from receiver.config.sinks import TEMPLATE_NAMES, ConsoleSinkSettings
from receiver.envelope import Envelope
from receiver.sinks.base import BaseSink, Delivery, Result
from receiver.sinks.metrics import SinkMetrics
from receiver.sinks.templating import Templates, context


class ConsoleSink(BaseSink):
    type = "console"

    def __init__(self, config: ConsoleSinkSettings, *, metrics: SinkMetrics | None = None) -> None:
        super().__init__(config.name, metrics=metrics)
        self.config = config
        self.templates = Templates("console", TEMPLATE_NAMES["console"], config.templates)

    async def _send(self, envelope: Envelope, delivery: Delivery) -> Result:
        line = self.templates.render("line.txt", context(envelope, delivery, self.name))
        stream = sys.stdout if self.config.stream == "stdout" else sys.stderr
        stream.write(" ".join(line.split("\n")) + "\n")
        stream.flush()
        return Result(detail="printed")
