"""`receiver simulator`: the Microsoft Graph / Entra ID stand-in over HTTPS, for tests,
benchmarks and trying the receiver without a tenant. Its options and its start live in
:mod:`receiver.simulator.cli` (the simulator shares no code with the product beyond the CLI
that starts it)."""

from __future__ import annotations

import argparse

from receiver.cli.common import Subparsers, add_command


def register(subparsers: Subparsers) -> None:
    from receiver.simulator import cli as simulator_cli

    simulator_cli.add_arguments(
        add_command(
            subparsers,
            "simulator",
            "run the Microsoft Graph / Entra ID simulator (HTTPS)",
            _cmd_simulator,
        )
    )


def _cmd_simulator(args: argparse.Namespace) -> int:
    from receiver.simulator import cli as simulator_cli

    return simulator_cli.run(args)
