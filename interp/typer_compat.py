"""Click's exception class as the installed typer raises it (the CLI's usage errors).

typer >= 0.26 vendors click as `typer._click` and raises its own copies of click's exceptions
(`typer._click.exceptions.NoSuchOption`, `UsageError`, ...), which `click.ClickException` does
not match; older typer is built on click and raises click's. `click_exception()` returns the
base class the installed typer raises, so `interp.cli.main` shows a usage error as click's
usual "Usage: ..." and "Error: ..." lines with exit code 2 on every typer the bounds in
pyproject.toml allow (tests/interp/test_cli_usage_errors.py checks it against `typer.BadParameter`).
`typer.Exit` and `typer.Abort` are public in every version and need no lookup.
"""

from __future__ import annotations


def click_exception() -> type[Exception]:
    """The `ClickException` base class of the usage errors typer raises."""
    try:
        from typer._click.exceptions import ClickException  # typer >= 0.26: vendored click
    except ImportError:
        from click.exceptions import ClickException  # older typer: click itself
    return ClickException
