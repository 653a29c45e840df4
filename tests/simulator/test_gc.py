"""The simulator process keeps what it stores out of the cyclic collector's sight
(receiver.simulator.app.keep_out_of_gc): full collections over tens of thousands of stored
alerts stopped it for up to 250 ms in the pipeline benchmark."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from receiver.simulator.cli import GC_FREEZE_EVERY_S, add_arguments, build_config
from receiver.simulator.config import SimulatorConfig

# Run in a process of its own, as the simulator's is: a full collection in the tests' process
# would meet the garbage other tests left (unclosed sockets) and warn about it here.
PROBE = """
import asyncio, gc, json, time
from receiver.simulator.app import keep_out_of_gc

kept = [[] for _ in range(1000)]  # stored state: containers the collector tracks
seen = []  # (generation, objects frozen) at the start of each collection
gc.callbacks.append(lambda phase, info: phase == "start" and seen.append(
    (info["generation"], gc.get_freeze_count())))

async def main():
    task = asyncio.create_task(keep_out_of_gc(0.01, full_every_s=0.3))
    deadline = time.monotonic() + 10
    while gc.get_freeze_count() < len(kept) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    frozen_at = len(seen)
    while not any(g == 2 and n == 0 for g, n in seen[frozen_at:]):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    task.cancel()
    print(json.dumps({"seen": seen, "frozen_at": frozen_at, "frozen": gc.get_freeze_count()}))

asyncio.run(main())
"""


def test_young_collections_then_freeze_and_a_full_pass_now_and_then() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(out.stdout)
    seen = [tuple(s) for s in result["seen"]]
    before, after = seen[: result["frozen_at"]], seen[result["frozen_at"] :]
    assert (1, 0) in before  # a young collection, then everything frozen
    # then a full pass over what was frozen (unfrozen first), and frozen again after it
    assert (2, 0) in after
    assert result["frozen"] >= 1000


def test_only_a_simulator_process_of_its_own_does_it(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = build_config(parser.parse_args([]), tmp_path)
    assert config.gc_freeze_every_s == GC_FREEZE_EVERY_S > 0
    assert SimulatorConfig().gc_freeze_every_s == 0  # embedded in the tests' own process
