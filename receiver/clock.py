"""The product's calendar clock: what "now" is when a date matters.

Every decision that compares a date with Graph's data or with a date a user gave (the poller's
first look-back, subscription expiry, the legacy API's retirement, silences, backfill windows)
asks ``now()`` here, never ``datetime.now`` directly, so that one setting moves them all.

``RECEIVER_CLOCK_OFFSET_S`` (seconds, may be negative) shifts this clock. It exists for one
job: the test command runs the date-sensitive tests a second time a year ahead, which proves no
test depends on today's date (libfaketime cannot do it: redis-server fails under it). The
simulator reads the same variable for its own virtual clock, so both sides agree. Durations and
Redis stream ids (which are Redis's own milliseconds) use ``time.time()`` and are not shifted.
"""

from __future__ import annotations

import datetime as dt
import functools
import os

OFFSET_ENV = "RECEIVER_CLOCK_OFFSET_S"


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
