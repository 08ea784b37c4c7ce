"""Device-side profiler, copied to a Linux device (e.g. a Raspberry Pi) over SSH.

It runs eedge's own cascade code, copied next to it as ``eedge.zip`` (pure
Python, imported from the zip), so the device times exactly what the host
would: the stages in cascade order, the cascade's overhead per exit path,
and the cascade end to end on the data in stream order. The device needs
Python 3 with numpy and jsonschema, and the runtime's engine: onnxruntime for
``onnx``, ai-edge-litert (LiteRT; XNNPACK on a Pi) for ``int8``. Usage:
    python3 remote_runner.py BUNDLE_DIR EEDGE_ZIP INPUTS.npz REQUEST.json
It prints one JSON object: versions and, per runtime, stage timings (ms) and
the cascade timing.
"""

import hashlib
import json
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


def main() -> int:
    bundle_dir, eedge_zip, inputs_path, request_path = sys.argv[1:5]
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
                "numpy": np.__version__}
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
