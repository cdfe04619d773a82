"""The sales and case pipelines, as data: ordered stages and the moves allowed between them.

Two business lines use the CRM (see README, "Pipelines"):

- `rodobens`, vehicle and consortium sales: a lead is qualified, gets a simulation (consortium
  quota or financing), a proposal, a credit analysis, a contract, and is won; it can be lost
  from any open stage and a lost deal can be reopened as a new lead. A step back is allowed
  where a customer typically revises (simulation, proposal, credit).
- `juridico`, legal cases: triage of the person's account, a consultation with a lawyer, a fee
  proposal, a signed fee contract, the lawsuit filed, the case in progress, closed; a person may
  decline (not hired) until the contract is signed, and a declined case can return to triage.
  A contracted case can close without a lawsuit (an out-of-court settlement).

A deal starts at its pipeline's first stage unless it is created at another one of them. A
terminal stage is one a deal never leaves: it has no next stages, and every other stage has
some. `perdido` and `nao_contratado` are closed (the deal has ended) but not terminal, since it
may be reopened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage of a pipeline. `terminal`: a deal here never leaves (no next stages).
    `closed`: a deal here has ended (won, lost, declined, finished), though a closed stage
    that is not terminal may still be left (a lost sale reopened)."""

    slug: str
    name: str
    terminal: bool = False
    closed: bool = False


@dataclass(frozen=True, slots=True)
class Pipeline:
    slug: str
    name: str
    stages: tuple[Stage, ...]
    transitions: Mapping[str, frozenset[str]]

    @property
    def initial(self) -> str:
        return self.stages[0].slug

    @property
    def stage_slugs(self) -> tuple[str, ...]:
        return tuple(stage.slug for stage in self.stages)

    def allows(self, from_stage: str, to_stage: str) -> bool:
        return to_stage in self.transitions.get(from_stage, frozenset())


def _pipeline(
    slug: str, name: str, stages: tuple[Stage, ...], moves: dict[str, tuple[str, ...]]
) -> Pipeline:
    known = {stage.slug for stage in stages}
    for origin, targets in moves.items():
        unknown = ({origin, *targets}) - known
        if unknown:
            raise ValueError(f"pipeline {slug}: unknown stages {sorted(unknown)}")
    for stage in stages:
        if stage.terminal == bool(moves.get(stage.slug)):
            state = "terminal but has" if stage.terminal else "not terminal but has no"
            raise ValueError(f"pipeline {slug}: stage {stage.slug} is {state} next stages")
        if stage.terminal and not stage.closed:
            raise ValueError(f"pipeline {slug}: stage {stage.slug} is terminal but not closed")
    transitions = {origin: frozenset(targets) for origin, targets in moves.items()}
    return Pipeline(slug, name, stages, MappingProxyType(transitions))


RODOBENS = _pipeline(
    "rodobens",
    "Rodobens — veículos e consórcio",
    (
        Stage("novo", "Novo lead"),
        Stage("qualificacao", "Qualificação"),
        Stage("simulacao", "Simulação enviada"),
        Stage("proposta", "Proposta"),
        Stage("analise_credito", "Análise de crédito"),
        Stage("contrato", "Contrato"),
        Stage("ganho", "Ganho", terminal=True, closed=True),
        Stage("perdido", "Perdido", closed=True),
    ),
    {
        "novo": ("qualificacao", "perdido"),
        "qualificacao": ("simulacao", "perdido"),
        "simulacao": ("proposta", "qualificacao", "perdido"),
        "proposta": ("analise_credito", "simulacao", "perdido"),
        "analise_credito": ("contrato", "proposta", "perdido"),
        "contrato": ("ganho", "perdido"),
        "perdido": ("novo",),
    },
)

JURIDICO = _pipeline(
    "juridico",
    "Jurídico — casos",
    (
        Stage("triagem", "Triagem"),
        Stage("consulta", "Consulta"),
        Stage("proposta_honorarios", "Proposta de honorários"),
        Stage("contratado", "Contratado"),
        Stage("ajuizado", "Ação ajuizada"),
        Stage("em_andamento", "Em andamento"),
        Stage("encerrado", "Encerrado", terminal=True, closed=True),
        Stage("nao_contratado", "Não contratado", closed=True),
    ),
    {
        "triagem": ("consulta", "nao_contratado"),
        "consulta": ("proposta_honorarios", "nao_contratado"),
        "proposta_honorarios": ("contratado", "consulta", "nao_contratado"),
        "contratado": ("ajuizado", "encerrado"),
        "ajuizado": ("em_andamento", "encerrado"),
        "em_andamento": ("encerrado",),
        "nao_contratado": ("triagem",),
    },
)

PIPELINES: Mapping[str, Pipeline] = MappingProxyType(
    {pipeline.slug: pipeline for pipeline in (RODOBENS, JURIDICO)}
)
