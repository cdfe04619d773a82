"""The auditors' site in a real browser: Debian's headless Chromium, driven by Playwright.

The browser opens the index from disk with JavaScript off, follows the link to OS 004, reads the
matrix, the gates and the state, and compares them with the OS's JSON twin; every request it
makes must be a file:// one (nothing leaves the machine). A full-page PNG of each page is saved
under test-artifacts/report/ at the repository root (or $AURORA_TEST_ARTIFACTS/report/), for a
person to look at.

Chromium is never downloaded: without /usr/bin/chromium the test skips, unless
AURORA_REQUIRE_BROWSER=1 (CI), where its absence is a failure.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gates.record.integrity import stale_ids
from gates.record.publish import certify
from gates.report.site import write_report
from tests.browser import REPOSITORY, artifacts, chromium
from tests.gates.certify_project import FEATURE, SPEC, SPEC_ID, make_project, spec

pytestmark = pytest.mark.browser

OS_004 = SPEC_ID.replace("-001", "-004")

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@dataclass(frozen=True)
class Site:
    name: str
    root: Path
    out: Path
    os_id: str

    def twin(self) -> dict[str, Any]:
        found = []
        for path in self.root.glob(f"vault/*/fechamentos/{self.os_id}/*.json"):
            if path.name.count(".") == 1:
                document = json.loads(path.read_text(encoding="utf-8"))
                found.append((document["certified_at"], document["commit"], document))
        assert found, f"no JSON twin of {self.os_id} under {self.root}"
        latest: dict[str, Any] = max(found, key=lambda item: (item[0], item[1]))[2]
        return latest


def demo_site(base: Path) -> Site:
    """A small project whose only OS is number 4, certified for real (CONCLUÍDA)."""
    project = make_project(base / "demo")
    (project.root / SPEC).unlink()
    project.write(
        SPEC.replace(SPEC_ID, OS_004),
        spec().replace(SPEC_ID, OS_004).replace("number: 1", "number: 4"),
    )
    project.write("features/demo.feature", FEATURE.replace("@OS-001", "@OS-004"))
    project.commit("OS 004")
    (result,) = certify(project.root)
    assert result.concluded, result.evaluation.reasons
    out = base / "site"
    write_report(project.root, out)
    return Site("demo", project.root, out, OS_004)


def repository_site(base: Path) -> Site:
    """The repository's own vault, once `nox -s gates` has certified OS 004."""
    twins = list(REPOSITORY.glob("vault/*/fechamentos/*-004/*.json"))
    if not twins:
        pytest.skip("the repository's vault has no closure of OS 004 yet (run `nox -s gates`)")
    os_id = twins[0].parent.name
    out = base / "site"
    write_report(REPOSITORY, out)
    return Site("repository", REPOSITORY, out, os_id)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return demo_site(tmp_path_factory.mktemp("browser-demo"))


@pytest.fixture(scope="module", params=["demo", "repository"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Site:
    if request.param == "demo":
        built: Site = request.getfixturevalue("demo")
        return built
    return repository_site(tmp_path_factory.mktemp("browser-repository"))


@dataclass
class Tab:
    page: Page
    requested: list[str]


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    """A page with JavaScript off, whose every request is recorded and any non-file one refused."""
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1280, "height": 900}
    )
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))

    def only_files(route: Any) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", only_files)
    yield Tab(context.new_page(), requested)
    context.close()
    left = [url for url in requested if not url.startswith("file://")]
    assert left == [], f"requests left the machine: {left}"


def shoot(page: Page, site: Site, name: str) -> Path:
    target = artifacts("report") / f"{site.name}-{name}.png"
    page.screenshot(path=str(target), full_page=True)
    print(f"screenshot: {target}")
    return target


def test_an_auditor_follows_the_index_to_os_004(tab: Tab, site: Site) -> None:
    page = tab.page
    document = site.twin()
    page.goto((site.out / "index.html").as_uri())
    assert page.title().startswith("Índice das OS")
    verdict = page.locator(".ledger-verdict")
    assert "VERIFICADO" in verdict.inner_text()
    row = page.locator(f'tr[data-os="{site.os_id}"]')
    # the OS's state: its last verdict, or DESATUALIZADA when its spec, features or steps
    # changed since (the repository between an edit of its specs and the next certify)
    stale = site.os_id in stale_ids(site.root)
    expected = "DESATUALIZADA" if stale else document["decision"]
    assert row.get_attribute("data-state") == expected
    assert expected in row.inner_text()
    assert document["commit"][:12] in row.inner_text()
    shoot(page, site, "index")

    page.get_by_role("link", name="OS-004", exact=True).click()
    page.wait_for_load_state()
    assert page.url == (site.out / "os" / f"{site.os_id}.html").as_uri()
    assert page.locator("h1").count() == 1
    state = page.locator("p.current")
    assert expected in state.inner_text()
    assert state.get_attribute("data-state") == expected

    rows = page.locator("table.matrix tbody tr")
    criteria = document["criteria"]
    assert rows.count() == len(criteria)
    for index, criterion in enumerate(criteria):
        shown = rows.nth(index)
        assert shown.get_attribute("data-criterion") == criterion["id"]
        assert shown.locator("th").inner_text().startswith(criterion["id"])
        assert criterion["verdict"] in shown.locator("td.result").inner_text()
        claim = shown.locator("td.claim").inner_text()
        assert ("marcado como feito" if criterion["claimed"] else "não marcado") in claim
        for proof in criterion["proofs"]:
            assert proof["name"] in shown.locator("td").first.inner_text()

    gates = page.locator("table.gates tbody tr")
    assert gates.count() == len(document["gates"])
    for index, gate in enumerate(document["gates"]):
        shown = gates.nth(index)
        assert shown.get_attribute("data-gate") == gate["name"]
        assert gate["status"] in shown.inner_text()
    logs = page.locator("details.log")
    assert logs.count() == len(document["gates"])
    assert not logs.first.locator("pre").is_visible(), "gate logs start collapsed"

    for deliverable in document["deliverables"]:
        assert deliverable["path"] in page.locator("ul.deliverables").inner_text()
    shoot(page, site, "os-004")
    page.emulate_media(media="print")
    assert not page.locator("header.site").is_visible(), "the print stylesheet hides navigation"
    shoot(page, site, "os-004-print")
    page.emulate_media(media="screen")

    page.get_by_role("link", name="Livro-razão (ledger)").click()
    page.wait_for_load_state()
    assert page.locator("table.ledger tbody tr").count() >= 1
    assert page.locator('table.ledger tr[data-chained="não"]').count() == 0
    shoot(page, site, "ledger")
    assert any(url.endswith("/report.css") for url in tab.requested), tab.requested
    assert all(url.startswith("file://") for url in tab.requested), tab.requested


def test_a_tampered_ledger_is_broken_on_the_index(tab: Tab, demo: Site, tmp_path: Path) -> None:
    page = tab.page
    copy = tmp_path / "copy"
    shutil.copytree(demo.root, copy, symlinks=True)
    book = copy / "vault" / "ledger.jsonl"
    book.write_text(book.read_text(encoding="utf-8").replace("CONCLUÍDA", "REPROVADA"), "utf-8")
    write_report(copy, tmp_path / "site")
    page.goto((tmp_path / "site" / "index.html").as_uri())
    verdict = page.locator(".ledger-verdict")
    assert "ROMPIDO" in verdict.inner_text()
    assert verdict.get_attribute("data-intact") == "não"
    assert "hash differs from its content" in page.locator(".ledger-summary ul.errors").inner_text()
    shoot(page, demo, "index-tampered")
