"""`/docs` (Swagger UI) and `/redoc` (ReDoc), served with their scripts from the package.

FastAPI's own pages load their scripts from a CDN and ReDoc's its fonts from Google: on a
machine without internet they are blank. Here every file comes from `crm_core/static/`
(versions and licences in its README.md), served at `/static`, so the pages make no request
to any other host. The recipe is FastAPI's "Custom Docs UI Static Assets (Self-Hosting)".
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIRECTORY = Path(__file__).resolve().parent.parent / "static"
"""The vendored Swagger UI and ReDoc files (package data of crm_core)."""

STATIC_PATH = "/static"
"""Where `static_files()` is mounted."""

SWAGGER_UI_PARAMETERS = {"validatorUrl": None, "persistAuthorization": False}
"""Swagger UI options: no badge from validator.swagger.io, and a key pasted in "Authorize" is
forgotten when the page closes (never written to the browser's storage)."""

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",  # the pages' own start-up script is inline
        "style-src 'self' 'unsafe-inline'",  # both UIs set styles at run time
        "img-src 'self' data:",
        "worker-src 'self' blob:",  # ReDoc's search runs in a worker made from a blob
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
"""The pages may load nothing from another host (W3C Content Security Policy Level 3): the
browser does not even try. ReDoc 2.5.4 shows Redocly's logo from cdn.redoc.ly in its sidebar, with
no option to turn it off; refused, the image hides itself and the link text stays."""

router = APIRouter(include_in_schema=False)


def static_files() -> StaticFiles:
    """The ASGI app serving STATIC_DIRECTORY; mount it at STATIC_PATH."""
    return StaticFiles(directory=STATIC_DIRECTORY)


def _root(request: Request) -> str:
    """The prefix the app is served under (behind a proxy), as FastAPI's own pages take it."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def _openapi_url(request: Request) -> str:
    url: str = request.app.openapi_url
    return _root(request) + url


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI on the OpenAPI document; "Authorize" takes an API key (HTTP bearer)."""
    root = _root(request) + STATIC_PATH
    page = get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{root}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{root}/swagger-ui/favicon-32x32.png",
        oauth2_redirect_url=None,
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
    )
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc on the OpenAPI document, without Google's fonts (the browser's own are used)."""
    root = _root(request) + STATIC_PATH
    page = get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{root}/swagger-ui/favicon-32x32.png",
        with_google_fonts=False,
    )
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page
