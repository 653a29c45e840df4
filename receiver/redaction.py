"""Secret redaction for every text that may be logged, stored or shown: one registry per process.

Sinks register their secrets (webhook URL tokens, API keys, passwords, signing keys) when they
are built; :func:`redact` replaces every registered secret, and :func:`cut` is the only way to
shorten a text that may hold one. Cutting first and redacting after is the classic leak: a
secret that straddles the cut is no longer a whole secret, matches nothing, and all but its
last characters survive (issue 15: 22 of a 23-character webhook token reached the DLQ, the
delivery timeline, the status page and the log). So :func:`cut` redacts the whole text first,
then cuts, then redacts what is left at the edge: when the text ends with the first characters
of a secret (a cut, or an answer the other side cut itself), that partial secret goes too.

Core: imports nothing of the rest, so every stage (the consumer loop, the deliver stage, the
sinks) can redact before it stores or logs.
"""

from __future__ import annotations

import threading

__all__ = ["ELLIPSIS", "MIN_PARTIAL", "REDACTED", "cut", "redact", "register", "registered"]

REDACTED = "[redacted]"
ELLIPSIS = "…"
# The shortest tail of a cut text taken as the beginning of a secret: three characters of a
# token tell an attacker nothing usable; four and more are removed.
MIN_PARTIAL = 4
# Secrets shorter than this are not registered (they would redact ordinary words).
MIN_SECRET = 4

_secrets: set[str] = set()
_ordered: tuple[str, ...] = ()  # longest first, so a secret inside a longer one goes with it
_lock = threading.Lock()


def register(*values: str | None) -> None:
    """Make each value redacted wherever :func:`redact` and :func:`cut` run."""
    global _ordered
    with _lock:
        before = len(_secrets)
        _secrets.update(v for v in values if v and len(v) >= MIN_SECRET)
        if len(_secrets) != before:
            _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def registered() -> tuple[str, ...]:
    """The registered secrets, longest first (for tests and the log filter)."""
    return _ordered


def redact(text: str, secrets: tuple[str, ...] | None = None) -> str:
    """``text`` with every registered secret (or each of ``secrets``, longest first)
    replaced."""
    for secret in _ordered if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _partial_at_end(text: str, secrets: tuple[str, ...]) -> int:
    """Where the longest tail of ``text`` that is the beginning of a secret (at least
    MIN_PARTIAL characters, shorter than the secret) starts; len(text) when there is none."""
    start = len(text)
    for secret in secrets:
        if not secret:
            continue
        # A tail of k characters, MIN_PARTIAL <= k < len(secret), equal to secret[:k]: it
        # starts within the last len(secret) - 1 characters, at an occurrence of secret[0].
        lo = max(0, len(text) - len(secret) + 1)
        hi = len(text) - MIN_PARTIAL
        i = text.find(secret[0], lo, hi + 1)
        while i != -1 and i < start:
            if secret.startswith(text[i:]):
                start = i
                break
            i = text.find(secret[0], i + 1, hi + 1)
    return start


def cut(
    text: str, limit: int, *, squeeze: bool = False, secrets: tuple[str, ...] | None = None
) -> str:
    """``text`` redacted and then shortened to about ``limit`` characters (an ellipsis marks
    a cut). ``squeeze`` first folds runs of whitespace into one space (an answer body).

    The whole text is redacted before it is cut; after the cut, a tail that is the beginning
    of a secret is redacted too (the other side may have cut its echo of a secret itself).
    ``secrets`` (longest first) instead of the registered ones: for tests."""
    if secrets is None:
        secrets = _ordered
    text = redact(text, secrets)
    if squeeze:
        text = redact(" ".join(text.split()), secrets)
    shortened = len(text) > limit
    if shortened:
        text = text[:limit]
    if secrets:
        edge = _partial_at_end(text, secrets)
        if edge < len(text):
            text = text[:edge] + REDACTED
    return text + ELLIPSIS if shortened else text
