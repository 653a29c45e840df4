"""The Secure Score trend as a PNG, for the email digest (inline, ``cid:``).

Pillow draws it: a line of the daily score, the maximum as a dashed reference line, a y axis
from 0 (a truncated axis would make a small dip look like a cliff), labelled grid lines, dates
under the x axis. The same points give the same bytes (Pillow's bundled font, no timestamps in
the PNG), so a chart can be tested by its pixels: :class:`Layout` says where each point is.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 720, 320
LEFT, RIGHT, TOP, BOTTOM = 64, 28, 44, 56  # margins around the plot area
BACKGROUND = (255, 255, 255)
LINE_COLOR = (0, 120, 212)  # the score
MAX_COLOR = (209, 52, 56)  # the maximum (reference)
GRID_COLOR = (225, 223, 221)
TEXT_COLOR = (50, 49, 48)
LINE_WIDTH = 3


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / ticks
    magnitude = float(10 ** math.floor(math.log10(raw)))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the chart puts things: the plot area and the value -> pixel mappings."""

    count: int  # points on the line
    top_value: float  # the y axis' upper end (the axis starts at 0)
    step: float  # between grid lines

    @classmethod
    def of(cls, scores: Sequence[float], maximum: float) -> Layout:
        highest = max([maximum, *scores, 1.0])
        step = _nice_step(highest)
        return cls(len(scores), math.ceil(highest / step) * step, step)

    @property
    def plot(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the plot area."""
        return LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM

    def x(self, index: int) -> int:
        left, _, right, _ = self.plot
        if self.count <= 1:
            return (left + right) // 2
        return round(left + index * (right - left) / (self.count - 1))

    def y(self, value: float) -> int:
        _, top, _, bottom = self.plot
        return round(bottom - max(0.0, value) / self.top_value * (bottom - top))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _dashed(draw: ImageDraw.ImageDraw, y: int, x0: int, x1: int) -> None:
    for x in range(x0, x1, 12):
        draw.line([(x, y), (min(x + 7, x1), y)], fill=MAX_COLOR, width=2)


def render(
    dates: Sequence[str], scores: Sequence[float], maximum: float, *, title: str = "Secure Score"
) -> bytes:
    """The PNG of ``scores`` (one per date, oldest first) against ``maximum``."""
    if len(dates) != len(scores):
        raise ValueError("one date per score")
    layout = Layout.of(scores, maximum)
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    small, label = _font(11), _font(12)
    left, top, right, bottom = layout.plot
    draw.text((LEFT, 12), title, fill=TEXT_COLOR, font=_font(15))

    value = 0.0
    while value <= layout.top_value + 1e-9:  # grid and y tick labels
        y = layout.y(value)
        draw.line([(left, y), (right, y)], fill=GRID_COLOR, width=1)
        draw.text((left - 8, y), f"{value:g}", fill=TEXT_COLOR, font=small, anchor="rm")
        value += layout.step
    draw.line([(left, top), (left, bottom), (right, bottom)], fill=TEXT_COLOR, width=1)
    draw.text((16, (top + bottom) // 2), "Score", fill=TEXT_COLOR, font=label, anchor="mm")
    draw.text(
        ((left + right) // 2, HEIGHT - 14), "Date (UTC)", fill=TEXT_COLOR, font=label, anchor="mm"
    )

    if maximum > 0:
        y = layout.y(maximum)
        _dashed(draw, y, left, right)
        draw.text((right, y - 4), f"max {maximum:g}", fill=MAX_COLOR, font=small, anchor="rb")

    if scores:
        # Date labels: the first, the last and every 7th day between (MM-DD).
        shown = {0, len(dates) - 1} | set(range(0, len(dates) - 3, 7))
        for i in sorted(shown):
            x = layout.x(i)
            draw.line([(x, bottom), (x, bottom + 4)], fill=TEXT_COLOR, width=1)
            draw.text((x, bottom + 8), dates[i][5:10], fill=TEXT_COLOR, font=small, anchor="mt")
        points = [(layout.x(i), layout.y(s)) for i, s in enumerate(scores)]
        if len(points) > 1:
            draw.line(points, fill=LINE_COLOR, width=LINE_WIDTH, joint="curve")
        for x, y in points:
            draw.ellipse([(x - 3, y - 3), (x + 3, y + 3)], fill=LINE_COLOR)
        last_x, last_y = points[-1]
        draw.text(
            (last_x - 6, last_y - 8), f"{scores[-1]:g}", fill=LINE_COLOR, font=label, anchor="rb"
        )

    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
