"""The issue's device check: the cascade as int8 C on qemu-cortex-m4 decides exactly as
the Python int8 runtime (exit, class and rejection) on every one of 360 test digits,
with the demo's policy: window-based deferral on the running mean of the members."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from eedge.codegen.device_run import run_on_target
from eedge.examples.cascade_demo import calibrate_deferral, write_deferral
from eedge.ir.bundle import load_bundle
from eedge.policies import running_mean
from eedge.runtime.cascade import Cascade
from cascade_fixtures import cascade_case  # noqa: F401
from eedge.targets import load_target


def test_int8_c_on_qemu_equals_python_int8(cascade_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(cascade_case.bundle, bundle_dir)
    data = cascade_case.data
    bundle = load_bundle(bundle_dir)
    window = calibrate_deferral(bundle, data.x_val, data.y_val, 0.02)
    bundle = write_deferral(bundle, window)
    assert running_mean.running_members(bundle.manifest) == [0, 1, 2]
    x = data.x_test  # 360 samples
    python = Cascade(bundle, runtime="int8-reference").infer(x)
    device = run_on_target(bundle_dir, load_target("qemu-cortex-m4"), x)
    rejected = np.array([s.rejected for s in device.run.samples])
    assert len(device.run.samples) == len(x) >= 200
    assert device.exit_index.tolist() == python.exit_index.tolist()
    assert device.predictions.tolist() == python.predictions.tolist()
    assert rejected.tolist() == python.rejected.tolist()
    # the policy is exercised: several exits decide, and some samples are rejected
    assert len(set(python.exit_index.tolist())) >= 2 and 0 < python.rejected.sum() < len(x)
    assert np.mean(python.predictions == data.y_test) > 0.9
