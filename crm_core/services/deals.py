"""Deals: created in a pipeline, moved only along its allowed transitions, with a history."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core.exceptions import (
    ContactErasedError,
    InvalidTransitionError,
    NotFoundError,
    UnknownPipelineError,
)
from crm_core.models import Contact, Deal, DealStageChange
from crm_core.models.base import utc_text, utcnow
from crm_core.pipelines import PIPELINES, Pipeline
from crm_core.schemas.deal import DealCreate, DealDetail, DealPublic, StageChangePublic
from crm_core.services import outbox
from crm_core.services.pages import Page, page


def pipeline_named(slug: str) -> Pipeline:
    pipeline = PIPELINES.get(slug)
    if pipeline is None:
        raise UnknownPipelineError(
            f"There is no pipeline {slug!r}; the pipelines are: {', '.join(PIPELINES)}."
        )
    return pipeline


def _check_stage(pipeline: Pipeline, stage: str) -> str:
    if stage not in pipeline.stage_slugs:
        raise UnknownPipelineError(
            f"The pipeline {pipeline.slug!r} has no stage {stage!r}; its stages are: "
            f"{', '.join(pipeline.stage_slugs)}."
        )
    return stage


def create_deal(session: Session, data: DealCreate, actor: str) -> Deal:
    """Create a deal with its first history entry. Raises UnknownPipelineError (unknown
    pipeline, stage or contact) and ContactErasedError (the contact's data was erased)."""
    pipeline = pipeline_named(data.pipeline)
    stage = _check_stage(pipeline, data.stage or pipeline.initial)
    # The contact's row is share-locked until the commit, so an erasure (which locks it for
    # update) either sees this deal and anonymises it, or has ended and is seen here.
    contact = session.scalars(
        select(Contact).where(Contact.id == data.contact_id).with_for_update(key_share=True)
    ).first()
    if contact is None:
        raise UnknownPipelineError(f"No contact has the id {data.contact_id}.")
    if contact.erased_at is not None:
        raise ContactErasedError(
            f"The contact {contact.id} was erased at the person's request (LGPD) on "
            f"{contact.erased_at:%Y-%m-%d}; it takes no new deals."
        )
    deal = Deal(
        contact_id=data.contact_id,
        title=data.title,
        pipeline=pipeline.slug,
        stage=stage,
        amount=data.amount,
        currency=data.currency,
        attributes=data.attributes,
    )
    session.add(deal)
    session.flush()
    change = DealStageChange(deal_id=deal.id, from_stage=None, to_stage=stage, changed_by=actor)
    session.add(change)
    public = DealPublic.model_validate(deal).model_dump(mode="json")
    event = outbox.NewEvent(outbox.DEAL_CREATED, str(deal.id), public, deal.contact_id)
    outbox.append(session.connection(), [event])
    session.commit()
    return deal


def get_deal(session: Session, deal_id: uuid.UUID, *, for_update: bool = False) -> Deal:
    query = select(Deal).where(Deal.id == deal_id)
    deal = session.scalars(query.with_for_update() if for_update else query).first()
    if deal is None:
        raise NotFoundError(f"No deal has the id {deal_id}.")
    return deal


def history(session: Session, deal_id: uuid.UUID) -> Sequence[DealStageChange]:
    """The deal's stage changes in the order they were made (see DealStageChange)."""
    query = (
        select(DealStageChange)
        .where(DealStageChange.deal_id == deal_id)
        .order_by(DealStageChange.seq)
    )
    return session.scalars(query).all()


def move_deal(session: Session, deal_id: uuid.UUID, to_stage: str, actor: str) -> Deal:
    """Move a deal along an allowed transition, recording it; the row is locked meanwhile."""
    deal = get_deal(session, deal_id, for_update=True)
    pipeline = pipeline_named(deal.pipeline)
    _check_stage(pipeline, to_stage)
    if not pipeline.allows(deal.stage, to_stage):
        allowed = sorted(pipeline.transitions.get(deal.stage, frozenset()))
        raise InvalidTransitionError(
            f"A {pipeline.slug} deal cannot move from {deal.stage!r} to {to_stage!r}; from "
            f"{deal.stage!r} it can move to: {', '.join(allowed) or 'nowhere (a final stage)'}."
        )
    change = DealStageChange(
        deal_id=deal.id,
        from_stage=deal.stage,
        to_stage=to_stage,
        changed_by=actor,
        changed_at=utcnow(),
    )
    session.add(change)
    data = {
        "deal_id": str(deal.id),
        "pipeline": deal.pipeline,
        "from_stage": deal.stage,
        "to_stage": to_stage,
        "changed_by": actor,
        "changed_at": utc_text(change.changed_at),
    }
    event = outbox.NewEvent(outbox.DEAL_STAGE_CHANGED, str(deal.id), data, deal.contact_id)
    outbox.append(session.connection(), [event])
    deal.stage = to_stage
    session.commit()
    return deal


def list_deals(
    session: Session,
    *,
    pipeline: str | None,
    stage: str | None,
    contact_id: uuid.UUID | None,
    cursor: str | None,
    limit: int,
) -> Page[Deal]:
    query = select(Deal)
    if pipeline is not None:
        query = query.where(Deal.pipeline == pipeline)
    if stage is not None:
        query = query.where(Deal.stage == stage)
    if contact_id is not None:
        query = query.where(Deal.contact_id == contact_id)
    return page(session, query, Deal, cursor=cursor, limit=limit)


def deal_detail(session: Session, deal: Deal) -> DealDetail:
    changes = [StageChangePublic.model_validate(change) for change in history(session, deal.id)]
    return DealDetail(**DealPublic.model_validate(deal).model_dump(), history=changes)
