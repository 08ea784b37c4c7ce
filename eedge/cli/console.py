"""Shared output helpers: results to stdout, progress and errors to stderr.

Keeping progress on stderr means ``--json`` output on stdout stays
machine-readable even while a spinner runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console

out_console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def debug_option(func: F) -> F:
    """``--debug`` on every command (read by ``main`` before click parses)."""
    return click.option("--debug", is_flag=True, expose_value=False,
                        help="Show tracebacks for errors.")(func)  # type: ignore[return-value]


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print machine-readable JSON instead of tables.")(func)  # type: ignore[return-value]


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot serialize {type(value).__name__}")


@contextmanager
def progress_status(message: str, quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr; yields a function that updates its text."""
    if quiet or not err_console.is_terminal:
        def log(text: str) -> None:
            if not quiet:
                err_console.print(f"[dim]… {text}[/]")
        yield log
        return
    with err_console.status(message) as status:
        yield lambda text: status.update(text)
