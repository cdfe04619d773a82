"""Deals, their stage moves and their history; the pipelines they move through."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

from crm_core.schemas.ingest import Metadata
from crm_core.schemas.text import StorableStr

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]

Money = Annotated[
    Decimal,
    PlainSerializer(lambda value: format(value, ".2f"), return_type=str, when_used="json"),
    WithJsonSchema(
        {"type": "string", "pattern": r"^\d{1,12}\.\d{2}$", "examples": ["1234.50"]},
        mode="serialization",
    ),
]
"""An amount as every response shows it: a string with exactly two decimals ("1234.50"),
whether it was sent as 1234.5, "1234.5" or read back from either database."""


class DealCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_id: uuid.UUID
    title: Annotated[
        StorableStr, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)
    ]
    pipeline: Slug = Field(description="`rodobens` or `juridico` (GET /pipelines).")
    stage: Slug | None = Field(default=None, description="Default: the pipeline's first stage.")
    amount: Decimal | None = Field(default=None, ge=0, max_digits=14, decimal_places=2)
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "BRL"
    attributes: Metadata = Field(default_factory=dict)


class DealMove(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: Slug


class StageChangePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_stage: str | None
    to_stage: str
    changed_at: datetime
    changed_by: str


class DealPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    contact_id: uuid.UUID
    title: str
    pipeline: str
    stage: str
    amount: Money | None
    currency: str
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class DealDetail(DealPublic):
    history: list[StageChangePublic] = Field(description="Every stage the deal entered, in order.")


class DealsPublic(BaseModel):
    data: list[DealPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )
    end_cursor: str | None = Field(
        description="Where this page ends: pass it as `cursor` later to get only the deals "
        "created since (null for an empty list read without a cursor)."
    )


class StagePublic(BaseModel):
    slug: str
    name: str
    terminal: bool = Field(description="A deal here stays: the stage has no next stages.")
    closed: bool = Field(
        description="A deal here has ended (won, lost, declined or finished); a closed stage "
        "that is not terminal can be left (a lost deal reopened)."
    )
    next_stages: list[str]


class PipelinePublic(BaseModel):
    slug: str
    name: str
    initial_stage: str
    stages: list[StagePublic]
