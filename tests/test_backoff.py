"""The one backoff module every retry loop uses (pure functions, rng pinned)."""

from __future__ import annotations

import asyncio

import pytest

from receiver import backoff


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 0.0), (1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (10_000, 30.0)],
)
def test_exponential_doubles_from_base_and_caps(attempt: int, expected: float) -> None:
    assert backoff.exponential(attempt, 0.5, 30.0) == expected


def test_full_jitter_is_uniform_below_the_delay() -> None:
    assert backoff.full_jitter(8.0, rng=lambda: 0.0) == 0.0
    assert backoff.full_jitter(8.0, rng=lambda: 0.999) == pytest.approx(7.992)
    assert backoff.full_jitter(-1.0, rng=lambda: 0.5) == 0.0


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 80.0), (0.5, 100.0), (1.0, 120.0)])
def test_spread_moves_a_delay_by_up_to_the_fraction(draw: float, expected: float) -> None:
    assert backoff.spread(100.0, 0.2, rng=lambda: draw) == pytest.approx(expected)


def test_spread_never_negative_and_retry_after_never_earlier() -> None:
    assert backoff.spread(1.0, 5.0, rng=lambda: 0.0) == 0.0
    assert backoff.after(10.0, 0.2, rng=lambda: 0.0) == 10.0
    assert backoff.after(10.0, 0.2, rng=lambda: 1.0) == pytest.approx(11.0)


async def test_pause_waits_for_the_stop_or_the_time() -> None:
    stop = asyncio.Event()
    assert await backoff.pause(stop, 0.01) is False
    stop.set()
    assert await backoff.pause(stop, 60) is True


async def test_a_swallowed_cancellation_still_ends_a_loop_at_its_pause() -> None:
    """A client library that swallows a cancellation (as a Redis call cancelled mid-command
    can) must not leave a cancelled loop pausing forever: the worker hung on cancel so."""
    stop = asyncio.Event()
    swallowed = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            try:
                await asyncio.sleep(60)  # stands for the library call
            except asyncio.CancelledError:
                swallowed.set()  # ... that swallowed it
            await backoff.pause(stop, 60)

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert swallowed.is_set() and task.cancelled()
