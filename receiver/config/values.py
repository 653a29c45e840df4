"""Small value parsers shared by the settings, the Graph client and the sinks (core: imports
nothing of the rest of the package)."""

from __future__ import annotations

import datetime as dt
import email.utils
import math
from urllib.parse import urlsplit

MAX_RETRY_AFTER_S = 24 * 3600.0


def check_url(value: str, schemes: tuple[str, ...] = ("https", "http")) -> str:
    """``value`` if it is a URL with one of ``schemes`` and a host; ValueError otherwise. The
    message never echoes the value (a URL may carry a token)."""
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ValueError(f"must be a URL with scheme {' or '.join(schemes)}")
    if not parts.hostname:
        raise ValueError("must be a URL with a host name")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError("has an invalid port") from None
    return value


def parse_retry_after(
    value: str | None, *, now: dt.datetime | float | None = None, maximum: float = MAX_RETRY_AFTER_S
) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds (fractions too, as Graph
    sends them) or an HTTP date; None when absent or unreadable; clamped to [0, maximum]."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        if isinstance(now, dt.datetime):
            base = now.timestamp()
        else:
            base = dt.datetime.now(dt.UTC).timestamp() if now is None else now
        seconds = when.timestamp() - base
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), maximum)
