"""Stage runners: ONNX Runtime through I/O binding and LiteRT's batch-1 path give the
engines' own answers (plain ``session.run``, row-by-row LiteRT), and own their outputs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "codegen"))
sys.path.insert(0, str(Path(__file__).parents[1]))

from int8_bundles import int8_bundle  # noqa: E402
from zoo import example_input  # noqa: E402

from eedge.runtime.cascade import Cascade  # noqa: E402
from eedge.runtime.interpreters import LiteRTModel, litert_interpreter  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return int8_bundle("sequential", tmp_path_factory.mktemp("runners"))


def stage_inputs(cascade: Cascade, x: np.ndarray) -> list[list[np.ndarray]]:
    store = cascade.stage_inputs(x)
    feeds = []
    for stage, io in zip(cascade.stages, cascade.io):
        feeds.append([store[t["name"]] for t in io["inputs"]])
        outs = cascade.runners[stage["index"]].run(feeds[-1])
        store.update({t["name"]: v for t, v in zip(io["outputs"], outs)})
    return feeds


@pytest.mark.parametrize("rows", [1, 3])
def test_onnx_binding_equals_session_run(bundle, rows: int) -> None:  # type: ignore[no-untyped-def]
    cascade = Cascade(bundle, runtime="onnx")
    for runner, inputs in zip(cascade.runners, stage_inputs(cascade, example_input(1, rows))):
        expected = runner.session.run(None, dict(zip(runner.input_names, inputs)))
        first = runner.run(inputs)
        again = runner.run(inputs)
        for want, a, b in zip(expected, first, again):
            np.testing.assert_array_equal(a, want)
            np.testing.assert_array_equal(b, want)
            assert a is not b and not np.shares_memory(a, b)  # run() hands out copies
        borrowed = runner.run_borrowed(inputs)
        assert all(np.shares_memory(o, runner.run_borrowed(inputs)[i])
                   for i, o in enumerate(borrowed))  # the bound buffers, reused


def test_onnx_binding_follows_new_inputs_and_shapes(bundle) -> None:  # type: ignore[no-untyped-def]
    """Each call copies its own inputs in; another batch size gets its own binding."""
    cascade = Cascade(bundle, runtime="onnx")
    runner = cascade.runners[0]
    for seed, rows in ((1, 1), (2, 1), (3, 4), (4, 1), (5, 0)):
        x = cascade.stage_inputs(example_input(seed, max(rows, 1)))[cascade.inputs[0]["name"]]
        x = x[:rows]
        want = runner.session.run(None, {runner.input_names[0]: x})
        got = runner.run([x])
        assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_onnx_binding_is_per_thread(bundle) -> None:  # type: ignore[no-untyped-def]
    """Threads sharing a runner each get their own bound buffers (no mixed answers)."""
    from concurrent.futures import ThreadPoolExecutor

    cascade = Cascade(bundle, runtime="onnx")
    runner = cascade.runners[0]
    name = cascade.inputs[0]["name"]
    xs = [cascade.stage_inputs(example_input(seed, 1))[name] for seed in range(4)]
    want = [runner.session.run(None, {runner.input_names[0]: x})[0] for x in xs]

    def work(k: int) -> bool:
        return all(np.array_equal(runner.run([xs[k]])[0], want[k]) for _ in range(200))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(4)))


def test_cascade_results_survive_later_calls(bundle) -> None:  # type: ignore[no-untyped-def]
    """infer borrows the bound outputs; nothing it returns may change on the next call."""
    cascade = Cascade(bundle, runtime="onnx")
    x = example_input(seed=7, batch=6)
    expected = [Cascade(bundle, runtime="onnx").infer(x[i:i + 1]) for i in range(6)]
    got = [cascade.infer(x[i:i + 1]) for i in range(6)]
    for want, result in zip(expected, got):
        np.testing.assert_array_equal(result.probabilities, want.probabilities)
        np.testing.assert_array_equal(result.exit_index, want.exit_index)
    logits = [cascade.run_all_exits(x[i:i + 1]) for i in range(2)]
    assert not np.array_equal(logits[0][0], logits[1][0])  # owned, not the bound buffer


@pytest.mark.parametrize("reference", [False, True])
def test_litert_batch_one_and_rows_equal_the_interpreter(bundle, reference: bool) -> None:  # type: ignore[no-untyped-def]
    cascade = Cascade(bundle, runtime="int8-litert-ref" if reference else "int8")
    for stage, inputs in zip(cascade.stages, stage_inputs(cascade, example_input(2, 3))):
        data = bundle.file(stage["files"]["tflite_int8"]).read_bytes()
        model = LiteRTModel(data, reference=reference)
        assert model.xnnpack is (not reference)  # the default resolver applies XNNPACK
        plain = litert_interpreter(data, reference)
        rows = []
        for r in range(3):
            for detail, array in zip(plain.get_input_details(), inputs):
                plain.set_tensor(detail["index"], array[r:r + 1])
            plain.invoke()
            rows.append([plain.get_tensor(d["index"]) for d in plain.get_output_details()])
        batch = model.run(inputs)
        for k, out in enumerate(batch):
            np.testing.assert_array_equal(out, np.concatenate([row[k] for row in rows]))
        single = model.run([a[:1] for a in inputs])
        for k, out in enumerate(single):
            np.testing.assert_array_equal(out, rows[0][k])
        second = model.run([a[1:2] for a in inputs])
        assert not any(np.shares_memory(a, b) for a, b in zip(single, second))
