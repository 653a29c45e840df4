"""The CLI's one table printer (pure): every table of every command lines up the same way."""

from __future__ import annotations

from receiver.cli.table import table


def test_columns_padded_to_the_widest_cell_without_trailing_spaces() -> None:
    text = table([["a-1", "permanent", 3], ["a-22", "x", 12]], ["alert", "reason", "attempts"])
    assert text.splitlines() == [
        "alert  reason     attempts",
        "a-1    permanent  3",
        "a-22   x          12",
    ]


def test_right_aligned_columns() -> None:
    text = table(
        [("2026-11-30", "41.5", ""), ("2026-12-01", "142.25", "+100.75")],
        ("DATE", "SCORE", "CHANGE"),
        right={1, 2},
    )
    assert text.splitlines() == [
        "DATE         SCORE   CHANGE",
        "2026-11-30    41.5",
        "2026-12-01  142.25  +100.75",
    ]


def test_header_alone_when_there_are_no_rows() -> None:
    assert table([], ["stream", "stage"]) == "stream  stage"
