"""``python -m tests.reliability --profile short|long [--out report.json] [--logs DIR]``

Starts Redis, the simulator, a load balancer, two ``web``, two ``worker`` and one
``scheduler``, drives alerts through the simulator's notifier, injects the profile's faults,
then checks every alert against every sink. Prints a summary; the last line is
``lost=<n> duplicated=<n> p99_ms=<v>``. Exit code 1 when an alert was lost, an idempotent
sink duplicated, the web's ack moved with a failing sink, RSS grew over 10% (long), or
something was left in a dead-letter or poison stream.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.reliability._profiles import PROFILES
from tests.reliability._run import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.reliability", description=(__doc__ or "").splitlines()[2]
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="short")
    parser.add_argument("--out", type=Path, help="also write the report as JSON here")
    parser.add_argument("--logs", type=Path, help="keep every process's log in this folder")
    args = parser.parse_args(argv)
    report = run(
        PROFILES[args.profile], log_dir=args.logs, progress=lambda text: print(text, flush=True)
    )
    if args.out:
        args.out.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    print(report.render(), flush=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
