"""The README is executed, so it cannot drift from the code.

Every fenced block runs: Python blocks in order as one script; shell blocks line by
line in a workspace holding the files they name (``model.onnx``, ``calib.npz``,
``test.npz``, an MLPerf Tiny ``.tflite``); YAML blocks load as targets. Inline code
that names a Python object (``eedge.split.Client``) must resolve, and inline
``eedge …`` commands may only use subcommands and options that exist.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pytest

from eedge.cli.main import cli

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
BIN = Path(sys.executable).parent
MLPERF = REPO.parent / "shared" / "models" / "mlperf_tiny"
# Programs the README shows that cannot run on this machine, and why.
NOT_RUNNABLE = {"tritonserver": "NVIDIA's tritonserver does not install here (DESIGN.md); "
                                "the repository it reads is validated by tests/split"}


@dataclass
class Block:
    language: str
    line: int
    text: str


def readme_blocks() -> list[Block]:
    blocks, lines = [], README.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            blocks.append(Block(fence.group(1) or "sh", i + 1, "\n".join(lines[i + 1:end])))
            i = end
        i += 1
    return blocks


def inline_spans() -> list[str]:
    text = re.sub(r"^```.*?^```", "", README.read_text(), flags=re.S | re.M)
    return re.findall(r"`([^`\n]+)`", text)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "NO_COLOR": "1"}


def test_readme_opens_with_the_two_setup_commands() -> None:
    first = readme_blocks()[0]
    commands = [ln.split("#")[0].strip() for ln in first.text.splitlines()]
    assert commands == ["make demo", "make test"], first.text
    assert README.read_text().startswith("```")


def test_inline_python_names_resolve() -> None:
    names = sorted({m for span in inline_spans()
                    for m in re.findall(r"\beedge(?:\.[A-Za-z_]\w*)+", span)})
    assert names, "the README names no eedge objects; this test would check nothing"
    unresolved = []
    for dotted in names:
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                unresolved.append(dotted)
            break
        else:
            unresolved.append(dotted)
    assert not unresolved, f"README names that do not exist: {unresolved}"


def _command_for(words: list[str]) -> tuple[click.Command, list[str]]:
    command: click.Command = cli
    rest = words[1:]
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        command = command.commands[rest[0]]
        rest = rest[1:]
    return command, rest


def test_inline_commands_use_real_options() -> None:
    checked, problems = 0, []
    for span in inline_spans():
        if not span.startswith("eedge "):
            continue
        words = shlex.split(span.replace("\\|", "|"))
        command, rest = _command_for(words)
        if command is cli:
            problems.append(f"{span!r}: no such command")
            continue
        known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        for word in rest:
            flag = word.split("=")[0]
            if flag.startswith("--") and flag not in known:
                problems.append(f"{span!r}: {command.name} has no option {flag}")
        checked += 1
    assert checked >= 10, f"only {checked} inline commands found"
    assert not problems, "\n".join(problems)


def test_yaml_blocks_are_valid_targets(tmp_path: Path) -> None:
    from eedge.targets import load_target

    blocks = [b for b in readme_blocks() if b.language in ("yaml", "yml")]
    assert blocks
    for n, block in enumerate(blocks):
        path = tmp_path / f"block{n}.yaml"
        path.write_text(block.text)
        load_target(path)


@pytest.mark.slow
def test_python_blocks_run(tmp_path: Path) -> None:
    script = "\n\n".join(b.text for b in readme_blocks() if b.language == "python")
    assert "export_torch" in script and "Cascade" in script
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def shell_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the README's commands name, made the way a user would have them."""
    ws = tmp_path_factory.mktemp("readme-shell")
    made = ws / "made"
    proc = subprocess.run([str(BIN / "eedge"), "demo", "--out", str(made), "--no-firmware"],
                          capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shutil.copy(made / "bundle" / "model.onnx", ws / "model.onnx")
    with np.load(made / "test.npz") as data:
        x, y = data["x"], data["y"]
    np.savez(ws / "calib.npz", x=x[:100])
    np.savez(ws / "test.npz", x=x[:40], y=y[:40])
    np.savez(ws / "val.npz", x=x[100:200], y=y[100:200])
    kws = MLPERF / "kws_ref_model.tflite"
    if kws.is_file():
        shutil.copy(kws, ws / "kws_ref_model.tflite")
    return ws


def _run_line(line: str, ws: Path) -> None:
    words = shlex.split(line, comments=True)
    if not words:
        return
    program = words[0]
    if program in NOT_RUNNABLE:
        return
    if program == "make":
        proc = subprocess.run(["make", "-n", *words[1:]], cwd=REPO, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, f"{line}: {proc.stderr}"
        return
    command = line.split("#")[0].replace(".venv/bin/eedge", "eedge")
    if "kws_ref_model.tflite" in command and not (ws / "kws_ref_model.tflite").exists():
        return  # the standard models are not in this checkout's surroundings
    if words[:2] == ["eedge", "serve"]:
        _serve_and_stop(command, ws)
        return
    proc = subprocess.run(["bash", "-c", command], cwd=ws, env=_env(), capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{line}\n{proc.stdout[-1000:]}\n{proc.stderr[-2000:]}"


def _serve_and_stop(command: str, ws: Path) -> None:
    port = _free_port()
    command = re.sub(r"--port \d+", f"--port {port}", command)
    server = subprocess.Popen(shlex.split(command), cwd=ws, env=_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready",
                                            timeout=2) as reply:
                    assert reply.status == 200
                    return
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, f"{command}: not ready after 60 s"
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_shell_blocks_run(shell_workspace: Path) -> None:
    """In README order: later blocks use what earlier ones made (``bundle``, ``split``)."""
    blocks = [b for b in readme_blocks() if b.language in ("sh", "bash", "console")]
    assert len(blocks) >= 3
    for block in blocks:
        for offset, line in enumerate(block.text.splitlines(), start=1):
            try:
                _run_line(line, shell_workspace)
            except AssertionError as exc:
                raise AssertionError(f"README.md:{block.line + offset}: {exc}") from None
