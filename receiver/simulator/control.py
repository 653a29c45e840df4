"""The control API under `/_sim/`: set up tenants and data, inject faults, read what happened.

Not part of Graph. Every route is documented in docs/SIMULATOR.md. With a control token
configured, each request needs `Authorization: Bearer <token>` (control_http.py). The routes
live beside their handlers, one module a purpose:

- control_tenants.py: tenants, app registrations, minted tokens, reset, health
- control_data.py: alerts, incidents, Secure Scores, sent mail, the legacy alerts API's mode
- control_notifications.py: subscriptions, deliveries, lifecycle events
- control_conditions.py: faults, throttling, the virtual clock, counters
- signin_control.py: users, who sits at the browser, redirect URIs, the authorize log
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from receiver.simulator import (
    control_conditions,
    control_data,
    control_notifications,
    control_tenants,
    signin_control,
)

routes: list[BaseRoute] = [
    *control_tenants.routes,
    *control_data.routes,
    *control_notifications.routes,
    *control_conditions.routes,
    *signin_control.routes,
]
