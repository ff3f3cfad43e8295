"""Errors a user can act on.

Every error the user caused (bad data, bad configuration, a broken registry, a tampered
artifact) is a :class:`BadInput`: the CLI prints its one-line message on stderr and exits 2.
Anything else is unexpected and exits 1.
"""

from __future__ import annotations


class RetrainError(Exception):
    """Base class of the errors this package raises on purpose."""

    exit_code = 1


class BadInput(RetrainError):
    """Bad input or configuration: one line naming the file, key or column, exit code 2."""

    exit_code = 2


class ConfigError(BadInput):
    """A configuration file is missing, unreadable or invalid."""


class DataError(BadInput):
    """A data file is missing, unreadable or does not match the dataset's schema."""


class RegistryError(BadInput):
    """registry.yaml is malformed, hand-broken or inconsistent."""


class ArtifactError(BadInput):
    """A model artifact is missing, has the wrong hash or an unknown format."""


class RemoteError(BadInput):
    """The DVC remote refuses the credentials, or its bucket does not exist."""


class GitError(RetrainError):
    """A git operation failed (the repository is not in the state the command needs)."""

    exit_code = 1


class ExternalCommandError(RetrainError):
    """A tool we call (dvc, gh, a deploy hook) failed."""

    exit_code = 1


class RaceLost(BadInput):
    """Another runner changed the shared remote first; this command changed nothing."""
