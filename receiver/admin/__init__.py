"""The admin server: a read-only status page for operators, on its own port, off by default.

Why a separate port and package: the web role's port faces Graph (and the internet, through
an ingress); what the page shows (subscriptions, backlogs, alert titles) must not. The page
reads only Redis, so the admin port of any process shows the whole deployment.

- :mod:`receiver.admin.health` gathers the health summary (also `receiver status`'s).
- :mod:`receiver.admin.app` is the Starlette app: ``/status`` (HTML), ``/status.json``,
  ``/static`` (the Adaptive Cards renderer and the page's script).
- :mod:`receiver.admin.server` runs it beside a role, in a thread with its own event loop.
"""
