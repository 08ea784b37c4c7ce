"""Shared rules for the fuzz suite: what every hostile input must get from eedge.

Each ``test_fuzz_<kind>.py`` mutates one kind of input (manifests, .tflite, ONNX,
.npy/.npz, target YAML, CLI numbers) with a seeded generator and hands every case to
:func:`check_cli_case`, which asserts the CLI's contract for bad input:

- the exit code is never 1 (1 means "a bug in eedge"; tracebacks are bugs),
- stderr holds at most one line (the error) besides progress lines,
- no file outside the case's own directory was touched,
- nothing half-written is left behind (no hidden staging directories).

Case counts come from ``EEDGE_FUZZ_CASES``: a small bounded number in ``make test``
(the whole fuzz suite stays under a minute) and thousands in ``make fuzz``.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from cli_runner import run_cli  # noqa: E402

DEFAULT_CASES = 40


def case_count(default: int = DEFAULT_CASES) -> int:
    """How many cases each fuzz test runs (``EEDGE_FUZZ_CASES`` overrides)."""
    value = os.environ.get("EEDGE_FUZZ_CASES")
    return int(value) if value else default


def seeds(name: str, default: int = DEFAULT_CASES) -> Iterator[random.Random]:
    """Seeded generators, one per case, reproducible from the test name and index."""
    for index in range(case_count(default)):
        yield random.Random(f"{name}:{index}")


@dataclass
class FuzzTally:
    """Counts per outcome, printed by the test so `make fuzz` reports them."""

    kind: str
    exit_codes: dict[int, int] = field(default_factory=dict)

    def add(self, code: int) -> None:
        self.exit_codes[code] = self.exit_codes.get(code, 0) + 1

    @property
    def cases(self) -> int:
        return sum(self.exit_codes.values())

    def report(self) -> str:
        codes = ", ".join(f"exit {k}: {v}" for k, v in sorted(self.exit_codes.items()))
        return f"fuzz {self.kind}: {self.cases} cases ({codes})"


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    state = {}
    for path in root.rglob("*"):
        if path.is_file() or path.is_symlink():
            stat = path.lstat()
            state[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return state


def _error_lines(err: str) -> list[str]:
    """stderr minus progress lines (they start with the progress marker '…')."""
    return [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("…")]


def check_cli_case(capsys: pytest.CaptureFixture[str], watched: Path, case_dir: Path,
                   args: list[str], what: str) -> int:
    """Run ``eedge ARGS``; assert the bad-input contract; return the exit code.

    ``watched`` is a directory whose files must be unchanged except inside
    ``case_dir`` (the only place the case may write).
    """
    before = {k: v for k, v in _snapshot(watched).items()
              if not (watched / k).is_relative_to(case_dir)}
    code, _out, err = run_cli(capsys, *args)
    lines = _error_lines(err)
    assert code != 1, f"{what}: internal error (exit 1) for eedge {' '.join(args)}:\n{err[-3000:]}"
    assert "Traceback" not in err, f"{what}: traceback\n{err[-3000:]}"
    assert len(lines) <= 1, f"{what}: {len(lines)} lines on stderr:\n{err[-3000:]}"
    after = {k: v for k, v in _snapshot(watched).items()
             if not (watched / k).is_relative_to(case_dir)}
    assert after == before, f"{what}: files outside {case_dir} changed: " \
        f"{sorted(set(after.items()) ^ set(before.items()))[:5]}"
    leftovers = [p for p in case_dir.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]
    assert not leftovers, f"{what}: half-written leftovers {leftovers}"
    return code
