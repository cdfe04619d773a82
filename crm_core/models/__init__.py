"""The ORM models. Importing this package registers every table on `Base.metadata`."""

from crm_core.models.base import Base
from crm_core.models.contact import Contact
from crm_core.models.deal import Deal

__all__ = ["Base", "Contact", "Deal"]
