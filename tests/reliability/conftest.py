"""The Redis Cluster fixture for the tests in this folder."""

from __future__ import annotations

from tests.fixtures.redis_cluster import redis_cluster

__all__ = ["redis_cluster"]
