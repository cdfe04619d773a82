"""Debian's headless Chromium driven by Playwright, for the browser tests; never a browser of
Playwright's own (no `playwright install`).

Without /usr/bin/chromium (or the playwright package) a browser test skips with the reason,
unless AURORA_REQUIRE_BROWSER=1 (CI), where the absence is a failure. Screenshots go under
test-artifacts/<name>/ at the repository root, or $AURORA_TEST_ARTIFACTS/<name>/: `nox -s
tests` runs the suite in a clean checkout of the commit and names the working tree's folder,
so that they outlive the checkout.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
REPOSITORY = Path(__file__).resolve().parents[1]


def artifacts(name: str) -> Path:
    """The folder for the screenshots of the browser test `name` (created on first use)."""
    folder = Path(os.environ.get("AURORA_TEST_ARTIFACTS") or REPOSITORY / "test-artifacts") / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def browser_missing(reason: str) -> NoReturn:
    """Skip with `reason`, or fail when AURORA_REQUIRE_BROWSER=1 demands the browser."""
    if os.environ.get("AURORA_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (AURORA_REQUIRE_BROWSER=1: CI must run the browser test)")
    pytest.skip(reason)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Chromium launched headless from /usr/bin/chromium, closed when the block ends."""
    if not CHROMIUM.is_file():
        browser_missing(f"no Chromium at {CHROMIUM}: install Debian's (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_missing("the playwright Python package is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
