"""Aurora CRM core: a headless CRM runtime (contacts, deals and message ingest)."""

__version__ = "0.1.0"
