"""Shared fixtures: a private real redis-server, settings factories, the Graph simulator."""

from __future__ import annotations

pytest_plugins = ["tests.fixtures.redis", "tests.fixtures.settings", "tests.fixtures.simulator"]
