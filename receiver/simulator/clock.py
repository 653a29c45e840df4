"""The virtual clock, and Graph's timestamp format.

`Clock.now()` is real UTC time plus an offset that the control API can advance. It drives
subscription lifetimes and expiry, alert and incident timestamps and notification times.
Access tokens and throttling windows use real time (`time.time()`), never this clock: MSAL
and httpx on the other side use real time too, and a token that outlives a clock jump would
otherwise expire under a client that cannot know.

`RECEIVER_CLOCK_OFFSET_S` (seconds) sets where the clock starts, as it does for the product's
own calendar clock: the test command runs the date-sensitive tests a second time a year ahead
with it, so both sides agree on "today" (the variable is read here, not shared as code).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading

OFFSET_ENV = "RECEIVER_CLOCK_OFFSET_S"


def start_offset() -> dt.timedelta:
    raw = os.environ.get(OFFSET_ENV, "").strip()
    return dt.timedelta(seconds=float(raw)) if raw else dt.timedelta()


_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)


class Clock:
    """Real UTC time shifted by an offset that only moves forward."""

    def __init__(self) -> None:
        self._start = start_offset()
        self._offset = self._start
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self._offset

    @property
    def offset(self) -> dt.timedelta:
        return self._offset

    def advance(self, delta: dt.timedelta) -> dt.datetime:
        if delta < dt.timedelta():
            raise ValueError("the virtual clock only moves forward")
        with self._lock:
            self._offset += delta
        return self.now()

    def reset(self) -> None:
        with self._lock:
            self._offset = self._start


def iso(moment: dt.datetime) -> str:
    """Graph's format: UTC, seven fractional digits, `Z` (e.g. 2026-01-01T00:00:00.1234560Z)."""
    moment = moment.astimezone(dt.UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}0Z"


def parse_datetime(text: str) -> dt.datetime:
    """Parse an ISO 8601 DateTimeOffset (any fraction length); no zone means UTC."""
    match = _ISO.match(text.strip())
    if not match:
        raise ValueError(f"not a DateTimeOffset: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz: dt.tzinfo = dt.UTC
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        tz = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    moment = dt.datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tz
    )
    return moment.astimezone(dt.UTC)
