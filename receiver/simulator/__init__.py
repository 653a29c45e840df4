"""A Microsoft Graph and Entra ID stand-in (HTTPS) for tests, benchmarks and the demo.

It shares no code with the product beyond the CLI that starts it: the product talks to it
over HTTP only, as it would to Microsoft. Entry points: `create_app(SimulatorConfig)` and
`receiver simulator` / `python -m receiver.simulator`. See docs/SIMULATOR.md.
"""

from __future__ import annotations

from receiver.simulator.app import create_app
from receiver.simulator.config import AppSeed, SimulatorConfig, TenantSeed

__all__ = ["AppSeed", "SimulatorConfig", "TenantSeed", "create_app"]
