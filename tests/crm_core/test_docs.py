"""The API's documentation: served from the package (no CDN), and saying which key each route needs.

The browser test (test_docs_browser.py) uses the pages; these check what they are made of.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.crm_core.conftest import AppFactory

OPEN_ROUTES = {"/healthz", "/readyz"}
"""The routes that need no API key (README, Security)."""


@pytest.fixture
def anonymous(sqlite_url: str, make_app: AppFactory) -> TestClient:
    """A client without a key, of an application with authentication on."""
    return TestClient(make_app(sqlite_url), raise_server_exceptions=False)


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def test_the_document_declares_an_http_bearer_scheme(anonymous: TestClient) -> None:
    schemes = anonymous.get("/openapi.json").json()["components"]["securitySchemes"]
    assert len(schemes) == 1
    (scheme,) = schemes.values()
    assert scheme["type"] == "http"
    assert scheme["scheme"] == "bearer"


def test_an_operation_declares_the_key_exactly_when_it_refuses_a_caller_without_one(
    anonymous: TestClient,
) -> None:
    document = anonymous.get("/openapi.json").json()
    (name,) = document["components"]["securitySchemes"]
    found = operations(document)
    assert {path for path, _, _ in found} >= OPEN_ROUTES | {"/contacts", "/ingest/message"}
    for path, method, operation in found:
        url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        answer = anonymous.request(method, url, json={"source": "x"})
        declared = operation.get("security")
        if path in OPEN_ROUTES:
            assert declared is None, (method, path)
            assert answer.status_code != 401, (method, path)
        else:
            assert declared == [{name: []}], (method, path)
            assert answer.status_code == 401, (method, path, answer.text)
            assert "401" in operation["responses"], (method, path)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_a_docs_page_loads_only_files_the_server_serves(anonymous: TestClient, page: str) -> None:
    html = anonymous.get(page)
    assert html.status_code == 200
    assert "default-src 'self'" in html.headers["content-security-policy"]
    assert "Aurora CRM core" in html.text
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html.text)
    assert urls, html.text
    assert "googleapis" not in html.text
    assert "cdn." not in html.text
    for url in urls:
        assert url.startswith("/"), f"{page} loads {url} from elsewhere"
        assert not url.startswith("//"), f"{page} loads {url} from elsewhere"
        asset = anonymous.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
