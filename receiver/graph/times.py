"""Graph's DateTimeOffset on the wire: the subscription code's reading and writing of it.

Graph writes seven fractional digits and ``Z``; Python's ``fromisoformat`` takes six, so the
text is cut to microseconds first. Written back with milliseconds, as Graph's samples do.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?$")


def graph_time(moment: dt.datetime) -> str:
    """``moment`` as Graph takes it: UTC, milliseconds, ``Z``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_graph_time(text: str) -> dt.datetime:
    """Graph's DateTimeOffset (7 fractional digits, ``Z``) as an aware UTC datetime."""
    match = _ISO.match(text.strip())
    if not match:
        raise ValueError(f"not a Graph date-time: {text!r}")
    base, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    zone = "+00:00" if zone in (None, "Z") else zone
    return dt.datetime.fromisoformat(f"{base}.{micro}{zone}").astimezone(dt.UTC)


def expiry_of(subscription: Mapping[str, Any], fallback: float) -> float:
    """A Graph subscription's ``expirationDateTime`` as a timestamp; ``fallback`` when it is
    missing or not readable (Graph knows best, but a bad answer must not stop a reconcile)."""
    try:
        return parse_graph_time(str(subscription.get("expirationDateTime", ""))).timestamp()
    except ValueError:
        return fallback
