"""The sinks' loopback recording server and client pool, shared with tests/sinks."""

from tests.sinks.conftest import pool, server

__all__ = ["pool", "server"]
