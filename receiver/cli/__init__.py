"""The `receiver` command: one entry point for every role and every operator task.

This is the only module that knows every role. Each subcommand imports what it needs when it
runs, so `receiver --help` and `receiver config check` stay fast and need no Redis or Graph.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from receiver import __version__

if TYPE_CHECKING:
    import asyncio

    from prometheus_client import CollectorRegistry
    from redis.asyncio import Redis
    from starlette.types import ASGIApp

    from receiver.config.settings import Settings
    from receiver.graph.client import GraphClient

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


def _not_implemented(what: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        print(f"receiver {what}: not implemented yet", file=sys.stderr)
        return EXIT_USAGE

    return handler


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"receiver {__version__} (Python {sys.version.split()[0]})")
    return EXIT_OK


def _cmd_config_check(args: argparse.Namespace) -> int:
    from receiver.config.files import ConfigError
    from receiver.config.settings import load_settings
    from receiver.routing.config import load_routes

    path = args.file or args.config or os.environ.get("RECEIVER_CONFIG")
    if not path:
        print("receiver config check: give a config file (FILE, --config or RECEIVER_CONFIG)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = load_settings(path, environ=os.environ)
        if settings.routes_file is not None:
            load_routes(settings.routes_file, [s.name for s in settings.sinks])
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_ERROR
    print(f"{path}: OK ({settings.summary()})")
    for warning in settings.warnings():
        print(f"{path}: warning: {warning}")
    return EXIT_OK


def _load(args: argparse.Namespace) -> Settings | None:
    """The settings for a role, or None after printing why they cannot be had."""
    from receiver.config.files import ConfigError
    from receiver.config.settings import load_settings

    path = args.config or os.environ.get("RECEIVER_CONFIG")
    if not path:
        print(f"receiver {args.command}: give a settings file with --config FILE or "
              "RECEIVER_CONFIG (see config/receiver.example.yaml)", file=sys.stderr)
        return None
    try:
        return load_settings(path, environ=os.environ)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return None


def _cmd_web(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return EXIT_ERROR
    import uvicorn

    from receiver.logs import setup_logging

    setup_logging(settings.logging.level, settings.logging.format)
    from receiver.web.server import server_options

    common: dict[str, Any] = {
        **server_options(settings, host=args.host, port=args.port), "loop": "uvloop",
        "limit_concurrency": args.limit_concurrency,
    }
    admin = contextlib.ExitStack()  # in this (the supervising) process only
    try:
        admin.enter_context(_admin_server(settings))
    except ValueError as exc:
        print(f"receiver web: {exc}", file=sys.stderr)
        return EXIT_ERROR
    with admin:
        if args.workers > 1:
            path = args.config or os.environ["RECEIVER_CONFIG"]
            os.environ["RECEIVER_CONFIG"] = os.path.abspath(path)
            uvicorn.run("receiver.cli:web_app_from_environment", factory=True,
                        workers=args.workers, **common)
        else:
            app = _web_app(settings)
            _tune_gc()
            uvicorn.run(app, **common)
    return EXIT_OK


def _web_app(settings: Settings, extra_registries: Sequence[CollectorRegistry] = (), *,
             redis: Redis | None = None, graph: GraphClient | None = None) -> ASGIApp:
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
    from receiver.config.settings import load_settings

    app = _web_app(load_settings(os.environ["RECEIVER_CONFIG"], environ=os.environ))
    _tune_gc()
    return app


def _expires_in(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0:
        return "expired"
    days, rest = divmod(int(seconds), 86_400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours:02d}h {rest // 60:02d}m" if days else f"{hours}h {rest // 60:02d}m"


async def _subscriptions(settings: Settings, args: argparse.Namespace) -> int:
    from receiver.graph.client import client_for
    from receiver.graph.subscriptions import Supervisor
    from receiver.store.client import connect
    from receiver.store.keys import Keys
    from receiver.store.lease import Lease

    redis = await connect(settings.redis)
    graph = client_for(settings, redis)
    try:
        if args.subs_command == "list":
            rows = await Supervisor(settings, graph, redis).rows()
            table = [("TENANT", "RESOURCE", "ID", "EXPIRES IN", "STATE")]
            table += [(r.tenant, r.resource, r.subscription_id, _expires_in(r.expires_in_s),
                       r.state) for r in rows]
            widths = [max(len(row[i]) for row in table) for i in range(5)]
            for row in table:
                print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                      .rstrip())
            return EXIT_OK
        if args.subs_command == "sync":
            lease = Lease(redis, Keys(settings.redis.key_prefix), settings.scheduler.lease_s)
            if not await lease.acquire():
                print(f"receiver subscriptions sync: the scheduler lease is held by "
                      f"{await lease.holder()}; it reconciles every "
                      f"{settings.scheduler.reconcile_interval_s:g}s. Run sync when no "
                      "scheduler runs, or wait for it.", file=sys.stderr)
                return EXIT_ERROR
            try:
                report = await Supervisor(settings, graph, redis, guard=lease).reconcile()
            finally:
                await lease.release()
            print(report.summary())
            for failure in report.failures:
                print(f"  error: {failure}", file=sys.stderr)
            return EXIT_ERROR if report.errors else EXIT_OK
        deleted = await Supervisor(settings, graph, redis).delete(
            None if args.all else args.id)
        print(f"{deleted} subscription(s) deleted")
        if not args.all and deleted == 0:
            print(f"receiver subscriptions delete: no subscription {args.id} in any tenant",
                  file=sys.stderr)
            return EXIT_ERROR
        return EXIT_OK
    finally:
        await graph.aclose()
        await redis.aclose()


def _cmd_subscriptions(args: argparse.Namespace) -> int:
    import asyncio

    from redis.exceptions import RedisError

    from receiver.graph.auth import GraphAuthError
    from receiver.graph.client import GraphError
    from receiver.logs import setup_logging

    settings = _load(args)
    if settings is None:
        return EXIT_ERROR
    setup_logging("WARNING", "text")
    try:
        return asyncio.run(_subscriptions(settings, args))
    except (GraphError, GraphAuthError, RuntimeError) as exc:
        print(f"receiver subscriptions {args.subs_command}: {exc}", file=sys.stderr)
    except (RedisError, OSError) as exc:
        print(f"receiver subscriptions {args.subs_command}: Redis at {settings.redis.url} "
              f"unavailable: {type(exc).__name__}: {exc}", file=sys.stderr)
    return EXIT_ERROR


def _serve_metrics(settings: Settings, registries: list[CollectorRegistry]) -> None:
    """The role's /metrics on metrics.port, when one is set."""
    if settings.metrics.port:
        from receiver.cli.metrics import serve_metrics

        serve_metrics(settings.metrics.host, settings.metrics.port, registries)


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


async def _scheduler(settings: Settings) -> int:

    from receiver.graph.client import client_for
    from receiver.store.client import connect

    redis = await connect(settings.redis)
    graph = client_for(settings, redis)
    from receiver.scheduler.jobs import build_runner

    stop = _stop_on_signals()
    runner = build_runner(settings, redis, graph)
    check = _start_tenant_check(settings, redis, graph, "scheduler")
    try:
        _serve_metrics(settings, runner.registries)
        await runner.run(stop)
    finally:
        check.cancel()
        await graph.aclose()
        await redis.aclose()
    return EXIT_OK


def _start_tenant_check(settings: Settings, redis: Redis, graph: GraphClient,
                        role: str) -> asyncio.Task[None]:
    """`receiver tenants check` in its short form, beside the role's start (it never delays
    or stops the role): one warning per tenant that cannot work, results on /status."""
    import asyncio

    from receiver.graph.probes import startup_check

    return asyncio.create_task(startup_check(settings, redis, graph, role),
                               name="tenant-check")


async def _worker(settings: Settings) -> int:

    from receiver.pipeline.worker import build_worker
    from receiver.store.client import connect

    redis = await connect(settings.redis)
    try:
        worker = build_worker(settings, redis)
    except BaseException:
        await redis.aclose()
        raise
    stop = _stop_on_signals()
    try:
        _serve_metrics(settings, worker.registries)
        await worker.run(stop)
    finally:
        await worker.aclose()
        await redis.aclose()
    return EXIT_OK


async def _serve(settings: Settings, host: str | None, port: int | None) -> int:
    """Every role in one process: the same code paths as `web`, `worker` and `scheduler`."""
    import asyncio

    import uvicorn

    from receiver.pipeline.worker import build_worker
    from receiver.store.client import connect

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # the process handles signals itself
            yield

    redis = await connect(settings.redis)
    try:
        worker = build_worker(settings, redis)
    except BaseException:
        await redis.aclose()
        raise
    from receiver.scheduler.jobs import build_runner

    runner = build_runner(settings, redis, worker.graph)
    from receiver.web.server import server_options

    server = _Server(uvicorn.Config(
        # One Graph client serves both roles: its registry once.
        _web_app(settings, list(dict.fromkeys([*worker.registries, *runner.registries])),
                 redis=redis, graph=worker.graph),
        loop="none", **server_options(settings, host=host, port=port)))
    def stop_web() -> None:
        server.should_exit = True

    stop = _stop_on_signals(stop_web)

    def shutdown() -> None:
        stop_web()
        stop.set()

    check = _start_tenant_check(settings, redis, worker.graph, "serve")
    tasks = [asyncio.create_task(server.serve(), name="web"),
             asyncio.create_task(worker.run(stop), name="worker"),
             asyncio.create_task(runner.run(stop), name="scheduler")]
    try:
        _done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        shutdown()  # one role ended (a signal, or a failure): stop the others
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        for error in failed:
            print(f"receiver serve: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_ERROR if failed else EXIT_OK
    finally:
        check.cancel()
        await worker.aclose()
        await redis.aclose()


def _tune_gc() -> None:
    """A long-running role: everything imported so far lives as long as the process, so
    move it out of the collector's sight (gc.freeze), and collect the young generation less
    often. Full collections over every module's objects were a visible share of the tail
    latency under load."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def _run_role(args: argparse.Namespace,
              role: Callable[[Settings], Coroutine[Any, Any, int]]) -> int:
    import asyncio

    from redis.exceptions import RedisError

    from receiver.logs import setup_logging

    settings = _load(args)
    if settings is None:
        return EXIT_ERROR
    setup_logging(settings.logging.level, settings.logging.format)
    _tune_gc()
    for warning in settings.warnings():
        logging.getLogger("receiver").warning("config: %s", warning)
    try:
        with _admin_server(settings):
            return asyncio.run(role(settings))
    except (RedisError, OSError) as exc:
        print(f"receiver {args.command}: Redis at {settings.redis.url} unavailable: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as exc:  # e.g. no routes file
        print(f"receiver {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _cmd_worker(args: argparse.Namespace) -> int:
    return _run_role(args, _worker)


def _cmd_serve(args: argparse.Namespace) -> int:
    return _run_role(args, lambda settings: _serve(settings, args.host, args.port))


def _cmd_demo(args: argparse.Namespace) -> int:
    from receiver.cli.demo import run

    return run(args)


def _ops(name: str, *, needs_redis: bool = True, module: str = "receiver.cli.ops",
         quiet_logs: bool = False) -> Handler:
    """A handler for an operator command: ``module``'s async ``name(settings, redis, args)``
    (``redis`` None when Redis is optional and unreachable). ``quiet_logs``: only warnings
    reach the terminal (commands whose own output is the answer)."""

    def handler(args: argparse.Namespace) -> int:
        import asyncio
        import importlib

        from redis.exceptions import RedisError

        from receiver.store.client import make_redis

        settings = _load(args)
        if settings is None:
            return EXIT_ERROR
        command = getattr(importlib.import_module(module), name)
        if quiet_logs:
            from receiver.logs import setup_logging

            setup_logging("WARNING", "text")

        async def run() -> int:
            redis = make_redis(settings.redis)
            try:
                if not needs_redis:
                    try:
                        await redis.ping()
                    except (RedisError, OSError):
                        return int(await command(settings, None, args))
                return int(await command(settings, redis, args))
            finally:
                await redis.aclose()

        try:
            return asyncio.run(run())
        except (RedisError, OSError) as exc:
            print(f"receiver {args.command}: Redis at {settings.redis.url} unavailable: "
                  f"{type(exc).__name__}", file=sys.stderr)
            return EXIT_ERROR

    return handler


def _cmd_scheduler(args: argparse.Namespace) -> int:
    return _run_role(args, _scheduler)


def _cmd_secure_score(args: argparse.Namespace) -> int:
    """`receiver securescore show` and `receiver controls update` (Graph only)."""
    settings = _load(args)
    if settings is None:
        return EXIT_ERROR
    from receiver.securescore.commands import run

    return run(settings, args)


def _cmd_simulator(args: argparse.Namespace) -> int:
    from receiver.simulator import cli as simulator_cli

    return simulator_cli.run(args)


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="settings YAML file (default: $RECEIVER_CONFIG)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="receiver",
        description="Microsoft Graph security alert receiver and router.",
    )
    parser.add_argument("--version", action="version", version=f"receiver {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    web = add("web", "run the webhook receiver: handshake, validation, durable 202", _cmd_web)
    _add_config_option(web)
    web.add_argument("--host", default=None, help="listen address (default: web.host)")
    web.add_argument("--port", type=int, default=None, help="listen port (default: web.port)")
    web.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    web.add_argument("--limit-concurrency", type=int, default=None,
                     help="answer 503 beyond this many concurrent connections per process")

    serve = add("serve", "run every role (web, workers, scheduler) in one process", _cmd_serve)
    _add_config_option(serve)
    serve.add_argument("--host", default=None, help="listen address (default: web.host)")
    serve.add_argument("--port", type=int, default=None, help="listen port (default: web.port)")
    _add_config_option(add("worker", "run the pipeline workers: fetch, route, deliver",
                           _cmd_worker))
    _add_config_option(add(
        "scheduler", "run scheduled jobs (subscription renewal, poller) on the lease holder",
        _cmd_scheduler))

    sim = add("simulator", "run the Microsoft Graph / Entra ID simulator (HTTPS)", _cmd_simulator)
    from receiver.simulator import cli as simulator_cli

    simulator_cli.add_arguments(sim)

    demo = add("demo", "run the demo: private Redis, simulator, receiver and a stream of alerts",
               _cmd_demo)
    from receiver.cli import demo as demo_module

    demo_module.add_arguments(demo)

    subs = add("subscriptions", "list, sync or delete Graph subscriptions", _cmd_subscriptions)
    _add_config_option(subs)
    subs_sub = subs.add_subparsers(dest="subs_command", metavar="ACTION")
    subs_sub.required = True
    for action, text in (
        ("list", "table of every tenant's subscriptions: tenant, resource, id, expires in, state"),
        ("sync", "reconcile now: create, renew and delete so Graph matches the settings"),
        ("delete", "delete subscriptions in Graph and the registry (the scheduler recreates "
                   "wanted ones on its next reconcile)"),
    ):
        p = subs_sub.add_parser(action, help=text, description=text)
        p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                       help="settings YAML file (default: $RECEIVER_CONFIG)")
        if action == "delete":
            which = p.add_mutually_exclusive_group(required=True)
            which.add_argument("--all", action="store_true",
                               help="every subscription this deployment owns or that points "
                                    "at its notification URL")
            which.add_argument("id", nargs="?", default=None, metavar="ID",
                               help="one subscription id")
    def actions(parser: argparse.ArgumentParser, dest: str, handler: Handler,
                specs: list[tuple[str, str]]) -> dict[str, argparse.ArgumentParser]:
        sub_parsers = parser.add_subparsers(dest=dest, metavar="ACTION")
        sub_parsers.required = True
        out = {}
        for action, text in specs:
            p = sub_parsers.add_parser(action, help=text, description=text)
            p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                           help="settings YAML file (default: $RECEIVER_CONFIG)")
            p.set_defaults(handler=handler)
            out[action] = p
        return out

    dlq = add("dlq", "list, show, replay or purge dead-lettered deliveries", _ops("dlq"))
    _add_config_option(dlq)
    dlq_actions = actions(dlq, "dlq_command", _ops("dlq"), [
        ("list", "dead-lettered deliveries of every sink (or --sink)"),
        ("show", "one dead-lettered delivery with its alert and error"),
        ("replay", "put dead-lettered deliveries back in their sink's queue"),
        ("purge", "delete dead-lettered deliveries")])
    for action, p in dlq_actions.items():
        p.add_argument("--sink", default=None, help="only this sink")
        if action == "show":
            p.add_argument("id", metavar="ENTRY", help="the entry id (from dlq list)")
        if action == "replay":
            which = p.add_mutually_exclusive_group(required=True)
            which.add_argument("--all", action="store_true", help="every entry")
            which.add_argument("--id", default=None, help="one entry")
            which.add_argument("--since", default=None, metavar="DURATION",
                               help="entries dead-lettered in the last DURATION (e.g. 2h)")
        if action == "purge":
            p.add_argument("--yes", action="store_true", required=True,
                           help="confirm: the deliveries are gone for good")

    route = add("route", "test the routing tree against an alert", _ops("route_test"))
    _add_config_option(route)
    route_actions = actions(route, "route_command", _ops("route_test", needs_redis=False), [
        ("test", "which sinks would get ALERT.json (an envelope or an alert as Graph returns "
                 "it), and why; silences are checked when Redis is reachable")])
    route_actions["test"].add_argument("alert", metavar="ALERT.json")

    silence = add("silence", "add, list or expire silences (time-bounded mutes)",
                  _ops("silence"))
    _add_config_option(silence)
    silence_actions = actions(silence, "silence_command", _ops("silence"), [
        ("add", "mute alerts matching every MATCHER for DURATION"),
        ("list", "every silence, active or expired"),
        ("expire", "end a silence now")])
    silence_actions["add"].add_argument("matchers", nargs="+", metavar="MATCHER",
                                        help="e.g. 'tenant=\"contoso\"' 'severity=~\"low\"'")
    silence_actions["add"].add_argument("--duration", default="2h", help="e.g. 30m, 2h, 1h30m")
    silence_actions["add"].add_argument("--comment", required=True,
                                        help="why, and whom to ask")
    silence_actions["add"].add_argument("--author", default=os.environ.get("USER", ""))
    silence_actions["expire"].add_argument("id", metavar="ID")

    status = add("status", "the health summary: processes, subscriptions, backlog, dead "
                           "letters (exit 1 when something needs attention)", _ops("status"))
    _add_config_option(status)

    backfill = add("backfill", "re-read a tenant's alerts changed since a time into the "
                               "pipeline now (progress on stderr)", _ops("backfill"))
    _add_config_option(backfill)
    backfill.add_argument("tenant", metavar="TENANT", help="tenant name or id")
    since = backfill.add_mutually_exclusive_group()
    since.add_argument("--since", default=None, metavar="ISO",
                       help="changes from this time on, e.g. 2026-01-31T08:00:00Z")
    since.add_argument("--hours", type=float, default=None, metavar="N",
                       help="changes in the last N hours (default: "
                            "scheduler.backfill_lookback_s)")

    alerts = add("alerts", "an alert's delivery timeline", _ops("alert_show"))
    _add_config_option(alerts)
    alert_actions = actions(alerts, "alerts_command", _ops("alert_show"), [
        ("show", "which sinks got the alert, when, with how many attempts"),
        ("update", "update an alert in Graph (status, classification, determination, "
                   "assignee, comment) and print it as read back")])
    alert_actions["show"].add_argument("id", metavar="ID", help="the alert id")
    alert_actions["show"].add_argument("--tenant", default=None, help="tenant name or id")
    from receiver.actions import command as alerts_update

    alerts_update.add_arguments(alert_actions["update"])
    alert_actions["update"].set_defaults(handler=_ops(
        "alert_update", module="receiver.actions.command", quiet_logs=True))

    tenants_check = _ops("command", module="receiver.graph.probes", needs_redis=False,
                         quiet_logs=True)
    tenants = add("tenants", "check that each configured tenant can work", tenants_check)
    _add_config_option(tenants)
    check_parser = actions(tenants, "tenants_command", tenants_check, [
        ("check", "per tenant: credentials, permissions, one read per feature and, with a "
                  "subscription, the public endpoint; each failure with its fix (exit 1)")])
    check_parser["check"].add_argument("tenants", nargs="*", metavar="TENANT",
                                       help="tenant names or ids (default: all)")
    check_parser["check"].add_argument("--json", action="store_true",
                                       help="the verdicts as JSON, for automation")

    score = add("securescore", "Secure Score: the trend and the top improvement actions",
                _cmd_secure_score)
    _add_config_option(score)
    score_show = actions(score, "action", _cmd_secure_score, [
        ("show", "a tenant's daily Secure Score (trend table) and the improvement actions "
                 "worth the most points")])["show"]
    score_show.add_argument("tenant", metavar="TENANT", help="tenant name or id")
    score_show.add_argument("--days", type=int, default=30, choices=range(1, 91),
                            metavar="N", help="days of history, 1-90 (default: 30)")
    score_show.add_argument("--top", type=int, default=10, choices=range(0, 101),
                            metavar="N", help="improvement actions to list (default: 10)")

    controls = add("controls", "Secure Score control profiles", _cmd_secure_score)
    _add_config_option(controls)
    control_update = actions(controls, "action", _cmd_secure_score, [
        ("update", "set a Secure Score control's state in Graph, with a comment, and print "
                   "it as read back")])["update"]
    control_update.add_argument("id", metavar="ID", help="the control (profile) id, e.g. "
                                "AdminMFAV2")
    control_update.add_argument("--tenant", default=None,
                                help="tenant name or id (needed with several tenants)")
    control_update.add_argument("--state", required=True, type=str.lower,
                                choices=["default", "ignored", "thirdparty", "reviewed"],
                                metavar="default|ignored|thirdParty|reviewed")
    control_update.add_argument("--comment", required=True, help="why (kept in Graph)")
    control_update.add_argument("--assigned-to", default=None, metavar="UPN",
                                help="who owns the control")

    config = add("config", "validate configuration", _not_implemented("config"))
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION")
    config_sub.required = True
    check = config_sub.add_parser(
        "check",
        help="validate a settings file (and its routes file); print every error",
        description="Validate a settings file and the routes file it names. Prints every "
        "error with file, key path and reason; exits 1 if there is any. Never prints a secret.",
    )
    check.add_argument("file", nargs="?", default=None, metavar="FILE")
    _add_config_option(check)
    check.set_defaults(handler=_cmd_config_check)

    sinks = add("sinks", "work with the configured sinks", _not_implemented("sinks"))
    sinks_sub = sinks.add_subparsers(dest="sinks_command", metavar="ACTION")
    sinks_sub.required = True
    sinks_test = sinks_sub.add_parser(
        "test", help="send a sample alert through one configured sink and report the result",
        description="Send a sample alert through one configured sink. Exits 0 on success, 1 "
        "on failure (with the classified error: retryable or permanent).")
    sinks_test.add_argument("name", metavar="NAME", help="the sink's name in the settings")
    _add_config_option(sinks_test)
    sinks_test.set_defaults(handler=_cmd_sinks_test)

    add("version", "print the version", _cmd_version)
    return parser


async def _sinks_test(settings: Settings, name: str) -> tuple[bool, str]:
    from receiver.pipeline.tickets import RedisTicketStore
    from receiver.sinks.sample import send_sample
    from receiver.store.client import make_redis
    from receiver.store.keys import Keys

    config = next(s for s in settings.sinks if s.name == name)
    if config.type not in ("jira", "servicenow"):
        return await send_sample(config)
    redis = make_redis(settings.redis)  # one Redis or a cluster, like every role
    try:
        return await send_sample(
            config, tickets=RedisTicketStore(redis, Keys(settings.redis.key_prefix)))
    finally:
        await redis.aclose()


def _cmd_sinks_test(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return EXIT_ERROR
    names = [s.name for s in settings.sinks]
    if args.name not in names:
        print(f"receiver sinks test: no sink named {args.name!r} "
              f"(configured: {', '.join(names) or 'none'})", file=sys.stderr)
        return EXIT_ERROR
    import asyncio

    ok, text = asyncio.run(_sinks_test(settings, args.name))
    if ok:
        print(f"sink {args.name}: OK: {text}")
        return EXIT_OK
    print(f"sink {args.name}: FAILED ({text})", file=sys.stderr)
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
