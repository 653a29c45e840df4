"""The one table printer of the CLI: columns padded to their widest cell, two spaces apart.

Every command that prints a table (dead letters, silences, status, subscriptions, Secure
Score) goes through :func:`table`, so they all line up the same way and a column that holds
numbers can be right-aligned where the reader compares them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

__all__ = ["table"]


def table(
    rows: Sequence[Sequence[object]], header: Sequence[str], right: Collection[int] = ()
) -> str:
    """``header`` then ``rows`` as text lines, cells padded to their column's width (the
    columns in ``right`` right-aligned), without trailing spaces."""
    cells = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in cells
    )
