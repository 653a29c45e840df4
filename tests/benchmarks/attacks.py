"""The web role under issue 15's attacks (items 5-7), measured over real sockets.

``receiver web`` runs as a user starts it (a process, its own Redis), and this prints what
each attack costs: the status of a lone-surrogate notification, Redis reads for one 1 MiB body
of forged subscription ids, valid-post latency while four connections send such bodies, the
status of an 8 MiB header and of 20,000 headers, how long a trickled head holds a connection,
and how much three unfinished 40 MiB heads add to the process. ``--tree`` runs another
checkout's product (the code before a fix) against the same measurements.

    python -m tests.benchmarks.attacks [--tree PATH] [--flood-s 3]

The tests in tests/web/test_attacks.py use these helpers with bounds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from tests.fixtures.deploy import ROOT, Proc, role_command, write_config
from tests.fixtures.redis_server import free_port, private_redis
from tests.fixtures.settings import TENANT_ID, base_settings_data

PATH = "/webhooks/graph"
CLIENT_STATE = "state-0123456789"
READ_COMMANDS = ("hgetall", "get", "hget", "hmget", "exists", "mget", "scan", "smembers")


class Web:
    """``receiver web`` in a process of its own, from ``tree`` (default: this checkout)."""

    def __init__(self, redis_url: str, tree: Path = ROOT, **web: Any) -> None:
        self.port = free_port()
        data = base_settings_data()
        data["redis"]["url"] = redis_url
        data["web"].update(web)
        self._dir = tempfile.TemporaryDirectory(prefix="attacks-")
        folder = Path(self._dir.name)
        config = write_config(folder / "receiver.yaml", data)
        self.proc = Proc(
            "web",
            role_command("web", config, port=self.port),
            folder / "web.log",
            f"{self.url}/readyz",
            env={"PYTHONPATH": str(tree)},
            cwd=tree,
        )
        try:
            self.proc.start()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_kib(self) -> int:
        kib = self.proc.rss_kb()
        if not kib:
            raise RuntimeError("no VmRSS")
        return kib

    def stop(self) -> None:
        self.proc.stop()
        self._dir.cleanup()

    def connect(self, timeout_s: float = 10) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s)


@contextlib.contextmanager
def web(redis_url: str, tree: Path = ROOT, **settings: Any) -> Iterator[Web]:
    server = Web(redis_url, tree, **settings)
    try:
        yield server
    finally:
        server.stop()


def register(redis_url: str, prefix: str = "{test}") -> str:
    """A subscription in the registry as the supervisor writes it; its id."""
    import asyncio

    from redis.asyncio import Redis

    from receiver.store import registry
    from receiver.store.keys import Keys
    from receiver.store.registry import SubscriptionRecord

    record = SubscriptionRecord(
        str(uuid.uuid4()), TENANT_ID, "security/alerts_v2", CLIENT_STATE, 4_000_000_000.0
    )

    async def put() -> None:
        client = Redis.from_url(redis_url)
        try:
            await registry.put(client, Keys(prefix), record)
        finally:
            await client.aclose()

    asyncio.run(put())
    return record.subscription_id


def valid_body(subscription_id: str, alert_id: str = "alert-1") -> bytes:
    return json.dumps(
        {
            "value": [
                {
                    "subscriptionId": subscription_id,
                    "changeType": "updated",
                    "tenantId": TENANT_ID,
                    "clientState": CLIENT_STATE,
                    "resource": f"security/alerts_v2/{alert_id}",
                    "subscriptionExpirationDateTime": "2026-12-29T10:00:00Z",
                    "resourceData": {
                        "@odata.type": "#microsoft.graph.security.alert",
                        "id": alert_id,
                    },
                }
            ]
        },
    ).encode()


def forged_body(size: int = 1024 * 1024 - 1024) -> bytes:
    """About ``size`` bytes of items naming random (GUID-shaped) subscriptions."""
    items = []
    total = 20
    while total < size:
        item = json.dumps(
            {
                "subscriptionId": str(uuid.uuid4()),
                "tenantId": TENANT_ID,
                "clientState": "x",
                "changeType": "updated",
                "resource": "a/b",
            },
            separators=(",", ":"),
        )
        items.append(item)
        total += len(item) + 1
    return ('{"value":[' + ",".join(items) + "]}").encode()


def request(port: int, head: bytes, content: bytes = b"", timeout_s: float = 30) -> int | None:
    """One request on its own connection; the status, or None when closed without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(head + content)
        return read_status(s)


def read_status(s: socket.socket) -> int | None:
    data = b""
    while b"\r\n" not in data:
        try:
            chunk = s.recv(4096)
        except (ConnectionResetError, TimeoutError):
            return None
        if not chunk:
            return None
        data += chunk
    return int(data.split(b" ", 2)[1])


def post_head(length: int, path: str = PATH) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


def post(port: int, content: bytes) -> int | None:
    return request(port, post_head(len(content)), content)


def redis_reads(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in READ_COMMANDS)


def reads_per_forged_request(
    server: Web, client: redis.Redis, requests: int = 3
) -> tuple[float, int | None]:
    """Redis reads caused by one forged 1 MiB request, each naming new random ids (mean of
    ``requests``; the registry's background version check adds about one a second), and the
    status of the last."""
    bodies = [forged_body() for _ in range(requests)]
    client.config_resetstat()
    status = None
    for content in bodies:
        status = post(server.port, content)
    return redis_reads(client) / requests, status


def latency_under_flood(
    server: Web, subscription_id: str, forged: bytes, *, connections: int = 4, seconds: float = 3.0
) -> tuple[float, float, int]:
    """p50 and p99 (ms) of valid posts, one at a time, while ``connections`` threads send
    forged bodies back to back; and how many forged requests were sent."""
    stop = threading.Event()
    sent = [0]

    def flood() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                post(server.port, forged)
                sent[0] += 1

    threads = [threading.Thread(target=flood, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    latencies = []
    valid = valid_body(subscription_id)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            status = post(server.port, valid)
            latencies.append((time.perf_counter() - started) * 1000)
            assert status == 202, status
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return statistics.median(latencies), p99, sent[0]


def big_header(port: int, size: int = 8 * 1024 * 1024) -> int | None:
    head = (
        b"GET /healthz HTTP/1.1\r\nHost: receiver\r\nX-Big: "
        + b"a" * size
        + b"\r\nConnection: close\r\n\r\n"
    )
    return request(port, head)


def many_headers(port: int, count: int = 20_000) -> int | None:
    lines = b"".join(b"X-H%d: v\r\n" % i for i in range(count))
    return request(
        port, b"GET /healthz HTTP/1.1\r\nHost: receiver\r\n" + lines + b"Connection: close\r\n\r\n"
    )


def trickled_head_held_s(
    port: int, cap_s: float = 30.0, every_s: float = 0.5
) -> tuple[float, int | None]:
    """Send a head one byte every ``every_s``: seconds until the server closed (cap_s when it
    never did) and the status it answered with, if any."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=every_s) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: receiver\r\nX-Slow: ")
        while time.monotonic() - started < cap_s:
            try:
                data = s.recv(4096)
            except TimeoutError:
                try:
                    s.sendall(b"a")
                except (BrokenPipeError, ConnectionResetError):
                    return time.monotonic() - started, None
                continue
            except ConnectionResetError:
                return time.monotonic() - started, None
            status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else None
            return time.monotonic() - started, status
    return cap_s, None


def unfinished_heads_rss_kib(
    server: Web, connections: int = 3, size: int = 40 * 1024 * 1024
) -> int:
    """RSS growth of the web process while ``connections`` send ``size`` bytes of one header
    that never ends (what the server accepted of it; it may close early)."""
    before = server.rss_kib()
    socks = []
    chunk = b"a" * (256 * 1024)

    def send(s: socket.socket) -> None:
        with contextlib.suppress(OSError):
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: receiver\r\nX-Big: ")
            for _ in range(size // len(chunk)):
                s.sendall(chunk)

    threads = []
    for _ in range(connections):
        s = server.connect(timeout_s=20)
        socks.append(s)
        threads.append(threading.Thread(target=send, args=(s,), daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    time.sleep(0.5)
    peak = server.rss_kib()
    for s in socks:
        s.close()
    return peak - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=ROOT)
    parser.add_argument("--flood-s", type=float, default=3.0)
    args = parser.parse_args()
    with private_redis() as server_redis, server_redis.client() as client:
        sid = register(server_redis.url)
        with web(server_redis.url, args.tree) as server:
            surrogate = b'{"value":[{"subscriptionId":"\\ud800","tenantId":"x","clientState":"y"}]}'
            print(f"surrogate_status={post(server.port, surrogate)}")
            forged = forged_body()
            reads, status = reads_per_forged_request(server, client)
            print(
                f"forged_1MiB_items={forged.count(b'subscriptionId')} status={status} "
                f"redis_reads_per_request={reads:.0f}"
            )
            p50, p99, sent = latency_under_flood(server, sid, forged, seconds=args.flood_s)
            print(
                f"valid_post_under_flood p50_ms={p50:.1f} p99_ms={p99:.1f} forged_requests={sent}"
            )
            calm50, calm99, _ = latency_under_flood(server, sid, forged, connections=0, seconds=1)
            print(f"valid_post_calm p50_ms={calm50:.1f} p99_ms={calm99:.1f}")
            print(f"header_8MiB_status={big_header(server.port)}")
            print(f"headers_20000_status={many_headers(server.port)}")
            held, status = trickled_head_held_s(server.port)
            print(f"trickled_head_held_s={held:.1f} status={status}")
            print(f"rss_growth_3x40MiB_unfinished_heads_kib={unfinished_heads_rss_kib(server)}")


if __name__ == "__main__":
    main()
