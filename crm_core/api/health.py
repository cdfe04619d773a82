"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from crm_core.database import DatabaseDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


@router.get("/healthz", summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="The database answers",
    responses={
        503: {
            "description": "The database does not answer",
            "content": {"application/problem+json": {}},
        }
    },
)
async def readyz(database: DatabaseDep) -> Health:
    await run_in_threadpool(database.ping)
    return Health(status="ready")
