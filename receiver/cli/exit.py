"""The exit codes of every `receiver` command, in one place so scripts and cron jobs can rely
on them: 0 done (or healthy), 1 the work failed or needs attention, 2 the command was used
wrongly (argparse exits 2 for bad options too, so a usage error means the same everywhere)."""

from __future__ import annotations

from typing import Final

__all__ = ["ERROR", "OK", "USAGE"]

OK: Final = 0
ERROR: Final = 1
USAGE: Final = 2
