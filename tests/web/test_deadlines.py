"""One sweep for many deadlines: expired ones fire once, removed ones never, and nothing is
scheduled while nothing waits."""

from __future__ import annotations

import asyncio

from receiver.web.deadlines import Deadlines


async def test_expired_fire_once_removed_never_and_the_sweep_stops() -> None:
    d = Deadlines(0.01)
    fired: list[str] = []
    d.add("short", 0.02, lambda: fired.append("short"))
    d.add("long", 5.0, lambda: fired.append("long"))
    d.add("removed", 0.02, lambda: fired.append("removed"))
    d.remove("removed")
    await asyncio.sleep(0.1)
    assert fired == ["short"] and len(d) == 1
    d.remove("long")
    await asyncio.sleep(0.05)
    assert fired == ["short"] and len(d) == 0
    assert d._handle is None  # nothing left: no sweep scheduled
    d.add("again", 0.0, lambda: fired.append("again"))
    await asyncio.sleep(0.05)
    assert fired == ["short", "again"]
