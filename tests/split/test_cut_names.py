"""`split plan` names every cut the way `split export --after` takes it, and back again."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from cli_runner import run_cli as run  # noqa: E402
from zoo import onnx_two_exit_mlp  # noqa: E402

from eedge.errors import InputDataError  # noqa: E402
from eedge.export import export_onnx  # noqa: E402
from eedge.split.planner import cut_name, parse_cut  # noqa: E402


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    source = tmp_path / "mlp.onnx"
    onnx.save(onnx_two_exit_mlp(), source)
    return export_onnx(source, tmp_path / "bundle").bundle.path


def _report(path: Path, ms: list[float]) -> Path:
    path.write_text(json.dumps({"unit": "ms", "stages": [{"value": v} for v in ms]}))
    return path


# device ms per stage, server ms per stage, bandwidth, and the cut that must win
SCENARIOS = {
    "server": ([50.0, 50.0], [0.1, 0.1], "1Gbit/s"),
    "0": ([0.1, 50.0], [0.1, 0.1], "1Gbit/s"),
    "device": ([0.1, 0.1], [0.1, 0.1], "1kbit/s"),
}


@pytest.mark.parametrize("expected", sorted(SCENARIOS))
def test_every_planned_cut_exports(capsys, tmp_path: Path, bundle: Path,  # type: ignore[no-untyped-def]
                                   expected: str) -> None:
    device, server, bandwidth = SCENARIOS[expected]
    args = ["split", "plan", str(bundle), "--device-profile",
            str(_report(tmp_path / "d.json", device)), "--server-profile",
            str(_report(tmp_path / "s.json", server)), "--bandwidth", bandwidth,
            "--rtt", "1ms", "--exit-rates", "0.2,0.8"]
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["best"]["after"] == expected
    assert [o["after"] for o in plan["options"]] == ["server", "0", "device"]

    code, out, err = run(capsys, *args)
    assert code == 0, err
    printed = re.search(r"best: --after (\S+)", out)
    assert printed and printed.group(1) == expected

    split = tmp_path / "split"
    code, out, err = run(capsys, "split", "export", str(bundle), "--after", printed.group(1),
                         "--out", str(split), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["head"] is not None) == (expected != "server")
    assert (summary["tail"] is not None) == (expected != "device")

    x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    whole = _predictions(capsys, bundle, tmp_path / "x.npy")
    if expected == "device":  # the head is the whole cascade: its final exit decides
        assert _predictions(capsys, split / "head", tmp_path / "x.npy") == whole
    if expected == "server":  # the tail takes the model's input and decides everything
        from eedge.split.server import TailModel

        tail = TailModel.load(split / "tail")
        assert tail.cascade.infer(x).predictions.tolist() == whole


def _predictions(capsys, bundle: Path, x: Path) -> list[int]:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "run", str(bundle), "--input", str(x), "--json")
    assert code == 0, err
    return json.loads(out)["predictions"]


def test_names_round_trip_and_raw_indices_are_accepted() -> None:
    for stages in (1, 2, 5):
        for c in range(-1, stages):
            assert parse_cut(cut_name(c, stages), stages) == c
            assert parse_cut(str(c), stages) == c  # the planner JSON's after_stage
    assert parse_cut("block1_out", 3) == "block1_out"
    with pytest.raises(InputDataError, match="no cut after stage 7"):
        parse_cut("7", 3)


def test_device_cut_has_no_tail_for_triton(capsys, tmp_path: Path, bundle: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsys, "split", "export", str(bundle), "--after", "device",
                       "--out", str(tmp_path / "s"), "--triton", str(tmp_path / "repo"))
    assert code == InputDataError.exit_code and "no tail" in err
