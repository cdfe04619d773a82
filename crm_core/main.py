"""The ASGI application: `uvicorn crm_core.main:app`."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from pydantic import ValidationError

from crm_core import __version__
from crm_core.api import docs, health
from crm_core.api.deps import refuse_unstorable_parameters
from crm_core.api.v1 import contacts, deals, events, ingest, messages, whatsapp
from crm_core.config import Settings, get_settings
from crm_core.database import Database, create_db_engine
from crm_core.exceptions import ConfigurationError
from crm_core.log import configure_logging
from crm_core.middleware import (
    BodySizeLimitMiddleware,
    ContentEncodingMiddleware,
    RequestLogMiddleware,
)
from crm_core.problems import register_problem_handlers
from crm_core.services.api_keys import Authenticator
from crm_core.services.group_commit import GroupCommitter


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; raise ConfigurationError when the settings cannot work."""
    if settings is None:
        try:
            settings = get_settings()
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigurationError(f"setting {where}: {first['msg']}") from None
    database = Database(
        create_db_engine(
            settings.database_url,
            connect_timeout=settings.database_connect_timeout,
            outbox=settings.outbox,
        )
    )
    configure_logging(settings.log_level)

    committer = GroupCommitter(database, connect_timeout=settings.database_connect_timeout)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await committer.aclose()
        database.dispose()

    app = FastAPI(
        title="Aurora CRM core",
        version=__version__,
        summary="Headless CRM runtime: message ingest, contacts, deals and pipelines.",
        lifespan=lifespan,
        docs_url=None,  # crm_core.api.docs serves both pages from the package, not a CDN
        redoc_url=None,
        dependencies=[Depends(refuse_unstorable_parameters)],
    )
    app.state.settings = settings
    app.state.database = database
    app.state.group_committer = committer
    app.state.authenticator = Authenticator(database.engine, settings.api_key_cache_seconds)
    register_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(docs.router)
    app.mount(docs.STATIC_PATH, docs.static_files(), name="static")
    app.include_router(ingest.router)
    app.include_router(contacts.router)
    app.include_router(deals.router)
    app.include_router(messages.router)
    app.include_router(whatsapp.router)
    app.include_router(events.router)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        # Meta's deliveries may hold up to 1,000 updates (about 3 MB): a 413 would be retried
        # for days, so the webhook takes batches' limit.
        path_limits={
            "/ingest/messages": settings.max_batch_body_bytes,
            "/webhooks/whatsapp": settings.max_batch_body_bytes,
        },
    )
    app.add_middleware(ContentEncodingMiddleware)
    app.add_middleware(RequestLogMiddleware)
    return app


def _create_app_or_exit() -> FastAPI:
    try:
        return create_app()
    except ConfigurationError as exc:
        print(f"crm_core: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


app = _create_app_or_exit()
