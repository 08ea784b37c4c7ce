"""Generated projects are relocatable and reproducible.

A project used to record its target as the absolute path of the YAML it came
from: two generations from copies of one target differed, and a project whose
YAML was moved or deleted (or whose eedge install went away) could no longer
be built. Now the project keeps the target description itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli
from int8_bundles import int8_bundle
from zoo import example_input

from eedge.codegen.inputs import device_samples
from eedge.codegen.model_source import load_codegen_model
from eedge.codegen.project import PROJECT_FILE, GeneratedProject
from eedge.codegen.toolchain import run_host, run_qemu
from eedge.ir.bundle import Bundle
from eedge.runtime.cascade import Cascade
from eedge.targets import load_target


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return int8_bundle("sequential", tmp_path_factory.mktemp("reproducible"))


def user_target(folder: Path, name: str) -> Path:
    """A shipped target copied to ``folder`` as a user's own YAML file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "board.yaml"
    path.write_bytes(load_target(name).path.read_bytes())
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("target", ["host", "qemu-cortex-m4"])
def test_same_inputs_give_the_same_bytes_in_any_directory(
        target: str, bundle: Bundle, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = tmp_path / "x.npy"
    np.save(inputs, example_input(seed=4, batch=3))
    for side in ("a", "b/deeper"):
        yaml = user_target(tmp_path / side / "targets", target)
        monkeypatch.chdir(tmp_path / side)
        code, _, err = run_cli(capsys, "codegen", str(bundle.path), "--target", str(yaml),
                               "--inputs", str(inputs), "--out", "fw")
        assert code == 0, err
    first, second = tree(tmp_path / "a" / "fw"), tree(tmp_path / "b" / "deeper" / "fw")
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []
    assert not [name for name, data in first.items() if str(tmp_path).encode() in data]
    spec = json.loads(first[PROJECT_FILE])["target_spec"]
    assert spec == load_target(target).data


@pytest.mark.parametrize("target", ["host", "qemu-cortex-m4"])
def test_a_moved_project_builds_and_runs_from_its_new_place(
        target: str, bundle: Bundle, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    x = example_input(seed=5, batch=6)
    np.save(tmp_path / "x.npy", x)
    yaml = user_target(tmp_path / "targets", target)
    code, _, err = run_cli(capsys, "codegen", str(bundle.path), "--target", str(yaml),
                           "--inputs", str(tmp_path / "x.npy"),
                           "--out", str(tmp_path / "old" / "fw"))
    assert code == 0, err
    shutil.move(tmp_path / "old", tmp_path / "elsewhere")
    shutil.rmtree(tmp_path / "targets")  # the YAML it was generated from is gone as well
    moved = tmp_path / "elsewhere" / "fw"

    code, out, err = run_cli(capsys, "build", str(moved), "--json")
    assert code == 0, err
    report = json.loads(out)
    binary = Path(report["binary"])
    assert binary.is_relative_to(moved) and report["target"] == target

    project = GeneratedProject.load(moved)
    if target == "host":
        model = load_codegen_model(bundle.path)
        samples = device_samples(x, tuple(int(d) for d in model.graph.tensors[model.input].shape),
                                 model.input_quant.scale[0], model.input_quant.zero_point[0],
                                 model.input_layout)
        run = run_host(project, binary, samples)
    else:
        run = run_qemu(project, project.load_target(), binary)
    python = Cascade(bundle, runtime="int8-reference").infer(x)
    assert [s.class_index for s in run.samples] == python.predictions.tolist()
    assert [s.exit_index for s in run.samples] == python.exit_index.tolist()


def test_a_project_written_with_a_target_path_still_loads(tmp_path: Path) -> None:
    """Projects generated before target_spec recorded ``target_file``; they keep working."""
    project = tmp_path / "fw"
    project.mkdir()
    meta = {"target": "qemu-cortex-m4", "target_file": "/nonexistent/qemu-cortex-m4.yaml",
            "port": "qemu-mps2", "arena_bytes": 16, "weight_bytes": 0,
            "quant_param_bytes": 0, "input_bytes": 1, "stage_outputs": [[["y", 10]]],
            "dsp": False, "optimize": "O2", "input_scale": 1.0, "input_zero_point": 0,
            "input_layout": None, "exit_stages": [0]}
    (project / PROJECT_FILE).write_text(json.dumps(meta))
    loaded = GeneratedProject.load(project)
    assert loaded.load_target().data == load_target("qemu-cortex-m4").data
