"""The long-running roles: `receiver web`, `worker`, `scheduler` and `serve` (all of them in
one process).

Every role starts the same way, written once in :func:`_start`: load the settings, set up
logging, log the configuration's warnings, tune the garbage collector, start the status page
(admin.port) beside the role, and turn a Redis outage or a refused setting into one line and
exit code 1. The asynchronous roles then share :func:`_connected` (Redis),
:func:`_stop_on_signals` (SIGINT/SIGTERM stop cleanly) and :func:`_serve_metrics`.

This is where roles meet: `web/` may not import the Graph client or the actions, so the web
app and the action endpoints are composed here (:func:`web_app`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from receiver.cli.common import (
    Subparsers,
    add_command,
    add_config_option,
    load_settings,
    redis_unavailable,
)
from receiver.cli.exit import ERROR, OK

if TYPE_CHECKING:
    import asyncio

    from prometheus_client import CollectorRegistry
    from redis.asyncio import Redis
    from starlette.types import ASGIApp

    from receiver.config.settings import Settings
    from receiver.graph.client import GraphClient

Role = Callable[["Settings"], Coroutine[Any, Any, int]]


def register(subparsers: Subparsers) -> None:
    web = add_command(
        subparsers, "web", "run the webhook receiver: handshake, validation, durable 202", _cmd_web
    )
    add_config_option(web)
    web.add_argument("--host", default=None, help="listen address (default: web.host)")
    web.add_argument("--port", type=int, default=None, help="listen port (default: web.port)")
    web.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    web.add_argument(
        "--limit-concurrency",
        type=int,
        default=None,
        help="answer 503 beyond this many concurrent connections per process",
    )

    serve = add_command(
        subparsers, "serve", "run every role (web, workers, scheduler) in one process", _cmd_serve
    )
    add_config_option(serve)
    serve.add_argument("--host", default=None, help="listen address (default: web.host)")
    serve.add_argument("--port", type=int, default=None, help="listen port (default: web.port)")
    add_config_option(
        add_command(
            subparsers, "worker", "run the pipeline workers: fetch, route, deliver", _cmd_worker
        )
    )
    add_config_option(
        add_command(
            subparsers,
            "scheduler",
            "run scheduled jobs (subscription renewal, poller) on the lease holder",
            _cmd_scheduler,
        )
    )


# --- the start-up every role shares --------------------------------------------------------


def _start(
    args: argparse.Namespace, run: Callable[[Settings], int], *, tune_gc: bool = True
) -> int:
    """Start a role: settings, logging, config warnings, gc tuning (``tune_gc``: the web role
    tunes after building its app instead), the admin server; then ``run(settings)``."""
    from redis.exceptions import RedisError

    from receiver.logs import setup_logging

    settings = load_settings(args)
    if settings is None:
        return ERROR
    setup_logging(settings.logging.level, settings.logging.format)
    if tune_gc:
        _tune_gc()
    for warning in settings.warnings():
        logging.getLogger("receiver").warning("config: %s", warning)
    try:
        with _admin_server(settings):
            return run(settings)
    except (RedisError, OSError) as exc:
        return redis_unavailable(f"receiver {args.command}", settings, exc)
    except ValueError as exc:  # e.g. no routes file, the admin port taken
        print(f"receiver {args.command}: {exc}", file=sys.stderr)
        return ERROR


def _run_async(args: argparse.Namespace, role: Role) -> int:
    import asyncio

    import uvloop

    def run(settings: Settings) -> int:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(role(settings))

    return _start(args, run)


def _tune_gc() -> None:
    """A long-running role: everything imported so far lives as long as the process, so
    move it out of the collector's sight (gc.freeze), and collect the young generation less
    often. Full collections over every module's objects were a visible share of the tail
    latency under load."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


@contextlib.contextmanager
def _admin_server(settings: Settings) -> Iterator[None]:
    """The status page on admin.port, when one is set, for as long as the role runs
    (ValueError when the port cannot be had)."""
    from receiver.admin.server import start_admin

    server = start_admin(settings)
    try:
        yield
    finally:
        if server is not None:
            server.stop()


@contextlib.asynccontextmanager
async def _connected(settings: Settings) -> AsyncIterator[Redis]:
    """The role's Redis (one server or a cluster), closed when the role ends."""
    from receiver.store.client import connect

    redis = await connect(settings.redis)
    try:
        yield redis
    finally:
        await redis.aclose()


def _serve_metrics(settings: Settings, registries: list[CollectorRegistry]) -> None:
    """The role's /metrics on metrics.port, when one is set."""
    if settings.metrics.port:
        from receiver.cli.metrics import serve_metrics

        serve_metrics(settings.metrics.host, settings.metrics.port, registries)


def _stop_on_signals(*also: Callable[[], None]) -> asyncio.Event:
    """An event set on SIGINT or SIGTERM (after calling ``also``): how roles stop cleanly."""
    import asyncio
    import signal

    stop = asyncio.Event()

    def handle() -> None:
        for call in also:
            call()
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handle)
    return stop


def _start_tenant_check(
    settings: Settings, redis: Redis, graph: GraphClient, role: str
) -> asyncio.Task[None]:
    """`receiver tenants check` in its short form, beside the role's start (it never delays
    or stops the role): one warning per tenant that cannot work, results on /status."""
    import asyncio

    from receiver.graph.probes import startup_check

    return asyncio.create_task(startup_check(settings, redis, graph, role), name="tenant-check")


# --- web -----------------------------------------------------------------------------------


def _cmd_web(args: argparse.Namespace) -> int:
    return _start(args, lambda settings: _web(settings, args), tune_gc=False)


def _web(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from receiver.web.server import server_options

    common: dict[str, Any] = {
        **server_options(settings, host=args.host, port=args.port),
        "loop": "uvloop",
        "limit_concurrency": args.limit_concurrency,
    }
    if args.workers > 1:  # the admin server runs in this (the supervising) process only
        path = args.config or os.environ["RECEIVER_CONFIG"]
        os.environ["RECEIVER_CONFIG"] = os.path.abspath(path)
        uvicorn.run(
            "receiver.cli.roles:web_app_from_environment",
            factory=True,
            workers=args.workers,
            **common,
        )
    else:
        app = web_app(settings)
        _tune_gc()
        uvicorn.run(app, **common)
    return OK


def web_app(
    settings: Settings,
    extra_registries: Sequence[CollectorRegistry] = (),
    *,
    redis: Redis | None = None,
    graph: GraphClient | None = None,
) -> ASGIApp:
    """The web role's app; with ``actions.enabled``, the action endpoint in front of it, and
    with ``actions.slack.enabled`` the Slack app's interactivity endpoint (web/ may not import
    the Graph client or the actions, so they meet here)."""
    from receiver.web.app import create_app

    if not settings.actions.enabled and not settings.actions.slack.enabled:
        return create_app(settings, extra_registries=list(extra_registries))
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    app: ASGIApp = create_app(settings, extra_registries=[*extra_registries, registry])
    if settings.actions.enabled:
        from receiver.actions.app import mount

        app = mount(app, settings, registry=registry, redis=redis, graph=graph)
    if settings.actions.slack.enabled:
        from receiver.actions.slack import mount as mount_slack

        app = mount_slack(app, settings, registry=registry, redis=redis)
    return app


def web_app_from_environment() -> ASGIApp:
    """uvicorn factory for ``receiver web --workers N``: settings from RECEIVER_CONFIG."""
    from receiver.config.loader import load_settings as load

    app = web_app(load(os.environ["RECEIVER_CONFIG"], environ=os.environ))
    _tune_gc()
    return app


# --- worker, scheduler, serve --------------------------------------------------------------


def _cmd_worker(args: argparse.Namespace) -> int:
    return _run_async(args, _worker)


def _cmd_scheduler(args: argparse.Namespace) -> int:
    return _run_async(args, _scheduler)


def _cmd_serve(args: argparse.Namespace) -> int:
    return _run_async(args, lambda settings: _serve(settings, args.host, args.port))


async def _worker(settings: Settings) -> int:
    from receiver.pipeline.worker import build_worker

    async with _connected(settings) as redis:
        worker = build_worker(settings, redis)
        stop = _stop_on_signals()
        try:
            _serve_metrics(settings, worker.registries)
            await worker.run(stop)
        finally:
            await worker.aclose()
    return OK


async def _scheduler(settings: Settings) -> int:
    from receiver.graph.client import client_for
    from receiver.scheduler.jobs import build_runner

    async with _connected(settings) as redis:
        graph = client_for(settings, redis)
        stop = _stop_on_signals()
        try:
            runner = build_runner(settings, redis, graph)
            check = _start_tenant_check(settings, redis, graph, "scheduler")
            try:
                _serve_metrics(settings, runner.registries)
                await runner.run(stop)
            finally:
                check.cancel()
        finally:
            await graph.aclose()
    return OK


async def _serve(settings: Settings, host: str | None, port: int | None) -> int:
    """Every role in one process: the same code paths as `web`, `worker` and `scheduler`."""
    import asyncio

    import uvicorn

    from receiver.pipeline.worker import build_worker
    from receiver.scheduler.jobs import build_runner
    from receiver.web.server import server_options

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # the process handles signals itself
            yield

    async with _connected(settings) as redis:
        worker = build_worker(settings, redis)
        try:
            runner = build_runner(settings, redis, worker.graph)
            server = _Server(
                uvicorn.Config(
                    # One Graph client serves both roles: its registry once.
                    web_app(
                        settings,
                        list(dict.fromkeys([*worker.registries, *runner.registries])),
                        redis=redis,
                        graph=worker.graph,
                    ),
                    loop="none",
                    **server_options(settings, host=host, port=port),
                )
            )

            def stop_web() -> None:
                server.should_exit = True

            stop = _stop_on_signals(stop_web)
            check = _start_tenant_check(settings, redis, worker.graph, "serve")
            tasks = [
                asyncio.create_task(server.serve(), name="web"),
                asyncio.create_task(worker.run(stop), name="worker"),
                asyncio.create_task(runner.run(stop), name="scheduler"),
            ]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                stop_web()  # one role ended (a signal, or a failure): stop the others
                stop.set()
                results = await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                check.cancel()
            failed = [r for r in results if isinstance(r, BaseException)]
            for error in failed:
                print(f"receiver serve: {type(error).__name__}: {error}", file=sys.stderr)
            return ERROR if failed else OK
        finally:
            await worker.aclose()
