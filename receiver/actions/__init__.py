"""Triage from messages and the command line: alert updates in Graph, signed action links
(links.py, pure), the action endpoint served by the web role (app.py: its confirmation page,
confirmation.py; the action, submission.py; its refusals, refusals.py), optional sign-in with
Entra ID before an action (signin.py), and the audit trail (audit.py).

Dependency place: like ``pipeline/``, this package wires core and the Graph client; ``web/``
never imports it (``receiver.cli`` composes the action endpoint with the web app), and
``sinks/`` only ever see finished (label, url) pairs.
"""
