"""Headless Chromium for the tests that look at pages: offline, one screenshot per page.

Chromium is Debian's package (`.ci/run` installs it). Without it these tests skip, unless
ARRISK_REQUIRE_BROWSER=1 (set by CI) turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def chromium() -> str:
    """The Chromium executable, or a skip (a failure under ARRISK_REQUIRE_BROWSER=1)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("ARRISK_REQUIRE_BROWSER") == "1":
        pytest.fail("chromium is required (ARRISK_REQUIRE_BROWSER=1) but not installed")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 2400) -> Path:
    """Render a local page with every network request refused, and save a screenshot of it."""
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               # No DNS and no proxy that answers: anything the page fetched from a network would fail.
               "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
               "--virtual-time-budget=15000",  # let the page's scripts draw before the shot
               f"--window-size={width},{height}", f"--screenshot={png}", page.resolve().as_uri()]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return png


def distinct_colours(png: Path) -> int:
    """How many colours the screenshot holds (a blank page has one or two)."""
    from matplotlib.image import imread

    pixels = imread(png)[..., :3].reshape(-1, 3)
    return len({tuple(row) for row in (pixels[:: max(1, len(pixels) // 50_000)] * 255).astype(int)})
