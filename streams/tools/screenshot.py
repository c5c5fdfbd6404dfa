"""``repricer demo --screenshot PATH``: a PNG of the worker's dashboard, taken by headless Chromium.

Chromium is optional (Debian's ``chromium`` package, which ``make deps`` installs, or any binary
named by ``REPRICER_CHROMIUM``); without it the demo stops before it starts anything, with a
message saying what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

WINDOW = "1400,1000"
# virtual time the page runs before the shot: its first poll, the SKU's charts, a second poll
BUDGET_MS = 6000


class ChromiumMissing(RuntimeError):
    pass


def find_chromium() -> str:
    """The Chromium binary: ``REPRICER_CHROMIUM``, else ``chromium`` or ``chromium-browser``."""
    for name in (os.environ.get("REPRICER_CHROMIUM", ""), "chromium", "chromium-browser"):
        path = shutil.which(name) if name else None
        if path:
            return path
    raise ChromiumMissing(
        "--screenshot needs Chromium: install Debian's `chromium` package (`make deps` does), "
        "or set REPRICER_CHROMIUM to a Chromium binary"
    )


def capture(url: str, out: Path, *, chromium: str, timeout: float = 120) -> int:
    """Load ``url`` in headless Chromium and write a PNG of the window to ``out``; its size."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="repricer-chromium-") as profile:
        proc = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={WINDOW}",
                f"--virtual-time-budget={BUDGET_MS}",
                f"--screenshot={out}",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(
            f"chromium exited with {proc.returncode} and wrote no screenshot: "
            + proc.stderr.strip()[-2000:]
        )
    return out.stat().st_size
