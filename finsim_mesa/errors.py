"""Exceptions raised by finsim-mesa.

Every error a user can cause (bad configuration, bad brain output, bad shock)
is a subclass of :class:`FinsimError`, carries a message that names the
offending parameter and says what is accepted, and is raised *before* any
state is changed.
"""

from __future__ import annotations


class FinsimError(Exception):
    """Base class of all errors raised by finsim-mesa."""


class ConfigError(FinsimError, ValueError):
    """An invalid parameter, configuration file or scenario definition."""


class BrainError(FinsimError, ValueError):
    """A brain returned actions of the wrong shape, non-finite or out of range."""


class ShockError(FinsimError, ValueError):
    """A run-time shock request that cannot be applied."""


class AccountingError(FinsimError, AssertionError):
    """An accounting identity of the ledger does not hold (a bug, never user input)."""


class CheckpointError(FinsimError):
    """A checkpoint or a user file cannot be written or read (missing, corrupted,
    incompatible, or its folder in use by another writer)."""


class NoCheckpoint(CheckpointError):
    """There is no checkpoint at a path (the folder is missing or empty);
    ``reason`` says which."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message
