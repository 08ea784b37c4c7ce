"""Shared output helpers: results to stdout, progress and errors to stderr.

Keeping progress on stderr means ``--json`` output on stdout stays
machine-readable even while a spinner runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from eedge.plain import one_line

out_console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def stderr_is_terminal() -> bool:
    """Whether stderr really is a terminal (rich's guess says yes under FORCE_COLOR)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def print_error(label: str, message: str) -> None:
    """``label: message`` as one line on stderr, plain text unless stderr is a terminal.

    Messages quote user text (paths, tensor names) and other libraries'
    messages, so the message is flattened to one escape-free line and never
    read as rich markup: a ``[/]`` in a file name must neither crash the
    printer nor vanish. Logs and pipes get no colour codes even under
    FORCE_COLOR, so scripts can match the line.
    """
    text = one_line(message)
    if not stderr_is_terminal():
        sys.stderr.write(f"{label}: {text}\n")
        sys.stderr.flush()
        return
    err_console.print(f"[bold red]{label}:[/] {escape(text)}", highlight=False, soft_wrap=True)


def debug_option(func: F) -> F:
    """``--debug`` on every command (read by ``main`` before click parses)."""
    return click.option("--debug", is_flag=True, expose_value=False,
                        help="Show tracebacks for errors.")(func)  # type: ignore[return-value]


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print machine-readable JSON instead of tables.")(func)  # type: ignore[return-value]


def print_json(data: Any) -> None:
    """Standard JSON (never NaN/Infinity: :mod:`eedge.strict_json`) on stdout."""
    from eedge.strict_json import dumps

    click.echo(dumps(data, indent=2))


@contextmanager
def progress_status(message: str, quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """:func:`eedge.cli.progress.progress`, yielding only its ``say`` (phase text).

    Kept for the commands that report phases only; one display for all commands.
    """
    from eedge.cli.progress import progress

    with progress(message, quiet) as shown:
        yield shown.say
