"""Errors raised while finding, installing or running a local Elasticsearch.

Each carries a one-line message saying what is wrong and a ``fix`` saying what to do about it;
the CLI prints both and exits non-zero, never a stack trace.
"""

from __future__ import annotations


class ProvisionError(Exception):
    """A local Elasticsearch could not be provided."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message}\n  how to fix: {self.fix}"


class JavaNotFoundError(ProvisionError):
    """No Java 21+ runtime was found."""


class DistributionUnavailableError(ProvisionError):
    """The Elasticsearch distribution could not be fetched."""


class DistributionVerificationError(ProvisionError):
    """A distribution archive is not the one whose SHA-512 autotag pins, or is corrupt."""


class PortInUseError(ProvisionError):
    """A port the node needs is taken by another program."""


class NodeStartError(ProvisionError):
    """A node did not start or the cluster did not become healthy."""


class UserSetupError(ProvisionError):
    """Running as root, and the unprivileged user for Elasticsearch could not be set up."""
