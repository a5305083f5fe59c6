"""A real Chromium (Debian's package, driven by Playwright) on the running platform."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from helpers import API_TOKEN
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from mlops.settings.platform import PlatformSettings

# Without the background-networking flags Chromium keeps trying to reach its vendor's
# services, which a closed network refuses.
_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    for candidate in (os.environ.get("MLOPS_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    pytest.fail("no Chromium: `make system-deps` installs it (or set MLOPS_CHROMIUM)")


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    # Package scope: Playwright's sync API keeps an event loop running in this thread
    # while it is open, which would stop later tests from using asyncio.run().
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=_chromium(), args=_FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def dashboard_url(platform, settings: PlatformSettings) -> str:
    return f"http://127.0.0.1:{settings.dashboard_port}/"


class Console:
    """Errors and warnings the page logged, and uncaught exceptions."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def on_message(self, message: ConsoleMessage) -> None:
        if message.type in {"error", "warning"}:
            self.problems.append(f"{message.type}: {message.text}")

    def on_error(self, error: Exception) -> None:
        self.problems.append(f"uncaught: {error}")


@pytest.fixture()
def open_page(browser: Browser, dashboard_url: str) -> Iterator:
    pages: list[tuple[Page, Console]] = []

    def _open(
        width: int = 1280, height: int = 1000, token: str | None = API_TOKEN
    ) -> tuple[Page, Console]:
        page = browser.new_page(viewport={"width": width, "height": height})
        console = Console()
        page.on("console", console.on_message)
        page.on("pageerror", console.on_error)
        # As `make up` prints it: the token in the fragment, which never leaves the browser.
        page.goto(f"{dashboard_url.rstrip('/')}/#token={token}" if token else dashboard_url)
        page.wait_for_selector("#connection[data-state=live]", timeout=15_000)
        pages.append((page, console))
        return page, console

    yield _open
    for page, _ in pages:
        page.close()
