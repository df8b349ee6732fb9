"""User-facing error types, importable without torch (the CLI catches them to exit with code 2)."""

from __future__ import annotations

from interp.config import ConfigError


class RunError(RuntimeError):
    """A run folder is missing, incomplete or damaged; the message names the file."""


class TrainingError(RuntimeError):
    """Training cannot start or continue; the message says why and what was kept.

    Messages speak of the Python API (`out`, `resume=True`, `overwrite=True`), which
    notebooks call; `argument` names the argument the error is about, and `cli_message`
    turns the message into the command line's words (`--out`, `--resume`, `--overwrite`).
    """

    def __init__(self, message: str, *, argument: str | None = None):
        super().__init__(message)
        self.argument = argument


class RunExists(TrainingError):
    """The run folder to create is not empty (and `overwrite` was not asked for)."""

    def __init__(self, path):
        super().__init__(
            f"{path}: folder is not empty; continue the run in it with resume=True or replace it "
            "with overwrite=True",
            argument="out",
        )
        self.path = path


class MissingExtra(RuntimeError):
    """An optional feature whose extra is not installed; the message names the pip install."""


#: The Python API's words in messages -> the command line's flags.
API_TO_FLAGS = {"resume=True": "--resume", "overwrite=True": "--overwrite"}


def cli_message(exc: Exception) -> str:
    """The message as the CLI shows it: flags instead of API arguments."""
    text = str(exc)
    for api, flag in API_TO_FLAGS.items():
        text = text.replace(api, flag)
    argument = getattr(exc, "argument", None)
    return f"--{argument} {text}" if argument else text


#: Errors that mean "bad input or bad files": one line, exit code 2.
USER_ERRORS = (ConfigError, RunError, TrainingError, MissingExtra)
