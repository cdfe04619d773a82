"""Errors raised by crm_core. Each leaves the API as RFC 9457 problem+json."""

from __future__ import annotations


class CrmError(Exception):
    """Base class of every error crm_core raises on purpose."""


class ConfigurationError(CrmError):
    """The settings cannot be used (a bad DATABASE_URL, an unknown log level, ...)."""


class DatabaseUnavailableError(CrmError):
    """The database did not answer."""
