"""The README's op x path table is the one derived from the paths' own tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from eedge.codegen.emit import _HANDLERS, DSP_KERNELS
from eedge.frontends.ops import SUPPORTED_OPS, supported_onnx_ops
from eedge.ops import registry, table
from eedge.passes.lower_tflite import _Lowerer

RUNTIME_SRC = Path(__file__).resolve().parents[2] / "firmware_templates" / "runtime" / "src"
DSP_SOURCES = {"CONV_2D": "conv.c", "DEPTHWISE_CONV_2D": "depthwise.c",
               "FULLY_CONNECTED": "fully_connected.c",
               "ADD": "binary.c", "MUL": "binary.c", "MEAN": "reduce.c"}


def test_readme_table_is_the_derived_one() -> None:
    current = table.readme_table(table.README.read_text())
    assert current is not None, f"README.md lacks the markers {table.BEGIN} ... {table.END}"
    expected = table.render()
    assert current == expected, ("README.md's op table is stale; run `python -m eedge.ops.table "
                                 f"--write`. The derived table:\n{expected}")


def test_original_lowerings_cover_exactly_the_lowerers_own_ops() -> None:
    own = {name[3:] for name in dir(_Lowerer) if name.startswith("op_")}
    assert set(table.ORIGINAL_LOWERINGS) == own == set(SUPPORTED_OPS)


def test_every_onnx_op_lowers_to_builtins_every_path_knows() -> None:
    builtins = {row.op for row in table.builtin_rows()}
    rows = table.onnx_rows()
    assert {r.op for r in rows} == set(supported_onnx_ops()) | set(table.UNROLLED)
    for row in rows:
        assert set(row.via) <= builtins, f"{row.op} lowers to unknown builtins {row.via}"


def test_registered_ops_are_supported_on_every_path() -> None:
    """Registering means end to end: the table must show no gap for a registry op."""
    for row in table.builtin_rows():
        if registry.builtin(row.op) is not None:
            assert all(row.paths[p] for p in table.PATHS[1:-1]), row
    for row in table.onnx_rows():
        if registry.lowering(row.op) is not None:
            assert all(row.paths[p] for p in table.PATHS[:-1]), row


def test_dsp_claims_match_the_c_sources() -> None:
    assert DSP_KERNELS <= set(_HANDLERS)
    assert set(DSP_SOURCES) == DSP_KERNELS
    for op, source in DSP_SOURCES.items():
        assert "EEDGE_USE_DSP" in (RUNTIME_SRC / source).read_text(), op


def test_quantize_ops_claim_only_what_they_have() -> None:
    """QUANTIZE/DEQUANTIZE exist for reading int8 files (QUANTIZE int8 -> int8 also in C,
    as TFLite's converter inserts it where two scales meet); the table must not claim more."""
    rows = {r.op: r.paths for r in table.builtin_rows()}
    assert rows["QUANTIZE"]["int8 reference"] and rows["QUANTIZE"]["C portable"]
    assert not rows["DEQUANTIZE"]["TFLite f32"] and not rows["DEQUANTIZE"]["C portable"]


def test_write_and_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{table.BEGIN}\nold\n{table.END}\n\nafter\n")
    monkeypatch.setattr(table, "README", readme)
    assert table.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert table.main(["--write"]) == 0
    assert table.main(["--check"]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n") and text.endswith("\n\nafter\n")
    assert table.readme_table(text) == table.render()
    readme.write_text("# no markers\n")
    assert table.main(["--check"]) == 1
