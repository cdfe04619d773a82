"""Errors raised by gates; the CLI turns each into one line and an exit code."""

from __future__ import annotations


class GatesError(Exception):
    """Base class of every error gates raises on purpose."""


class RepositoryRootNotFound(GatesError):
    """No folder holding vault/ and pyproject.toml or .git was found."""


class InputNotFound(GatesError):
    """A path given on the command line does not exist, cannot be read or holds no OS spec."""


class ClosureImportError(GatesError):
    """A legacy closure document lacks what a spec needs."""


class OutputExistsError(GatesError):
    """The output file exists and overwriting it was not asked for."""


class OutputWriteError(GatesError):
    """The output file could not be written."""


class GatesConfigError(GatesError):
    """The repository's [tool.gates] configuration cannot be used."""


class UnknownWorkOrder(GatesError):
    """An OS id given on the command line is not in the vault."""


class GitError(GatesError):
    """git could not tell the commit or the state of the working tree."""


class LedgerLockedError(GatesError):
    """Another certify run holds the vault's lock."""


class InvalidSpecError(GatesError):
    """An OS spec has errors, so it cannot be certified."""


class SigningKeyError(GatesError):
    """A signing or public key cannot be made, read or used."""
