"""The Secure Score watch: daily per tenant, the score's drops, control regressions and a
weekly digest, routed as ``secure_score`` events through the same tree as alerts.

- ``watch``: the pure analysis (scores and control profiles in, findings out);
- ``events``: findings as envelopes (``kind = secure_score``);
- ``job``: the scheduled, leader-only job (Graph in, ``alerts`` stream out, exactly once);
- ``chart`` and ``render``: the trend PNG and the template context the sinks use;
- ``commands``: ``receiver securescore show`` and ``receiver controls update``.

Nothing is imported here, so a sink that needs ``render`` does not pull in the Graph client.
"""
