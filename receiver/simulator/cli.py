"""`receiver simulator` (and `python -m receiver.simulator`): serve the simulator over HTTPS."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from receiver.simulator.config import (
    DEFAULT_HANDSHAKE_TIMEOUT_S,
    LEGACY_ALERTS_MODES,
    LEGACY_ALERTS_RETIRED_AT,
    SimulatorConfig,
)
from receiver.simulator.state import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID

GC_FREEZE_EVERY_S = 1.0  # a simulator process of its own: see app.keep_out_of_gc


def _default_tls_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "receiver-simulator"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8443, help="HTTPS port (default 8443)")
    parser.add_argument(
        "--ca-out",
        metavar="PATH",
        type=Path,
        default=None,
        help="write the test CA bundle (PEM) here for clients to verify with",
    )
    parser.add_argument(
        "--tls-dir",
        metavar="DIR",
        type=Path,
        default=None,
        help="keep the CA, server certificate and token signing key here, so "
        "restarts keep them (default: $XDG_CACHE_HOME/receiver-simulator)",
    )
    parser.add_argument(
        "--seed",
        metavar="FILE",
        type=Path,
        default=None,
        help="YAML/JSON file of tenants and apps (default: one demo tenant)",
    )
    parser.add_argument(
        "--allow-http",
        action="store_true",
        help="accept http:// notification URLs (loopback testing)",
    )
    parser.add_argument(
        "--no-throttle", action="store_true", help="turn off the per-app request limits (429)"
    )
    parser.add_argument(
        "--handshake-timeout",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_HANDSHAKE_TIMEOUT_S,
        help="validation handshake timeout (Graph: 10 s)",
    )
    parser.add_argument(
        "--notifier-backoff",
        metavar="SECONDS",
        type=float,
        default=2.0,
        help="first retry delay for failed notifications (doubles each time)",
    )
    parser.add_argument(
        "--control-token", default=None, help="require this bearer token on the /_sim control API"
    )
    parser.add_argument(
        "--random-seed",
        type=int,
        default=20260101,
        help="seed for generated alerts (same seed, same alerts)",
    )
    parser.add_argument(
        "--legacy-alerts",
        choices=LEGACY_ALERTS_MODES,
        default="auto",
        help="the legacy /security/alerts API: live, retired (empty lists, 404, silent "
        f"subscriptions, as Graph since {LEGACY_ALERTS_RETIRED_AT:%Y-%m-%d}) or auto "
        "(retired from that date on the simulator's clock; default)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )


def build_config(args: argparse.Namespace, tls_dir: Path) -> SimulatorConfig:
    from receiver.simulator.seed import load_seed

    return SimulatorConfig(
        tenants=load_seed(args.seed) if args.seed else None,
        allow_http=args.allow_http,
        handshake_timeout_s=args.handshake_timeout,
        throttle=not args.no_throttle,
        notifier_backoff_base_s=args.notifier_backoff,
        control_token=args.control_token,
        random_seed=args.random_seed,
        legacy_alerts=args.legacy_alerts,
        gc_freeze_every_s=GC_FREEZE_EVERY_S,
        signing_key_path=tls_dir / "token-signing-key.pem",
    )


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from receiver.simulator.app import create_app
    from receiver.simulator.seed import SeedError
    from receiver.simulator.server import GRACEFUL_SHUTDOWN_S, SimulatorServer
    from receiver.simulator.tls import ensure_tls, write_ca_bundle

    tls_dir: Path = args.tls_dir or _default_tls_dir()
    try:
        config = build_config(args, tls_dir)
    except (OSError, SeedError) as exc:
        print(f"receiver simulator: {exc}", file=sys.stderr)
        return 2
    files = ensure_tls(tls_dir)
    ca_path = write_ca_bundle(files, args.ca_out) if args.ca_out else files.ca_path
    host = f"[{args.host}]" if ":" in args.host else args.host
    base = f"https://{host}:{args.port}"
    print(f"Graph + Entra ID simulator on {base}")
    print(f"  Graph:      {base}/v1.0  (and {base}/beta)")
    print(f"  CA bundle:  {ca_path}")
    print(f"  Control:    {base}/_sim/  (see docs/SIMULATOR.md)")
    print(f"  Legacy /security/alerts: {config.legacy_alerts}")
    if config.tenants is None:
        print("  Demo tenant (SIMULATOR-ONLY credentials, not a real secret):")
        print(f"    tenant id:     {DEMO_TENANT_ID}")
        print(f"    authority:     {base}/{DEMO_TENANT_ID}")
        print(f"    client id:     {DEMO_CLIENT_ID}")
        print(f"    client secret: {DEMO_CLIENT_SECRET}")
    else:
        print(f"  Tenants from {args.seed}: {len(config.tenants)}")
    sys.stdout.flush()
    server = SimulatorServer(
        uvicorn.Config(
            create_app(config),
            ssl_certfile=str(files.cert_path),
            ssl_keyfile=str(files.key_path),
            log_level=args.log_level,
            ws="none",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
    )
    server.run(sockets=[listen_socket(args.host, args.port)])
    return 0


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket with TCP_NODELAY, which accepted connections inherit.

    Without it, a response written in two TLS records waits for the client's delayed ACK
    (about 40 ms a request on Linux).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
