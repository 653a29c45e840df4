"""The simulator process keeps what it stores out of the cyclic collector's sight
(receiver.simulator.app.keep_out_of_gc): full collections over tens of thousands of stored
alerts stopped it for up to 250 ms in the pipeline benchmark."""

from __future__ import annotations

import argparse
import asyncio
import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from receiver.simulator.app import keep_out_of_gc
from receiver.simulator.cli import GC_FREEZE_EVERY_S, add_arguments, build_config
from receiver.simulator.config import SimulatorConfig
from tests.fixtures.waiting import wait_until_async


async def _until(done: Callable[[], bool]) -> None:
    await wait_until_async(_now, lambda _: done(), what="the collector's state")


async def _now() -> None:
    return None


async def test_young_collections_then_freeze_and_a_full_pass_now_and_then() -> None:
    full_unfrozen: list[int] = []  # full collections that ran with nothing frozen

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 2 and gc.get_freeze_count() == 0:
            full_unfrozen.append(1)

    kept: list[list[int]] = [[] for _ in range(1000)]  # stored state the collector tracks
    task = asyncio.create_task(keep_out_of_gc(0.01, full_every_s=0.3))
    try:
        await _until(lambda: gc.get_freeze_count() >= len(kept))  # frozen within a tick
        gc.callbacks.append(seen)
        await _until(lambda: bool(full_unfrozen))  # then a full pass over what was frozen
        await _until(lambda: gc.get_freeze_count() >= len(kept))  # and frozen again
    finally:
        task.cancel()
        if seen in gc.callbacks:
            gc.callbacks.remove(seen)
        gc.unfreeze()


def test_only_a_simulator_process_of_its_own_does_it(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = build_config(parser.parse_args([]), tmp_path)
    assert config.gc_freeze_every_s == GC_FREEZE_EVERY_S > 0
    assert SimulatorConfig().gc_freeze_every_s == 0  # embedded in the tests' own process
