"""The page of the local control plane in a real headless Chromium (``make test-browser``).

Debian's ``chromium`` (``JES_CHROMIUM`` names another binary) driven by Playwright from PyPI;
Playwright's own browser download is not used. ``make test`` does not collect this folder
(``--ignore=tests/browser`` in pyproject.toml): it needs the browser and the ``browser`` extra.

Each test gets a control plane seeded with the hello-world and jes with the local runner, both
in-process (jes on its own event loop in a thread, as the sync Playwright API owns this one), and
a page that fails the test on any console error, uncaught exception or URL holding the token.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, sync_playwright

from jes import settings
from jes.devtools import examples
from jes.devtools.controlplane.server import LocalControlPlane
from tests.service.support import jes_settings, running

TOKEN = "page-test-t0ken-9f4e2"
VIEWPORT = {"width": 1280, "height": 800}


def chromium_path() -> str:
    path = os.environ.get("JES_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("no chromium: install Debian's package (sudo apt-get install -y chromium) or set JES_CHROMIUM")
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def plane() -> Iterator[LocalControlPlane]:
    with LocalControlPlane(token=TOKEN, seed_dir=examples.HELLO_WORLD_SEED, datastore_lag_s=0.3) as cp:
        yield cp


class JesThread:
    """``jes serve`` (local runner) on its own event loop in a background thread."""

    def __init__(self, current: settings.Settings) -> None:
        self._settings = current
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="jes-under-test", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by stop()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with running(self._settings):
            self._ready.set()
            await self._stop.wait()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(30), "jes did not start"
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "jes did not stop"
        if self._error is not None:
            raise self._error


@pytest.fixture
def jes(plane: LocalControlPlane, tmp_path: Path) -> Iterator[JesThread]:
    service = JesThread(jes_settings(plane, tmp_path / "jes-state"))
    service.start()
    plane.wait_for(lambda: any(i["name"] == "job-executor-service" for i in plane.integrations()), timeout_s=10)
    yield service
    service.stop()


@dataclass
class Watched:
    """What the page did: console errors, uncaught exceptions, every request."""

    errors: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)

    def expect_console(self, text: str) -> None:
        """A console message a test provokes (Chromium logs every non-2xx answer to fetch)."""
        self.expected.append(text)

    def console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning") and not any(e in message.text for e in self.expected):
            self.errors.append(f"console {message.type}: {message.text}")

    def request(self, request: Request) -> None:
        self.requests.append(request)

    def page_error(self, error: Exception) -> None:
        self.errors.append(f"uncaught: {error}")


@pytest.fixture
def watched() -> Watched:
    return Watched()


@pytest.fixture
def page(browser: Browser, plane: LocalControlPlane, watched: Watched) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, base_url=plane.base_url)
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    opened.on("console", watched.console)
    opened.on("pageerror", watched.page_error)
    opened.on("request", watched.request)
    yield opened
    context.close()
    assert watched.errors == []
    leaking = [r.url for r in watched.requests if TOKEN in r.url]
    assert leaking == [], "the token must never be part of a URL"


def connect(page: Page, token: str = TOKEN) -> None:
    """Open the page and give it the token, as a user does once per browser session."""
    page.goto("/")
    page.get_by_label("Keptn API token").fill(token)
    page.get_by_role("button", name="Connect").click()
