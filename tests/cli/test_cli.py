"""The command line: help, JSON output, one-line errors and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from zoo import onnx_two_exit_mlp

from cli_runner import run_cli as run
from eedge.errors import BundleError, InputDataError, ModelError


@pytest.fixture
def mlp_file(tmp_path: Path) -> Path:
    path = tmp_path / "mlp.onnx"
    onnx.save(onnx_two_exit_mlp(), path)
    return path


@pytest.mark.parametrize("command", ["export", "inspect", "run", "demo", "monitor", "compile"])
def test_every_command_has_help_with_an_example(capsys, command: str) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and "Example" in out and "--debug" in out


def test_export_inspect_run_roundtrip(capsys, tmp_path: Path, mlp_file: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "b"
    code, out, err = run(capsys, "export", str(mlp_file), "--out", str(bundle))
    assert code == 0, err
    assert "stage0" in out and "stage1" in out and "max |diff|" in out

    code, out, _ = run(capsys, "inspect", str(bundle), "--json")
    assert code == 0 and json.loads(out)["checksums"] == "ok"

    x = np.random.default_rng(0).standard_normal((6, 16)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x, y=np.arange(6) % 4)
    code, out, err = run(capsys, "run", str(bundle), "--input", str(tmp_path / "data.npz"),
                         "--thresholds", "0.0", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["exit_index"] == [0] * 6 and result["accuracy"] is not None

    code, out, _ = run(capsys, "run", str(bundle), "--input", str(tmp_path / "data.npz"))
    assert code == 0 and "exit1" in out and "accuracy" in out


def test_export_json_and_existing_bundle(capsys, tmp_path: Path, mlp_file: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "b"
    code, out, _ = run(capsys, "export", str(mlp_file), "--out", str(bundle), "--json")
    assert code == 0 and json.loads(out)["manifest"]["schema_version"] == 1
    code, _, err = run(capsys, "export", str(mlp_file), "--out", str(bundle))
    assert code == ModelError.exit_code + 1 and "--force" in err  # BundleError
    code, _, _ = run(capsys, "export", str(mlp_file), "--out", str(bundle), "--force")
    assert code == 0


def test_errors_are_one_line_with_their_exit_code(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsys, "inspect", str(tmp_path / "missing"))
    assert code == BundleError.exit_code
    assert err.strip().count("\n") == 0 and err.startswith("error:")
    assert "Traceback" not in err

    bad = tmp_path / "bad.onnx"
    onnx.save(onnx_two_exit_mlp(op="Softsign"), bad)
    code, _, err = run(capsys, "export", str(bad), "--out", str(tmp_path / "o"))
    assert code == ModelError.exit_code and "Softsign" in err and "act0" in err


def test_wrong_input_shape_on_run(capsys, tmp_path: Path, mlp_file: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "b"
    assert run(capsys, "export", str(mlp_file), "--out", str(bundle))[0] == 0
    np.save(tmp_path / "x.npy", np.zeros((3, 15), np.float32))
    code, _, err = run(capsys, "run", str(bundle), "--input", str(tmp_path / "x.npy"))
    assert code == InputDataError.exit_code and "expects" in err


def test_pickled_input_is_refused(capsys, tmp_path: Path, mlp_file: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "b"
    assert run(capsys, "export", str(mlp_file), "--out", str(bundle))[0] == 0
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, _, err = run(capsys, "run", str(bundle), "--input", str(tmp_path / "obj.npy"))
    assert code == InputDataError.exit_code and "pickled" in err


def test_debug_shows_the_traceback(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsys, "inspect", str(tmp_path / "missing"), "--debug")
    assert code == BundleError.exit_code and "Traceback" in err


def test_usage_errors_exit_2(capsys) -> None:  # type: ignore[no-untyped-def]
    assert run(capsys, "export")[0] == 2
    assert run(capsys, "frobnicate")[0] == 2


def test_torch_factory_export_from_the_cli(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "digits"
    code, stdout, err = run(capsys, "export", "eedge.examples.digits_model:build_model",
                            "--input-shape", "1,1,8,8", "--out", str(out))
    assert code == 0, err
    assert "exit2" in stdout
    code, _, err = run(capsys, "export", "weights.pt", "--out", str(tmp_path / "x"))
    assert code == ModelError.exit_code and "FILE.py:FACTORY" in err
    code, _, err = run(capsys, "export", "eedge.examples.digits_model:build_model",
                       "--out", str(tmp_path / "y"))
    assert code == ModelError.exit_code and "--input-shape" in err


def test_int8_export_and_runtimes_from_the_cli(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from conftest import exported_onnx
    from zoo import example_input

    source = tmp_path / "seq.onnx"
    onnx.save(exported_onnx("sequential"), source)
    np.savez(tmp_path / "calib.npz", x=example_input(seed=1, batch=32))
    bundle = tmp_path / "b"
    code, out, err = run(capsys, "export", str(source), "--out", str(bundle), "--format",
                         "onnx,tflite", "--int8", "--calib", str(tmp_path / "calib.npz"),
                         "--observer", "percentile")
    assert code == 0, err
    assert "byte for byte" in out and "percentile observer" in out
    np.save(tmp_path / "x.npy", example_input(seed=3, batch=5))
    results = {}
    for runtime in ("onnx", "tflite", "int8", "int8-reference", "int8-tflm"):
        code, out, err = run(capsys, "run", str(bundle), "--input", str(tmp_path / "x.npy"),
                             "--runtime", runtime, "--json")
        assert code == 0, err
        results[runtime] = json.loads(out)
    assert results["int8-reference"]["predictions"] == results["int8-tflm"]["predictions"]
    assert results["onnx"]["predictions"] == results["tflite"]["predictions"]


def test_tflite_cli_paths_and_flag_errors(capsys, tmp_path: Path, mlp_file: Path) -> None:  # type: ignore[no-untyped-def]
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "frontends"))
    from test_tflite_frontend import hand_made_int8_model

    model = tmp_path / "hand.tflite"
    model.write_bytes(hand_made_int8_model())
    code, out, err = run(capsys, "export", str(model), "--out", str(tmp_path / "t"),
                         "--exits", "conv_out")
    assert code == ModelError.exit_code and "exit" in err  # conv_out is not (batch, classes)
    code, out, err = run(capsys, "export", str(model), "--out", str(tmp_path / "t"))
    assert code == 0, err
    assert "tflite_int8" in out
    np.save(tmp_path / "xi.npy", np.zeros((2, 4, 4, 1), np.int8))
    code, out, err = run(capsys, "run", str(tmp_path / "t"), "--input", str(tmp_path / "xi.npy"),
                         "--json")
    assert code == 0, err and json.loads(out)["runtime"] == "int8"
    code, _, err = run(capsys, "export", str(mlp_file), "--out", str(tmp_path / "u"),
                       "--calib", str(tmp_path / "xi.npy"))
    assert code == InputDataError.exit_code and "--int8" in err
    code, _, err = run(capsys, "export", str(mlp_file), "--out", str(tmp_path / "v"),
                       "--exits", "h")
    assert code == ModelError.exit_code and ".tflite" in err


def test_firmware_commands(capsys, tmp_path: Path, mlp_file: Path) -> None:  # type: ignore[no-untyped-def]
    sys_path = Path(__file__).parents[1] / "frontends"
    import sys

    sys.path.insert(0, str(sys_path))
    from test_tflite_frontend import hand_made_int8_model

    model = tmp_path / "hand.tflite"
    model.write_bytes(hand_made_int8_model())
    project = tmp_path / "fw"
    np.save(tmp_path / "xi.npy", np.random.default_rng(0).integers(-128, 128, (3, 4, 4, 1),
                                                                   dtype=np.int8))
    code, out, err = run(capsys, "codegen", str(model), "--target", "qemu-cortex-m4", "--out",
                         str(project), "--inputs", str(tmp_path / "xi.npy"), "--json")
    assert code == 0, err
    assert json.loads(out)["test_inputs"] == 3
    code, out, err = run(capsys, "build", str(project), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["weight_bytes"] > 0 and report["flash_bytes"] < report["flash_limit_bytes"]
    code, out, err = run(capsys, "run", str(model.parent / "unused"), "--input", "x",
                         "--target", "nowhere")
    assert code != 0
    # flashing needs a board target; the exact command is shown with --dry-run
    code, _, err = run(capsys, "flash", str(project), "--dry-run")
    assert code == 7 and "not a board" in err
    board = tmp_path / "fw-board"
    assert run(capsys, "codegen", str(model), "--target", "stm32f767", "--out", str(board))[0] == 0
    code, out, err = run(capsys, "flash", str(board), "--dry-run")
    assert code == 0, err
    assert out.startswith("pyocd flash --target stm32f767zi") and "firmware.elf" in out
    code, out, _ = run(capsys, "targets", "--json")
    assert code == 0 and {t["name"] for t in json.loads(out)} >= {"qemu-cortex-m4", "rpi4"}
    # a float-only bundle cannot become firmware
    code, _, err = run(capsys, "export", str(mlp_file), "--out", str(tmp_path / "f"))
    code, _, err = run(capsys, "codegen", str(tmp_path / "f"), "--out", str(tmp_path / "g"))
    assert code == 4 and "--int8" in err


def test_model_that_does_not_fit_is_refused(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "frontends"))
    from test_tflite_frontend import hand_made_int8_model

    model = tmp_path / "hand.tflite"
    model.write_bytes(hand_made_int8_model())
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("name: tiny\nkind: mcu-serial\ncpu: cortex-m4\nfpu: fpv4-sp-d16\n"
                    "clock_hz: 1000000\nflash_bytes: 4096\nram_bytes: 2048\nboard: tiny\n"
                    "flash_tool: pyocd\nserial_port: /dev/null\nbaud: 9600\n")
    assert run(capsys, "codegen", str(model), "--target", str(tiny), "--out",
               str(tmp_path / "fw"))[0] == 0
    code, _, err = run(capsys, "build", str(tmp_path / "fw"))
    assert code == 7 and "does not fit tiny" in err and "FLASH" in err


def test_run_on_host_c_runtime(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from conftest import exported_onnx
    from zoo import example_input

    source = tmp_path / "dw.onnx"
    onnx.save(exported_onnx("depthwise"), source)
    np.savez(tmp_path / "calib.npz", x=example_input(seed=1, batch=32))
    bundle = tmp_path / "b"
    assert run(capsys, "export", str(source), "--out", str(bundle), "--int8", "--calib",
               str(tmp_path / "calib.npz"))[0] == 0
    np.savez(tmp_path / "data.npz", x=example_input(seed=4, batch=7), y=np.arange(7) % 5)
    code, out, err = run(capsys, "run", str(bundle), "--input", str(tmp_path / "data.npz"),
                         "--target", "host", "--json")
    assert code == 0, err
    device = json.loads(out)
    code, out, err = run(capsys, "run", str(bundle), "--input", str(tmp_path / "data.npz"),
                         "--runtime", "int8-reference", "--json")
    python = json.loads(out)
    assert device["predictions"] == python["predictions"]
    assert device["exit_index"] == python["exit_index"]
