"""Debian's Chromium for the tests that drive a real browser (Swagger UI with selenium, the web front with
Playwright): where it is and how it starts here (headless, as root, on a machine with no outside network)."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

#: Flags for every run: no sandbox (CI runs as root), no GPU, and none of the background connections a
#: closed network refuses (updates, sync, component downloads, QUIC).
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
