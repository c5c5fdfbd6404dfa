"""``repricer demo --screenshot``: a short demo, then the PNG headless Chromium took of the live
dashboard is decoded and must show the charts drawn (their colours well beyond the legend's
swatches, which are all an empty page has: 88 pixels each at 1400x1000)."""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from pathlib import Path

import pytest

from repricer.streams.tools.demo import run_demo
from repricer.streams.tools.screenshot import ChromiumMissing, find_chromium

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PRICE, CHANGE, FORECAST = "2563eb", "dc2626", "9333ea"  # agents/dashboard.html's chart colours


def png_colours(data: bytes) -> tuple[int, int, Counter[str]]:
    """Width, height and the count of each RGB colour of an 8-bit RGB(A) PNG (stdlib only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, head = 8, b"", b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IHDR":
            head = data[pos + 8 : pos + 8 + n]
        elif kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + n]
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", head)
    assert depth == 8 and ctype in (2, 6) and not interlace, (depth, ctype, interlace)
    bpp = 3 if ctype == 2 else 4
    raw, stride = zlib.decompress(idat), w * bpp
    prev, colours = bytearray(stride), Counter[str]()
    for y in range(h):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        colours.update(line[i : i + 3].hex() for i in range(0, stride, bpp))
        prev = line
    return w, h, colours


def test_demo_screenshot_shows_a_populated_dashboard(tmp_path: Path) -> None:
    try:
        find_chromium()
    except ChromiumMissing as e:
        pytest.fail(f"{e} (`make deps` installs it)", pytrace=False)
    shot = tmp_path / "docs" / "dashboard.png"
    report = run_demo(
        workdir=tmp_path / "demo",
        skus=6,
        minutes=40,
        speed=240.0,
        seed=7,
        poison_every=0,
        quiet=True,
        screenshot=shot,
    )
    assert report["price_changes"] > 0 and report["clickhouse_rows"]["forecasts"] > 0
    w, h, colours = png_colours(shot.read_bytes())
    assert (w, h) == (1400, 1000)
    drawn = {c: colours[c] for c in (PRICE, CHANGE, FORECAST)}
    assert all(n > 300 for n in drawn.values()), drawn
