"""Bad user data and numbers through the CLI: one line, the right exit code (issue 16).

Item 4: non-finite inputs are refused (not answered with class 8 at 0.98, or
NaN in --json); item 7: no samples is an InputDataError for every command
that reads data; item 13: thread counts and float options are bounded and
finite, labels are checked by every command that reads them, and codegen
--inputs checks the sample shape.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from cli_runner import run_cli  # noqa: E402
from fuzz.digits_bundle import build_digits_bundle  # noqa: E402

from eedge.errors import InputDataError  # noqa: E402

USAGE = 2
DATA = InputDataError.exit_code


def _strict(text: str) -> object:
    """json.loads that refuses NaN/Infinity like JSON.parse does."""
    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    bundle, data = build_digits_bundle(tmp_path_factory.mktemp("user-data"))
    with np.load(data) as archive:
        return bundle, data, archive["x"], archive["y"]


def _one_line(code: int, err: str, expected: int) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("…")]
    assert code == expected and len(lines) == 1, (code, err)
    return lines[0]


@pytest.mark.parametrize("runtime", ["onnx", "int8", "int8-reference"])
def test_all_nan_input_is_refused(capsys, tmp_path: Path, made, runtime: str) -> None:  # type: ignore[no-untyped-def]
    bundle, _, x, _ = made
    np.save(tmp_path / "nan.npy", np.full_like(x[:4], np.nan))
    code, out, err = run_cli(capsys, "run", str(bundle), "-i", str(tmp_path / "nan.npy"),
                             "--runtime", runtime, "--json")
    assert "sample 0 holds NaN" in _one_line(code, err, DATA) and out == ""


def test_float32_overflow_is_refused_naming_the_sample(capsys, tmp_path: Path, made) -> None:  # type: ignore[no-untyped-def]
    bundle, _, x, _ = made
    big = x.astype(np.float64)
    big[9, 0, 2, 2] = 1e39  # finite in float64, inf as the model's float32
    np.save(tmp_path / "big.npy", big)
    for args in (["run", str(bundle)], ["run", str(bundle), "--runtime", "int8"],
                 ["codegen", str(bundle), "--target", "host", "--out", str(tmp_path / "fw")]):
        code, _, err = run_cli(capsys, *args, "-i" if args[0] == "run" else "--inputs",
                               str(tmp_path / "big.npy"))
        line = _one_line(code, err, DATA)
        assert "sample 9" in line and "1e+39" in line, line


def test_json_output_is_strict_json(capsys, made) -> None:  # type: ignore[no-untyped-def]
    bundle, data, _, _ = made
    for args in (["run", str(bundle), "-i", str(data)], ["evaluate", str(bundle), "--data",
                                                         str(data), "--uncertainty"]):
        code, out, err = run_cli(capsys, *args, "--json")
        assert code == 0, err
        _strict(out)


def test_no_samples_is_an_input_error_for_every_command(capsys, tmp_path: Path, made) -> None:  # type: ignore[no-untyped-def]
    bundle, _, x, y = made
    empty = tmp_path / "empty.npz"
    np.savez(empty, x=x[:0], y=y[:0])
    for args in (["run", str(bundle), "-i", str(empty)],
                 ["run", str(bundle), "-i", str(empty), "--runtime", "int8-reference"],
                 ["evaluate", str(bundle), "--data", str(empty)],
                 ["calibrate", str(bundle), "--data", str(empty), "--max-accuracy-drop", "0.01",
                  "--dry-run"],
                 ["profile", str(bundle), "--data", str(empty), "--repeats", "1"],
                 ["monitor", str(bundle), "--data", str(empty), "--dry-run"],
                 ["codegen", str(bundle), "--target", "host", "--out", str(tmp_path / "fw"),
                  "--inputs", str(empty)]):
        code, _, err = run_cli(capsys, *args)
        assert "no samples in x" in _one_line(code, err, DATA), args


@pytest.mark.parametrize("value", ["100000", "0", "-5", "1e3", str(10**400)])
def test_thread_counts_are_bounded(capsys, made, value: str) -> None:  # type: ignore[no-untyped-def]
    bundle, data, _, _ = made
    for command in (["run", str(bundle), "-i", str(data)], ["profile", str(bundle)]):
        code, _, err = run_cli(capsys, *command, "--threads", value)
        assert "--threads" in _one_line(code, err, USAGE)


def test_non_finite_numbers_are_refused(capsys, made) -> None:  # type: ignore[no-untyped-def]
    bundle, data, _, _ = made
    cal = ["calibrate", str(bundle), "--data", str(data), "--dry-run"]
    for args, expected in (
            (cal + ["--max-accuracy-drop", "nan"], USAGE),
            (cal + ["--max-accuracy-drop", "0.01", "--confidence-z", "nan"], USAGE),
            (cal + ["--budget-macs", "inf"], USAGE),
            (cal + ["--budget-ms", "-1"], USAGE),
            (["run", str(bundle), "-i", str(data), "--budget-macs", "nan"], USAGE),
            (["profile", str(bundle), "--exit-rates", "0.5,nan,0.5"], DATA),
            (["profile", str(bundle), "--exit-rates", "1,inf,-inf"], DATA),
            (["split", "plan", str(bundle), "--device-profile", "d.json", "--server-profile",
              "s.json", "--rtt", "1" * 400 + "ms"], DATA),
            (["split", "plan", str(bundle), "--device-profile", "d.json", "--server-profile",
              "s.json", "--bandwidth", "0.0.1Mbit/s"], DATA),
            (["monitor", str(bundle), "--data", str(data), "--false-alarm", "nan"], USAGE),
            (["serve", str(bundle), "--max-delay-ms", "inf"], USAGE)):
        code, out, err = run_cli(capsys, *args)
        line = _one_line(code, err, expected)
        assert "nan%" not in out and "nan" not in line.split(":")[0], line


def test_split_plan_reads_rtt_and_bandwidth_as_finite(capsys, tmp_path: Path, made) -> None:  # type: ignore[no-untyped-def]
    from eedge.numbers import parse_float
    from eedge.split.planner import parse_bandwidth, parse_duration_ms

    with pytest.raises(InputDataError, match="not a finite number"):
        parse_duration_ms("1" * 400 + "ms")
    with pytest.raises(InputDataError, match="not a number"):
        parse_bandwidth("1.2.3Mbit/s")
    assert parse_bandwidth("2Mbit/s") == 2e6 and parse_duration_ms("20ms") == 20.0
    with pytest.raises(InputDataError, match=r"outside \[0, 1\]"):
        parse_float("1.5", "--x", 0, 1)


def test_labels_are_checked_by_evaluate_and_profile(capsys, tmp_path: Path, made) -> None:  # type: ignore[no-untyped-def]
    bundle, _, x, y = made
    for label in (10**12, -5, 10):
        bad = y.copy()
        bad[3] = label
        np.savez(tmp_path / "bad.npz", x=x, y=bad)
        for args in (["evaluate", str(bundle), "--data", str(tmp_path / "bad.npz")],
                     ["profile", str(bundle), "--data", str(tmp_path / "bad.npz"),
                      "--repeats", "1", "--warmup", "0"],
                     ["run", str(bundle), "-i", str(tmp_path / "bad.npz")]):
            code, _, err = run_cli(capsys, *args)
            assert f"label {label} at sample 3" in _one_line(code, err, DATA), args


def test_codegen_inputs_must_have_the_model_input_shape(capsys, tmp_path: Path, made) -> None:  # type: ignore[no-untyped-def]
    bundle, _, x, _ = made
    out = tmp_path / "fw"
    np.save(tmp_path / "flat.npy", x[:6].reshape(6, 8, 8))  # 6x64 values divide into 1x8x8
    code, _, err = run_cli(capsys, "codegen", str(bundle), "--target", "host", "--out", str(out),
                           "--inputs", str(tmp_path / "flat.npy"))
    assert "(N, 1, 8, 8)" in _one_line(code, err, DATA) and not out.exists()
    np.save(tmp_path / "one.npy", x[0])  # one sample without the batch axis is fine
    code, out_text, err = run_cli(capsys, "codegen", str(bundle), "--target", "qemu-cortex-m4",
                                  "--out", str(out), "--inputs", str(tmp_path / "one.npy"),
                                  "--json")
    assert code == 0 and _strict(out_text)["test_inputs"] == 1, err


def test_cascade_checks_inputs_by_default_and_can_be_told_not_to(made) -> None:  # type: ignore[no-untyped-def]
    from eedge.runtime import batched
    from eedge.runtime.cascade import Cascade

    bundle, _, x, _ = made
    bad = x.astype(np.float64)
    bad[17] = np.nan
    with pytest.raises(InputDataError, match="sample 17 holds NaN"):
        batched.infer(Cascade(bundle, runtime="int8-reference"), bad)
    with pytest.raises(InputDataError, match="sample 17 holds NaN"):
        Cascade(bundle).run_all_exits(bad)
    unchecked = Cascade(bundle, check_finite=False).infer(bad[:1])
    assert unchecked.predictions.shape == (1,)
    with pytest.raises(InputDataError, match="threads"):
        Cascade(bundle, threads=0)


def test_input_shape_dimensions_are_bounded() -> None:
    from eedge.errors import ModelError
    from eedge.frontends.onnx_frontend import parse_input_shape

    for text in ("1" * 5000, "1,1,8," + "9" * 20, "1,-1,8,8", "0,1"):
        with pytest.raises(ModelError, match="bad --input-shape"):
            parse_input_shape(text)
    assert parse_input_shape("x:N,1,8,8") == ("x", ("N", 1, 8, 8))
