"""Progress on stderr for every command whose work can take more than a moment.

Commands open one display and hand its two callbacks to the library, which
reports through plain functions and never imports rich (``eedge.progress``)::

    with progress("profiling on qemu-cortex-m4", quiet=as_json) as report:
        profile_target(..., say=report.say, tick=report.tick)

How it shows, decided once per display:

- ``live``: stderr is a terminal. A spinner, the current phase, a bar with
  done/total for counted loops, elapsed time; transient, so the results that
  follow are not interleaved with leftover bars.
- ``plain``: stderr is a file or a pipe. One ``… phase`` line per phase the
  work names, no bars or control codes (logs keep the phases, not thousands of
  updates; an error that stops a command at once stays its only stderr line).
- ``off``: ``--json`` (``quiet``). Nothing at all.

Nothing is ever written to stdout, so ``--json`` output stays one JSON
document. ``EEDGE_PROGRESS=live|plain|off`` overrides the detection (``live``
draws even when stderr is not a terminal, e.g. a CI log that renders ANSI).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, Progress, SpinnerColumn, TaskID, TextColumn,
                           TimeElapsedColumn)

ENV = "EEDGE_PROGRESS"
MODES = ("live", "plain", "off")


def display_mode(quiet: bool = False) -> str:
    """``off`` when quiet, else ``EEDGE_PROGRESS`` if set, else by whether stderr is a tty."""
    if quiet:
        return "off"
    forced = os.environ.get(ENV, "").strip().lower()
    if forced in MODES:
        return forced
    try:
        return "live" if sys.stderr.isatty() else "plain"
    except (AttributeError, ValueError):  # a closed or replaced stderr
        return "plain"


class Reporter:
    """The callbacks a command passes to the library: ``say`` (a phase) and ``tick``.

    Calling the reporter itself is ``say``, so it fits a ``progress=`` parameter.
    """

    def __init__(self, mode: str, bar: Progress | None = None, task: TaskID | None = None,
                 text: str = "") -> None:
        self.mode, self._bar, self._task, self._text = mode, bar, task, text

    def say(self, text: str) -> None:
        if text == self._text:
            return
        self._text = text
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, description=escape(text), total=None, completed=0,
                             count="")
        elif self.mode == "plain":
            _plain_line(text)

    __call__ = say

    def tick(self, done: int, total: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, total=max(total, 1), completed=done,
                             count=f"{done}/{total}")


def _plain_line(text: str) -> None:
    sys.stderr.write(f"… {text}\n")
    sys.stderr.flush()


@contextmanager
def progress(message: str, quiet: bool = False) -> Iterator[Reporter]:
    """A progress display on stderr for the block, starting at phase ``message``."""
    mode = display_mode(quiet)
    if mode != "live":  # logs get the phases the work names, not this opening title
        yield Reporter(mode, text=message)
        return
    console = Console(stderr=True, highlight=False, force_terminal=True)
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                   TextColumn("{task.fields[count]}"), TimeElapsedColumn(), console=console,
                   transient=True, redirect_stdout=False, redirect_stderr=False)
    with bar:
        task = bar.add_task(escape(message), total=None, count="")
        yield Reporter(mode, bar, task, message)
