"""Run the eedge CLI in-process and capture (exit code, stdout, stderr)."""

from __future__ import annotations

import pytest

from eedge.cli.main import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
