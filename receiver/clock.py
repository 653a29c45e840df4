"""Time: the product's calendar clock, and Graph's timestamps (one module for both).

The calendar clock is what "now" is when a date matters.

Every decision that compares a date with Graph's data or with a date a user gave (the poller's
first look-back, subscription expiry, the legacy API's retirement, silences, backfill windows)
asks ``now()`` here, never ``datetime.now`` directly, so that one setting moves them all.

``RECEIVER_CLOCK_OFFSET_S`` (seconds, may be negative) shifts this clock. It exists for one
job: the test command runs the date-sensitive tests a second time a year ahead, which proves no
test depends on today's date (libfaketime cannot do it: redis-server fails under it). The
simulator reads the same variable for its own virtual clock, so both sides agree. Durations and
Redis stream ids (which are Redis's own milliseconds) use ``time.time()`` and are not shifted.

Graph's timestamps are ISO 8601 DateTimeOffsets with up to seven fraction digits
(``2026-11-30T04:10:33.7221020Z``); :func:`parse` reads any of Graph's spellings, :func:`graph`
writes Graph's, :func:`canonical` makes a timestamp text sortable as a version (UTC, seven
digits, nothing lost).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re

OFFSET_ENV = "RECEIVER_CLOCK_OFFSET_S"
_ISO = re.compile(
    r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d(?::\d\d)?)(?:\.(\d+))?"
    r"(Z|z|[+-]\d\d:?\d\d)?$"
)


@functools.cache
def offset() -> dt.timedelta:
    """The shift, read from the environment once, on first use (not at import)."""
    raw = os.environ.get(OFFSET_ENV, "").strip()
    if not raw:
        return dt.timedelta()
    try:
        return dt.timedelta(seconds=float(raw))
    except ValueError:
        raise SystemExit(f"{OFFSET_ENV}={raw!r} is not a number of seconds") from None


def now() -> dt.datetime:
    """UTC now (aware), shifted by ``RECEIVER_CLOCK_OFFSET_S`` when set."""
    return dt.datetime.now(dt.UTC) + offset()


def _split(text: str) -> tuple[dt.datetime, str] | None:
    """(the moment to the second in UTC, the fraction digits as written), or None."""
    match = _ISO.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        return None
    day, time_of_day, fraction, zone = match.groups()
    if zone in (None, "Z", "z"):
        offset = "+00:00"
    else:
        offset = zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
    try:
        moment = dt.datetime.fromisoformat(f"{day}T{time_of_day}{offset}")
    except ValueError:
        return None
    return moment.astimezone(dt.UTC), fraction or ""


def parse(text: str) -> dt.datetime | None:
    """A Graph DateTimeOffset as an aware UTC datetime (any number of fraction digits, ``Z``
    or an offset, no zone meaning UTC); None when it is not one."""
    split = _split(text)
    if split is None:
        return None
    moment, fraction = split
    return moment.replace(microsecond=int(fraction[:6].ljust(6, "0")))


def graph(moment: dt.datetime) -> str:
    """Graph's own spelling: UTC, seven fraction digits, ``Z``."""
    moment = moment.astimezone(dt.UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}0Z"


def canonical(text: str) -> str:
    """A timestamp text in one sortable form (UTC, exactly seven fraction digits, ``Z``),
    keeping all seven of Graph's digits; text that is not a timestamp comes back as it is."""
    split = _split(text)
    if split is None:
        return text
    moment, fraction = split
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction.ljust(7, '0')[:7]}Z"


def from_ms(ms: float) -> str:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds (``2026-11-30T10:00:00.000Z``)."""
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
