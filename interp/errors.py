"""User-facing error types, importable without torch (the CLI catches them to exit with code 2)."""

from __future__ import annotations

from interp.config import ConfigError


class RunError(RuntimeError):
    """A run folder is missing, incomplete or damaged; the message names the file."""


class TrainingError(RuntimeError):
    """Training cannot start or continue; the message says why and what was kept."""


#: Errors that mean "bad input or bad files": one line, exit code 2.
USER_ERRORS = (ConfigError, RunError, TrainingError)
