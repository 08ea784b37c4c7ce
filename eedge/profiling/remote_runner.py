"""Device-side profiler, copied to a Linux device (e.g. a Raspberry Pi) over SSH.

It runs eedge's own cascade code, copied next to it as ``eedge.zip`` (pure
Python, imported from the zip), so the device times exactly what the host
would: the stages in cascade order, the cascade's overhead per exit path,
and the cascade end to end on the data in stream order. The batch-1 C helper
(eedge/runtime/_rowdecide.c, copied beside it) is compiled there first, as
pip would at install, when the device has a C compiler and Python's headers;
otherwise the pure-Python path runs, and the output says which. The device needs
Python 3 with numpy and jsonschema, and the runtime's engine: onnxruntime for
``onnx``, ai-edge-litert (LiteRT; XNNPACK on a Pi) for ``int8``. Usage:
    python3 remote_runner.py BUNDLE_DIR EEDGE_ZIP INPUTS.npz REQUEST.json
It prints one JSON object: versions and, per runtime, stage timings (ms) and
the cascade timing.
"""

import hashlib
import json
import os
import platform
import sys


def _verify(bundle: str, manifest: dict, names: list) -> None:
    """The copied files must be the ones the host's manifest describes."""
    for name in names:
        digest = hashlib.sha256()
        with open(f"{bundle}/{name}", "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != manifest["files"][name]["sha256"]:
            raise SystemExit(f"{name} arrived damaged (sha256 differs); profile again")


def load_compiled_helper(source: str, workdir: str) -> str:
    """Build eedge.runtime._rowdecide from ``source`` into ``workdir`` and register it (an
    extension cannot load from the zip); says what runs: "compiled" or why not."""
    import importlib.machinery
    import importlib.util
    import shlex
    import subprocess
    import sysconfig

    include = sysconfig.get_paths()["include"]
    if not os.path.isfile(os.path.join(include, "Python.h")):
        return "python (no Python headers on the device)"
    target = os.path.join(workdir, "_rowdecide" + importlib.machinery.EXTENSION_SUFFIXES[0])
    compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")
    try:
        proc = subprocess.run([*compiler, "-O2", "-shared", "-fPIC", f"-I{include}", source,
                               "-o", target], capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return "python (no C compiler on the device)"
    if proc.returncode != 0:
        return "python (the C helper did not compile on the device)"
    name = "eedge.runtime._rowdecide"
    loader = importlib.machinery.ExtensionFileLoader(name, target)
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    loader.exec_module(module)
    sys.modules[name] = module
    return "compiled"


def main() -> int:
    bundle_dir, eedge_zip, inputs_path, request_path = sys.argv[1:5]
    helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_rowdecide.c")
    batch1 = load_compiled_helper(helper, bundle_dir) if os.path.isfile(helper) \
        else "python (no C helper copied)"
    sys.path.insert(0, eedge_zip)
    from pathlib import Path

    import numpy as np

    from eedge.ir.bundle import Bundle
    from eedge.profiling.cascade_timing import time_cascade
    from eedge.runtime.cascade import Cascade
    from eedge.runtime.stage_runners import RUNTIMES

    with open(f"{bundle_dir}/manifest.json", encoding="utf-8") as handle:
        manifest = json.load(handle)
    with open(request_path, encoding="utf-8") as handle:
        request = json.load(handle)
    with np.load(inputs_path, allow_pickle=False) as archive:
        x = archive["x"]
    bundle = Bundle(path=Path(bundle_dir), manifest=manifest)
    results = {}
    versions = {"python": platform.python_version(), "machine": platform.machine(),
                "numpy": np.__version__, "batch1_path": batch1}
    for runtime in request["runtimes"]:
        fmt = RUNTIMES[runtime][0]
        _verify(bundle_dir, manifest, [s["files"][fmt] for s in manifest["stages"]])
        cascade = Cascade(bundle, threads=int(request["threads"]), runtime=runtime)
        timing = time_cascade(cascade, x, batch=int(request["batch"]),
                              rounds=int(request["rounds"]),
                              stage_passes=int(request["repeats"]),
                              overhead_repeats=int(request["repeats"]),
                              warmup=int(request["warmup"]), stream=bool(request["stream"]))
        entry = {"timing": timing.to_json()}
        runner = cascade.runners[0]
        if hasattr(runner, "xnnpack"):
            entry["xnnpack"] = bool(runner.xnnpack)
        results[runtime] = entry
        if runtime == "onnx":
            import onnxruntime

            versions["onnxruntime"] = onnxruntime.__version__
        elif fmt.startswith("tflite"):
            from importlib import metadata

            try:
                versions["ai-edge-litert"] = metadata.version("ai-edge-litert")
            except metadata.PackageNotFoundError:
                versions["tflite-runtime"] = metadata.version("tflite-runtime")
    print(json.dumps({**versions, "threads": int(request["threads"]), "runtimes": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
