"""How long to wait before trying again: one place for every retry loop's formula.

- :func:`exponential`: ``base * 2**(attempt-1)``, capped (Redis connects, a stage loop riding
  out Redis, Graph calls);
- :func:`full_jitter`: a uniform wait up to that (AWS's "full jitter": many clients that
  failed together do not retry together);
- :func:`spread`: a fixed delay moved by up to ``± fraction`` (the deliver stage's schedule);
- :func:`after`: a server's Retry-After, never earlier, a little later.

Randomness comes from ``rng`` (``random.random`` by default) so tests can pin it. The loops
themselves stay where their decisions are (which errors retry, budgets, Retry-After parsing).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

Rng = Callable[[], float]


def exponential(attempt: int, base_s: float, cap_s: float) -> float:
    """``base_s`` for the first attempt, doubling after each, never above ``cap_s``."""
    if attempt < 1:
        return 0.0
    return float(min(cap_s, base_s * 2 ** min(attempt - 1, 64)))


def full_jitter(delay_s: float, rng: Rng = random.random) -> float:
    """A wait drawn uniformly from ``[0, delay_s)``."""
    return max(0.0, delay_s) * rng()


def spread(delay_s: float, fraction: float, rng: Rng = random.random) -> float:
    """``delay_s`` moved by up to ``± fraction`` of itself, never below 0."""
    return max(0.0, delay_s + delay_s * fraction * (2 * rng() - 1))


def after(retry_after_s: float, fraction: float, rng: Rng = random.random) -> float:
    """A server's Retry-After, never earlier and at most ``fraction / 2`` later."""
    return retry_after_s + retry_after_s * fraction / 2 * rng()


async def pause(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``stop`` is set, whichever comes first; True when stopped.

    ``asyncio.timeout``, not ``asyncio.wait_for``: on Python 3.11, ``wait_for`` swallows a
    cancellation that arrives as its inner wait completes, and a loop around it went on
    forever in a task its TaskGroup had cancelled (the worker hung on cancel). A cancellation
    that a client library swallowed (a Redis call cancelled mid-command) ends the loop here
    too: a task being cancelled does not pause, it stops."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return False
    return True
