"""`python -m receiver.simulator`: the same as `receiver simulator`."""

from __future__ import annotations

import argparse
import sys

from receiver.simulator.cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m receiver.simulator",
        description="Microsoft Graph + Entra ID simulator (HTTPS) for tests and demos.",
    )
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
