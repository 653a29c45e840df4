"""The control API under `/_sim/`: set up tenants and data, inject faults, read what happened.

Not part of Graph. Every route is documented in docs/SIMULATOR.md. With a control token
configured, each request needs `Authorization: Bearer <token>` (control_http.py). The
handlers live one module a purpose:

- control_tenants.py: tenants, app registrations, minted tokens, reset, health
- control_data.py: alerts, incidents, Secure Scores, sent mail, the legacy alerts API's mode
- control_notifications.py: subscriptions, deliveries, lifecycle events
- control_conditions.py: faults, throttling, the virtual clock, counters
- signin.py: users, who sits at the browser, redirect URIs, the authorize log
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from receiver.simulator import control_conditions as conditions
from receiver.simulator import control_data as data
from receiver.simulator import control_notifications as notifications
from receiver.simulator import control_tenants as tenants
from receiver.simulator import signin_control as signin
from receiver.simulator.control_http import Handler, control

PREFIX = "/_sim"


def _route(path: str, handler: Handler, *methods: str) -> Route:
    return Route(f"{PREFIX}{path}", control(handler), methods=list(methods))


routes: list[BaseRoute] = [
    _route("/health", tenants.health, "GET"),
    _route("/tenants", tenants.list_tenants, "GET"),
    _route("/tenants", tenants.add_tenants, "POST"),
    _route("/tenants/{tenant_id}/apps", tenants.add_app, "POST"),
    _route("/alerts", data.create_alerts, "POST"),
    _route("/alerts", data.list_alerts, "GET"),
    _route("/alerts/{id}", data.update_alert, "PATCH"),
    _route("/alerts/{id}", data.delete_alert, "DELETE"),
    _route("/incidents", data.create_incidents, "POST"),
    _route("/secure-scores", data.seed_secure_scores, "POST"),
    _route("/faults", conditions.get_faults, "GET"),
    _route("/faults", conditions.inject_fault, "POST"),
    _route("/faults", conditions.clear_faults, "DELETE"),
    _route("/lifecycle", notifications.lifecycle, "POST"),
    _route("/subscriptions", notifications.list_subscriptions, "GET"),
    _route("/clock", conditions.get_clock, "GET"),
    _route("/clock/advance", conditions.advance_clock, "POST"),
    _route("/deliveries", notifications.deliveries, "GET"),
    _route("/deliveries", notifications.clear_deliveries, "DELETE"),
    _route("/mails", data.mails, "GET"),
    _route("/counters", conditions.counters, "GET"),
    _route("/counters", conditions.reset_counters, "DELETE"),
    _route("/reset", tenants.reset, "POST"),
    _route("/tokens", tenants.mint_token, "POST"),
    _route("/throttle", conditions.throttle, "GET", "POST"),
    _route("/legacy-alerts", data.legacy_alerts, "GET", "POST"),
    _route("/users", signin.add_users, "POST"),
    _route("/users", signin.list_users, "GET"),
    _route("/signin", signin.sign_in_as, "POST"),
    _route("/signins", signin.sign_in_log, "GET"),
    _route(
        "/tenants/{tenant_id}/apps/{client_id}/redirect-uris",
        signin.add_redirect_uris,
        "POST",
    ),
]
