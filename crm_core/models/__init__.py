"""The ORM models. Importing this package registers every table on `Base.metadata`."""

from crm_core.models.api_key import ApiKey
from crm_core.models.audit_event import AuditEvent
from crm_core.models.base import Base
from crm_core.models.contact import Contact
from crm_core.models.deal import Deal
from crm_core.models.deal_stage_change import DealStageChange
from crm_core.models.erasure import ErasureTombstone, InstanceSecret
from crm_core.models.event import OutboxEvent, RelayPosition
from crm_core.models.idempotency_key import IdempotencyKey
from crm_core.models.message import Message
from crm_core.models.whatsapp import MessageEvent, MessageStatus

__all__ = [
    "ApiKey",
    "AuditEvent",
    "Base",
    "Contact",
    "Deal",
    "DealStageChange",
    "ErasureTombstone",
    "IdempotencyKey",
    "InstanceSecret",
    "Message",
    "MessageEvent",
    "MessageStatus",
    "OutboxEvent",
    "RelayPosition",
]
