"""Fuzz: every numeric option of every command fed hostile numbers.

NaN, infinities, negatives, zero, 1e308, 10**400 (beyond a float), 1e-400,
empty strings, trailing commas, huge lists, hex, underscores and non-ASCII
digits go into thread counts, repeats, budgets, accuracy drops, confidence z,
exit rates, bandwidths, round-trip times, thresholds, monitor windows, server
limits, export shapes and ensemble indices. Each case must end in a one-line
usage error (exit 2), a one-line InputDataError (exit 5) or a normal run (see
harness.py); a NaN that slipped through would print "nan%" or reach --json
output (an internal error there). ``eedge demo``'s --seed/--epochs are left
out: a valid value trains a model for seconds (their bounds have a unit test).
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from fuzz.digits_bundle import build_digits_bundle
from fuzz.harness import FuzzTally, check_cli_case, run_cli, seeds

pytestmark = [pytest.mark.fuzz, pytest.mark.filterwarnings("error::RuntimeWarning")]


@dataclass(frozen=True)
class Made:
    root: Path
    bundle: Path
    data: Path
    onnx: Path
    report: Path


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    root = tmp_path_factory.mktemp("fuzz-numbers")
    bundle, data = build_digits_bundle(root / "pristine", keep_onnx=True)
    report = root / "pristine" / "host.json"
    return Made(root, bundle, data, root / "pristine" / "digits.onnx", report)


def _value(rng: random.Random) -> str:
    """One hostile (or now and then valid) number as typed on a command line."""
    return rng.choice([
        "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "-1", "0", "-0", "1", "2", "0.5",
        "1e308", "-1e308", "1e-400", str(10**400), "1" * 5000, "", " ", "1,2,", ",", "0x10",
        "1_0", "\u0663", "1e3", "100000", "2147483648", "-5", "0.01", "3.5", "1e39", "abc",
        ",".join(["0.1"] * rng.choice([3, 1000, 50_000])), "0.5,nan,0.5", "1,inf,-inf",
        "0.6,0.3,0.1", "none,none", "0.9,0.8", "2Mbit/s", "nanms", "1e400ms", "0.0.1Mbit/s",
        "-1ms", "20ms", "99999999999999999999Gbit/s", "1,1,8,8", "x:1,1,8,8", "0,0,0,0",
        "1,-1,8,8", f"1,1,{10**400},8", "2,1", "99", "-1,2"])


def _no_long_runs(value: str) -> str:
    """A run count as typed, except that valid big ones become too big (refused) instead
    of timing a stage 100,000 times."""
    return value if value.strip() in ("0", "1", "2", "-1", "-5", "") else value + "0" * 7


def _cases(m: Made, case: Path) -> list[tuple[str, Callable[[str], list[str]]]]:
    b, d = str(m.bundle), str(m.data)
    plan = ["split", "plan", b, "--device-profile", str(m.report), "--server-profile",
            str(m.report), "--exit-rates", "0.6,0.3,0.1"]
    cal = ["calibrate", b, "--data", d, "--dry-run", "--json"]
    prof = ["profile", b, "--repeats", "1", "--warmup", "0", "--json"]
    return [
        ("run --threads", lambda v: ["run", b, "-i", d, "--json", "--threads", v]),
        ("run --budget-macs", lambda v: ["run", b, "-i", d, "--json", "--budget-macs", v]),
        ("run --thresholds", lambda v: ["run", b, "-i", d, "--json", "--thresholds", v]),
        ("profile --threads", lambda v: prof + ["--threads", v]),
        ("profile --warmup", lambda v: prof + ["--warmup", _no_long_runs(v)]),
        ("profile --repeats", lambda v: prof + ["--repeats", _no_long_runs(v)]),
        ("profile --exit-rates", lambda v: prof + ["--exit-rates", v]),
        ("calibrate --max-accuracy-drop", lambda v: cal + ["--max-accuracy-drop", v]),
        ("calibrate --confidence-z", lambda v: cal + ["--max-accuracy-drop", "0.05",
                                                      "--confidence-z", v]),
        ("calibrate --budget-macs", lambda v: cal + ["--budget-macs", v]),
        ("calibrate --budget-ms", lambda v: cal + ["--budget-ms", v, "--profile",
                                                   str(m.report)]),
        ("codegen --budget-macs", lambda v: ["codegen", b, "--target", "qemu-cortex-m4",
                                             "--out", str(case / "fw"), "--budget-macs", v]),
        ("thresholds VALUES", lambda v: ["thresholds", str(case / "bundle"), v, "--json"]),
        ("monitor --window", lambda v: ["monitor", b, "--data", d, "--dry-run", "--window", v]),
        ("monitor --false-alarm", lambda v: ["monitor", b, "--data", d, "--dry-run",
                                             "--false-alarm", v]),
        ("split plan --bandwidth", lambda v: plan + ["--bandwidth", v]),
        ("split plan --rtt", lambda v: plan + ["--rtt", v]),
        ("split plan --exit-rates", lambda v: plan[:-2] + ["--exit-rates", v]),
        ("serve --port", lambda v: ["serve", b, "--port", v]),
        ("serve --max-batch", lambda v: ["serve", b, "--max-batch", v]),
        ("serve --max-delay-ms", lambda v: ["serve", b, "--max-delay-ms", v]),
        ("serve --max-body-mb", lambda v: ["serve", b, "--max-body-mb", v]),
        ("export --input-shape", lambda v: ["export", str(m.onnx), "--out", str(case / "out"),
                                            "--input-shape", v]),
        ("export --ensemble", lambda v: ["export", str(m.onnx), "--out", str(case / "out"),
                                         "--ensemble", v]),
    ]


def test_fuzz_cli_numbers(made: Made, capsys: pytest.CaptureFixture[str]) -> None:
    if not made.report.exists():
        code, _, err = run_cli(capsys, "profile", str(made.bundle), "--repeats", "2",
                               "--warmup", "0", "--report", str(made.report))
        assert code == 0, err
    tally = FuzzTally("CLI numbers")
    started = time.perf_counter()
    for index, rng in enumerate(seeds("cli-numbers")):
        case = made.root / "cases" / str(index)
        case.mkdir(parents=True)
        name, build = rng.choice(_cases(made, case))
        if name.startswith("thresholds"):
            shutil.copytree(made.bundle, case / "bundle")
        value = _value(rng)
        code = check_cli_case(capsys, made.root, case, build(value),
                              f"case {index} ({name} {value[:40]!r})")
        tally.add(code)
    print(tally.report(), f"in {time.perf_counter() - started:.1f} s")


@pytest.mark.parametrize("value", ["-1", str(2**32), "nan"])
def test_demo_seed_and_epochs_are_bounded(capsys: pytest.CaptureFixture[str], value: str) -> None:
    for option in ("--seed", "--epochs"):
        code, _, err = run_cli(capsys, "demo", option, value, "--no-firmware")
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and option in lines[0], err
