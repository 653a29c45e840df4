"""The trend chart, decoded with Pillow and checked by its pixels: the score line where the
layout says, falling at the drop day; the maximum line; text; the same bytes every time."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from PIL import Image

from receiver.securescore import chart
from receiver.securescore.chart import LINE_COLOR, MAX_COLOR, Layout, render

DATES = [(dt.date(2026, 2, 1) + dt.timedelta(days=i)).isoformat() for i in range(30)]
# Day 20 (index 19) drops by 40 points and stays down.
SCORES = [200.0 + i * 0.5 - (40.0 if i >= 19 else 0.0) for i in range(30)]


def _near(color: tuple[int, int, int], wanted: tuple[int, int, int], tol: int = 40) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(color, wanted, strict=True))


def _line_rows(image: Image.Image, x: int, color: tuple[int, int, int]) -> list[int]:
    pixels = image.load()
    assert pixels is not None
    return [y for y in range(image.height) if _near(pixels[x, y], color)]


@pytest.fixture(scope="module")
def png() -> bytes:
    return render(DATES, SCORES, 350.0, title="Secure Score, contoso")


def test_is_a_png_of_the_documented_size(png: bytes) -> None:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (chart.WIDTH, chart.HEIGHT)
    assert png == render(DATES, SCORES, 350.0, title="Secure Score, contoso")  # deterministic


def test_the_score_line_follows_the_scores_and_falls_at_day_20(png: bytes) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    layout = Layout.of(SCORES, 350.0)
    assert layout.top_value >= 350
    heights = {}
    for i in (0, 10, 18, 19, 25, 29):
        x = layout.x(i)
        rows = _line_rows(image, x, LINE_COLOR)
        assert rows, f"no score line at day {i + 1}"
        expected = layout.y(SCORES[i])
        assert min(abs(y - expected) for y in rows) <= 3, (i, rows, expected)
        heights[i] = sum(rows) / len(rows)
    # Pixel y grows downwards: after the drop the line sits clearly lower.
    assert heights[19] - heights[18] >= (layout.y(SCORES[19]) - layout.y(SCORES[18])) - 4
    assert heights[19] > heights[18] + 10
    assert heights[29] < heights[19]  # and recovers a little
    # Between day 1 and day 19 it only rises (the y pixel shrinks).
    assert heights[18] < heights[0]


def test_maximum_reference_line_and_labels(png: bytes) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    layout = Layout.of(SCORES, 350.0)
    left, top, right, bottom = layout.plot
    y_max = layout.y(350.0)
    pixels = image.load()
    assert pixels is not None
    dashes = [x for x in range(left, right) if _near(pixels[x, y_max], MAX_COLOR)]
    assert len(dashes) > (right - left) // 3  # dashed: well over a third of the width
    assert len(dashes) < (right - left)  # ... and not solid
    # Text (dark pixels) in the title row, left of the y axis and below the x axis.
    dark = [
        (x, y) for x in range(image.width) for y in range(image.height) if sum(pixels[x, y]) < 300
    ]
    assert any(y < top for _, y in dark), "no title"
    assert any(x < left - 4 for x, _ in dark), "no y axis labels"
    assert any(y > bottom + 4 for _, y in dark), "no date labels"


def test_degenerate_inputs() -> None:
    one = Image.open(io.BytesIO(render(DATES[:1], [10.0], 0.0)))
    assert one.size == (chart.WIDTH, chart.HEIGHT)
    with pytest.raises(ValueError, match="one date per score"):
        render(DATES[:2], [1.0], 10.0)
