"""`receiver demo`: the product's main job on one machine, with nothing to set up.

Starts, as child processes: a private Redis (unless REDIS_URL is set), the Graph simulator (as
Graph is today: the legacy alerts API retired) and `receiver serve` with a generated
configuration; in this process: a loopback "Teams" endpoint that records the Adaptive Cards the
Teams sink posts. What a tenant gets today comes first: incidents and their alerts_v2 alerts
from several services, polled every few seconds, one Teams card per incident. The push path is
shown too, labelled as such: the receiver's subscription on the legacy alerts API is created
(today's Graph creates it and then sends nothing), the simulator is switched to its `live`
legacy mode (Graph before 2026-10-15), and every fourth alert is a legacy one that reaches the
receiver by change notification. Ctrl-C, SIGTERM or the end of ``--duration`` stops everything.

Everything lives under the data directory (default ``.receiver/demo``): the Redis data (AOF),
the simulator's TLS files, the generated settings and routes, the logs of each process, the
JSON-lines sink file, ``teams-cards.jsonl`` and ``pids.json`` (the processes it started).

The parts: processes.py (the child processes: start, wait until ready, stop), previews.py
(the loopback Teams and Slack stand-ins), settings.py (the generated settings and routes),
stream.py (the alerts it creates and updates), session.py (one run, start to stop and its
summary). This module is the command: its options and its signal handling.

Only the standard library is imported at module level: ``receiver --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from receiver.cli.common import Subparsers, add_command
from receiver.cli.demo.session import Demo
from receiver.cli.exit import USAGE

DEFAULT_DATA_DIR = Path(".receiver") / "demo"


def register(subparsers: Subparsers) -> None:
    add_arguments(
        add_command(
            subparsers,
            "demo",
            "run the demo: private Redis, simulator, receiver and a stream of alerts",
            run,
        )
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        metavar="DIR",
        help=f"where the demo keeps Redis data, logs and sink files (default: {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--alerts",
        type=int,
        default=None,
        metavar="N",
        help="stop creating alerts after N (default: no limit)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop everything after this long (default: until Ctrl-C)",
    )
    parser.add_argument(
        "--rate", type=float, default=0.5, help="alerts created per second (default: 0.5)"
    )


@contextlib.contextmanager
def _signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop``; the previous handlers come back afterwards."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if not stop.is_set():
            print(f"\ndemo: {signal.Signals(signum).name}: stopping", file=sys.stderr, flush=True)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run(args: argparse.Namespace) -> int:
    if args.rate <= 0:
        print("receiver demo: --rate must be above 0", file=sys.stderr)
        return USAGE
    if args.alerts is not None and args.alerts < 0:
        print("receiver demo: --alerts must be 0 or more", file=sys.stderr)
        return USAGE
    if args.duration is not None and args.duration <= 0:
        print("receiver demo: --duration must be above 0", file=sys.stderr)
        return USAGE
    demo = Demo(Path(args.data_dir), args.rate, args.alerts)
    with _signals(demo.stop_event):
        return demo.run(args.duration)
