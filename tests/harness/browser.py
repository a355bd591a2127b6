"""A real browser for the console's tests: Debian's chromium driven by Playwright.

Playwright's own browser download is unreachable here, so the system's chromium is
launched (installed by ``.ci/system-deps.sh``); ``--no-sandbox`` because tests run as root.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

__all__ = ["CHROMIUM", "browser", "pixel_spread", "sign_in"]

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Headless chromium for the session; the tests fail saying how to install it."""
    executable = shutil.which("chromium") or shutil.which(str(CHROMIUM))
    if executable is None:
        raise AssertionError("no chromium: run .ci/system-deps.sh (apt-get install chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(executable), args=["--no-sandbox", "--headless=new"]
        )
        yield launched
        await launched.close()


async def sign_in(page: Page, api_url: str, token: str) -> None:
    """Sign in to the console with ``token`` through its form."""
    await page.goto(f"{api_url}/console/")
    assert page.url.endswith("/console/sign-in"), page.url
    await page.fill("input[name=token]", token)
    await page.click("form[action='/console/sign-in'] button")
    await page.wait_for_url(f"{api_url}/console/")


def pixel_spread(png: bytes) -> float:
    """The standard deviation of a PNG's grey levels: near 0 for a blank image."""
    import io
    import math

    from PIL import Image

    counts = Image.open(io.BytesIO(png)).convert("L").histogram()
    pixels = sum(counts)
    mean = sum(level * n for level, n in enumerate(counts)) / pixels
    return math.sqrt(sum(n * (level - mean) ** 2 for level, n in enumerate(counts)) / pixels)
