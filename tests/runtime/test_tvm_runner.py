"""TvmRunner's low-overhead call path: reused input buffers, zero-copy outputs, still correct.

The runner writes inputs into tensors it allocated once and hands outputs back
as views of the VM's memory, so these tests check what could go wrong with
that: results of earlier calls changing later, an output that is an input or a
constant aliasing memory the next call reuses, batch sizes changing between
calls. ONNX Runtime is the reference for every value.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from zoo import onnx_two_exit_mlp

pytest.importorskip("tvm", reason="Apache TVM (eedge[tvm]) is not installed")

from eedge.backends.tvm_compiler import compile_onnx, resolve_target  # noqa: E402
from eedge.runtime.cascade import make_session  # noqa: E402
from eedge.runtime.tvm_runner import TvmRunner  # noqa: E402


def _compile(model: onnx.ModelProto, directory: Path, name: str) -> tuple[Path, Path]:
    onnx_path, library = directory / f"{name}.onnx", directory / f"{name}.so"
    onnx.save(model, onnx_path)
    compile_onnx(onnx_path, library, resolve_target("host"))
    return onnx_path, library


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _compile(onnx_two_exit_mlp(), tmp_path_factory.mktemp("mlp"), "mlp")


def passthrough_model() -> onnx.ModelProto:
    """Outputs: the input itself (Identity), a constant, and a computed tensor."""
    const = numpy_helper.from_array(np.arange(4, dtype=np.float32), "c")
    nodes = [helper.make_node("Identity", ["x"], ["same"]),
             helper.make_node("Identity", ["c"], ["const"]),
             helper.make_node("Relu", ["x"], ["relu"])]
    graph = helper.make_graph(
        nodes, "passthrough", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4] if n != "const" else [4])
         for n in ("same", "const", "relu")], initializer=[const])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_results_equal_onnx_runtime_and_stay_valid_across_calls(mlp: tuple[Path, Path]) -> None:
    onnx_path, library = mlp
    session, runner = make_session(onnx_path, 1), TvmRunner(library)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((batch, 16)).astype(np.float32) for batch in (1, 1, 3, 1, 5, 1)]
    kept = [runner.run([x]) for x in inputs]  # earlier results must survive later calls
    for x, got in zip(inputs, kept):
        expected = session.run(None, {"x": x})
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_input_and_constant_outputs_are_not_aliased(tmp_path: Path) -> None:
    _, library = _compile(passthrough_model(), tmp_path, "passthrough")
    runner = TvmRunner(library)
    first_x = np.array([[1.0, -2.0, 3.0, -4.0]], np.float32)
    first = runner.run([first_x])
    seconds = [runner.run([first_x * k]) for k in (2.0, 3.0, 4.0)]
    for result in (first, *seconds):
        result[1][:] = -99.0  # a caller scribbling on a result must not change later ones
    last = runner.run([first_x * 5.0])
    np.testing.assert_array_equal(first[0], first_x)
    for k, result in zip((2.0, 3.0, 4.0), seconds):
        np.testing.assert_array_equal(result[0], first_x * k)
        np.testing.assert_array_equal(result[2], np.maximum(first_x * k, 0))
    np.testing.assert_array_equal(last[0], first_x * 5.0)
    np.testing.assert_array_equal(last[1], np.arange(4, dtype=np.float32))


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs sched_getaffinity")
def test_runner_sizes_tvm_thread_pool_without_pinning(mlp: tuple[Path, Path]) -> None:
    """Tuned kernels run parallel loops on TVM's process-wide pool: `threads` must reach
    it (1 thread for ORT and TVM alike), and setting it must not pin this process."""
    import tvm

    cores = os.sched_getaffinity(0)
    wide = TvmRunner(mlp[1], threads=len(cores))
    assert 1 <= wide.threads <= len(cores)
    narrow = TvmRunner(mlp[1], threads=1)
    assert narrow.threads == 1 == tvm.get_global_func("runtime.NumThreads")()
    assert os.sched_getaffinity(0) == cores
