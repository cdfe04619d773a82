"""Deals: create, read, list, move along the pipeline; and the pipelines themselves."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from crm_core.api.deps import ApiPrincipal, ReadPrincipal
from crm_core.database import ReadSessionDep, SessionDep
from crm_core.pipelines import PIPELINES
from crm_core.schemas.deal import (
    DealCreate,
    DealDetail,
    DealMove,
    DealPublic,
    DealsPublic,
    PipelinePublic,
    Slug,
    StagePublic,
)
from crm_core.schemas.pagination import DEFAULT_PAGE, CursorParam, Limit
from crm_core.services import deals

router = APIRouter(tags=["deals"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The cursor is not valid", **_PROBLEM},
    401: {"description": "No valid API key", **_PROBLEM},
    403: {"description": "The API key's scope does not allow this route", **_PROBLEM},
    404: {"description": "No such deal", **_PROBLEM},
    409: {
        "description": "The pipeline does not allow that move, or the contact was erased",
        **_PROBLEM,
    },
    415: {
        "description": "The body has a Content-Encoding other than identity "
        "(Accept-Encoding: identity)",
        **_PROBLEM,
    },
    422: {"description": "Invalid body, unknown pipeline, stage or contact", **_PROBLEM},
}


@router.get(
    "/pipelines",
    summary="The pipelines, their stages and allowed moves",
    responses={code: _ERRORS[code] for code in (401, 403)},
)
def list_pipelines(_principal: ReadPrincipal) -> list[PipelinePublic]:
    return [
        PipelinePublic(
            slug=pipeline.slug,
            name=pipeline.name,
            initial_stage=pipeline.initial,
            stages=[
                StagePublic(
                    slug=stage.slug,
                    name=stage.name,
                    terminal=stage.terminal,
                    closed=stage.closed,
                    next_stages=sorted(pipeline.transitions.get(stage.slug, frozenset())),
                )
                for stage in pipeline.stages
            ],
        )
        for pipeline in PIPELINES.values()
    ]


@router.post(
    "/deals", status_code=status.HTTP_201_CREATED, summary="Create a deal", responses=_ERRORS
)
def create_deal(
    data: DealCreate, response: Response, session: SessionDep, principal: ApiPrincipal
) -> DealDetail:
    deal = deals.create_deal(session, data, principal.key_id)
    response.headers["Location"] = f"/deals/{deal.id}"
    return deals.deal_detail(session, deal)


@router.get("/deals", summary="List deals, oldest first", responses=_ERRORS)
def list_deals(
    session: ReadSessionDep,
    _principal: ReadPrincipal,
    pipeline: Slug | None = None,
    stage: Slug | None = None,
    contact_id: Annotated[uuid.UUID | None, Query()] = None,
    cursor: CursorParam = None,
    limit: Limit = DEFAULT_PAGE,
) -> DealsPublic:
    """Deals in the order they were created. Following `next_cursor`, then polling from
    `end_cursor`, gives each deal exactly once, even while others are being created."""
    found = deals.list_deals(
        session,
        pipeline=pipeline,
        stage=stage,
        contact_id=contact_id,
        cursor=cursor,
        limit=limit,
    )
    return DealsPublic(
        data=[DealPublic.model_validate(row) for row in found.rows],
        next_cursor=found.next_cursor,
        end_cursor=found.end_cursor,
    )


@router.get("/deals/{deal_id}", summary="A deal and its stage history", responses=_ERRORS)
def get_deal(deal_id: uuid.UUID, session: ReadSessionDep, _principal: ReadPrincipal) -> DealDetail:
    return deals.deal_detail(session, deals.get_deal(session, deal_id))


@router.post(
    "/deals/{deal_id}/stage",
    summary="Move a deal to another stage (allowed transitions only)",
    responses=_ERRORS,
)
def move_deal(
    deal_id: uuid.UUID, move: DealMove, session: SessionDep, principal: ApiPrincipal
) -> DealDetail:
    deal = deals.move_deal(session, deal_id, move.stage, principal.key_id)
    return deals.deal_detail(session, deal)
