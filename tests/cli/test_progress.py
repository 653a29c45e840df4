"""The progress display: plain lines when not on a terminal, one rewritten line on a pty."""

from __future__ import annotations

import io
import os
import re

import pytest

from receiver.cli.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_not_a_tty_prints_a_line_every_n_items() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress("dlq replay", 25, stream=out, every=10, every_s=3600, clock=clock) as p:
        for _ in range(25):
            clock.now += 0.5
            p.advance()
    lines = out.getvalue().splitlines()
    assert lines == [
        "dlq replay: 10/25 (40%), 2.0/s, 0:05 elapsed, ~0:07 left",
        "dlq replay: 20/25 (80%), 2.0/s, 0:10 elapsed, ~0:02 left",
        "dlq replay: 25/25 (100%), 2.0/s, 0:12 elapsed (done)",
    ]
    assert "\r" not in out.getvalue()


def test_not_a_tty_prints_a_line_every_so_many_seconds_without_total() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress("backfill contoso", stream=out, every=1000, every_s=10, clock=clock)
    for _ in range(7):
        clock.now += 4
        progress.advance(3)
    progress.close()
    progress.close()  # once only
    assert out.getvalue().splitlines() == [
        "backfill contoso: 9, 0.8/s, 0:12 elapsed",
        "backfill contoso: 18, 0.8/s, 0:24 elapsed",
        "backfill contoso: 21, 0.8/s, 0:28 elapsed (done)",
    ]


def test_failure_says_stopped() -> None:
    out = io.StringIO()
    with pytest.raises(RuntimeError), Progress("x", 3, stream=out, clock=Clock()) as p:
        p.advance()
        raise RuntimeError("boom")
    assert out.getvalue().endswith("(stopped)\n")


def test_tty_rewrites_one_line_on_a_pty() -> None:
    master, slave = os.openpty()
    clock = Clock()
    try:
        with open(slave, "w", encoding="utf-8", closefd=True) as stream:
            assert stream.isatty()
            with Progress("dlq replay", 3000, stream=stream, clock=clock) as p:
                for _ in range(3000):
                    clock.now += 0.001  # a redraw every 100 items (0.1 s)
                    p.advance()
        data = b""
        while not data.endswith(b"(done)\r\n"):  # the pty turns \n into \r\n
            data += os.read(master, 65536)
    finally:
        os.close(master)
    text = data.decode()
    assert text.count("\n") == 1  # one line, redrawn in place
    frames = [f for f in text.rstrip("\r\n").split("\r") if f]
    assert 25 <= len(frames) <= 31
    counts = [int(m.group(1)) for f in frames if (m := re.match(r"dlq replay: (\d+)/3000", f))]
    assert counts == sorted(counts) and counts[-1] == 3000
    assert frames[-1].startswith("dlq replay: 3000/3000 (100%), 1000.0/s, 0:03 elapsed (done)")
    widths = {len(f) for f in frames[:-1]}
    assert len(widths) <= 3  # later frames pad to cover the earlier ones
