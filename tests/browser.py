"""Headless Chromium for the report tests: console errors, screenshots and page width."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=5000",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Debian's chromium is missing; .ci/run installs it (apt-get install chromium)")
    return found


def render(page: Path, shot: Path, profile: Path) -> list[str]:
    """Screenshot ``page`` in headless Chromium; return its console error lines."""
    result = subprocess.run(
        [
            chromium(),
            *_FLAGS,
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,1600",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file(), result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    return [line for line in console if "Uncaught" in line or "Error" in line]


# Written into the DOM once the page and its plots have laid out, for --dump-dom to read.
_PROBE = (
    "<script>window.addEventListener('load',()=>setTimeout(()=>{"
    "const p=document.createElement('pre');p.id='width-probe';"
    "p.textContent=JSON.stringify({scroll:document.documentElement.scrollWidth,"
    "viewport:window.innerWidth});document.body.appendChild(p)},500))</script>"
)


def page_width(page: Path, profile: Path, width: int = 1400) -> tuple[int, int]:
    """(scroll width, viewport width) of ``page`` in a ``width`` px wide window; a page
    that scrolls sideways has the first larger than the second."""
    probe = page.with_name(f"width-probe-{page.name}")
    probe.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    try:
        result = subprocess.run(
            [
                chromium(),
                *_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},1000",
                "--dump-dom",
                probe.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        probe.unlink()
    found = re.search(r'<pre id="width-probe">([^<]*)</pre>', result.stdout)
    assert found, result.stderr[-2000:]
    sizes = json.loads(found[1])
    return sizes["scroll"], sizes["viewport"]
