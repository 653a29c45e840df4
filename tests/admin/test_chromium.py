"""Acceptance: the status page in real headless Chromium (Debian's `chromium`).

The page is served by the admin server on a deployment the real pipeline filled; Chromium
loads it with its Content-Security-Policy, runs the shipped Adaptive Cards renderer and the
page's script. Checked twice: the DOM after the scripts ran (the cards are rendered, the
attacker's title is text, no script of theirs ran) and a screenshot (the cards' severity
colours are painted where the cards are, with text on them).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from tests.admin.conftest import CALM_TITLE, EVIL_TITLE, Deployment

# The Adaptive Cards renderer's default container styles: the Teams template gives a high
# alert's header the "attention" style and a medium one "warning".
ATTENTION = (0xFF, 0xC5, 0xB2)
WARNING = (0xFF, 0xE2, 0xB2)
CARD_TEXT = (0x33, 0x33, 0x33)
WIDTH, HEIGHT = 1280, 2000


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "the status page tests need Chromium: sudo apt-get install -y chromium", pytrace=False
        )
    return found


def _run(url: str, profile: Path, *extra: str) -> str:
    args = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        "--virtual-time-budget=5000",
        *extra,
        url,
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture
async def status_url(deployment: Deployment) -> AsyncIterator[str]:
    server = deployment.admin().start()
    try:
        yield f"http://127.0.0.1:{server.port}/status"
    finally:
        server.stop()


def _cards(dom: str) -> list[str]:
    """The text of each card the renderer put into the DOM."""
    blocks = re.findall(
        r'<div class="card rendered" id="card-\d+">(.*?)</div>\s*<script', dom, re.S
    )
    return [re.sub(r"<[^>]+>", " ", block) for block in blocks]


async def test_cards_rendered_in_the_dom(status_url: str, tmp_path: Path) -> None:
    dom = await asyncio.to_thread(_run, status_url, tmp_path / "profile", "--dump-dom")
    assert dom.count('class="ac-container ac-adaptiveCard"') == 2
    cards = _cards(dom)
    assert len(cards) == 2
    escaped = EVIL_TITLE.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert sum(escaped in card for card in cards) == 1
    assert sum(CALM_TITLE in card for card in cards) == 1
    assert all("Open in Microsoft Defender" in card and "Severity" in card for card in cards)
    # The title went in as text: no script of the attacker's ran, no element of theirs exists.
    assert re.search(r"<title>receiver status: ATTENTION NEEDED</title>", dom)
    assert "pwned</title>" not in dom and "<img" not in dom
    assert dom.count("<script") == 4
    assert "card preview failed" not in dom and "did not load" not in dom


def _box(image: Image.Image, colour: tuple[int, int, int]) -> tuple[int, int, int, int, int]:
    """(left, top, right, bottom, count) of the pixels of exactly ``colour``."""
    mask = Image.new("L", image.size)
    mask.putdata([255 if p == colour else 0 for p in image.get_flattened_data()])
    box = mask.getbbox()
    assert box is not None, f"no pixel of #{bytes(colour).hex()} in the screenshot"
    return (*box, sum(1 for p in mask.get_flattened_data() if p))


async def test_screenshot_shows_the_cards(status_url: str, tmp_path: Path) -> None:
    shot = tmp_path / "status.png"
    await asyncio.to_thread(_run, status_url, tmp_path / "profile", f"--screenshot={shot}")
    image = Image.open(shot).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    # The page is not blank: most of it is background, but there is plenty of text.
    dark = sum(1 for p in image.get_flattened_data() if sum(p) < 200)
    assert dark > 5000
    for colour in (ATTENTION, WARNING):
        left, top, right, bottom, count = _box(image, colour)
        # A card header: a solid block in the right-hand column, under the tables.
        assert left > WIDTH // 2 and right - left > 300 and bottom - top > 40, colour
        assert count > 0.8 * (right - left) * (bottom - top) * 0.5
        header = image.crop((left, top, right, bottom))
        text = sum(1 for p in header.get_flattened_data() if p == CARD_TEXT or sum(p) < 300)
        assert text > 200, f"no text on the #{bytes(colour).hex()} card header"
