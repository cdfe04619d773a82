"""/docs and /redoc in a real browser, with no network: Debian's headless Chromium via Playwright.

The API runs for real (uvicorn in a child process, a migrated SQLite file, a key made with
`crm-core keys create`). Every request the browser makes to any other origin is refused and
recorded, and the test fails if there was one: the pages must work on a machine without
internet. In Swagger UI the key is given through "Authorize", and "Try it out" on
`GET /pipelines` must answer 200. A full-page PNG of each page is saved under
test-artifacts/docs/ at the repository root (or $AURORA_TEST_ARTIFACTS/docs/).

Chromium is never downloaded: without /usr/bin/chromium the test skips, unless
AURORA_REQUIRE_BROWSER=1 (CI), where its absence is a failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from tests.bdd.support.live_server import LiveServer, live_server
from tests.browser import artifacts, chromium

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

LOCAL_SCHEMES = ("data:", "blob:", "about:")
"""URLs that never leave the browser."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("docs-browser")) as running:
        yield running


@dataclass
class Tab:
    page: Page
    refused: list[str] = field(default_factory=list)


@pytest.fixture
def tab(browser: Browser, server: LiveServer) -> Iterator[Tab]:
    """A page whose every request to another origin than the server's is refused and kept."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = Tab(context.new_page())

    def only_the_server(route: Any) -> None:
        url: str = route.request.url
        if url == server.url or url.startswith(server.url + "/") or url.startswith(LOCAL_SCHEMES):
            route.continue_()
        else:
            tab.refused.append(url)
            route.abort()

    context.route("**/*", only_the_server)
    yield tab
    context.close()
    assert tab.refused == [], f"the page tried to reach other hosts: {tab.refused}"


def shoot(page: Page, name: str) -> None:
    page.screenshot(path=str(artifacts("docs") / f"{name}.png"), full_page=True)


def test_swagger_ui_tries_an_operation_with_a_key_offline(tab: Tab, server: LiveServer) -> None:
    page = tab.page
    page.goto(server.url + "/docs")
    page.locator(".swagger-ui .info .title").get_by_text("Aurora CRM core").wait_for()

    page.locator(".scheme-container button.authorize").click()
    dialog = page.locator(".modal-ux")
    dialog.locator("input").first.fill(server.key)
    dialog.locator(".auth-btn-wrapper button.authorize").click()
    dialog.locator(".auth-btn-wrapper button.btn-done").click()
    assert dialog.count() == 0

    operation = page.locator(".opblock-get").filter(
        has=page.locator('.opblock-summary-path[data-path="/pipelines"]')
    )
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status")
    status.wait_for()
    assert status.inner_text().strip() == "200"
    assert "Authorization: Bearer" in operation.locator(".curl-command").inner_text()
    shoot(page, "swagger-ui")


def test_redoc_renders_offline(tab: Tab, server: LiveServer) -> None:
    page = tab.page
    page.goto(server.url + "/redoc")
    page.locator("h1").get_by_text("Aurora CRM core").wait_for()
    page.locator("h2").get_by_text("List contacts, oldest first").wait_for()
    shoot(page, "redoc")
