"""Device-side stage timer, copied to a Linux device (e.g. a Raspberry Pi) over SSH.

Standalone on purpose: it needs only Python 3, numpy and onnxruntime on the
device, never eedge itself. Usage:
    python3 remote_runner.py BUNDLE_DIR INPUTS.npz THREADS WARMUP REPEATS
It prints one JSON object: versions and per-stage timings in milliseconds.
"""

import json
import platform
import sys
import time


def main() -> int:
    bundle, inputs_path, threads, warmup, repeats = sys.argv[1:6]
    import numpy as np
    import onnxruntime as ort

    with open(f"{bundle}/manifest.json", encoding="utf-8") as handle:
        manifest = json.load(handle)
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    feeds = np.load(inputs_path, allow_pickle=False)
    stages = []
    for stage in manifest["stages"]:
        session = ort.InferenceSession(f"{bundle}/{stage['files']['onnx']}", options,
                                       providers=["CPUExecutionProvider"])
        names = [t["name"] for t in stage["io"]["onnx"]["inputs"]]
        feed = {name: feeds[f"{stage['index']}/{name}"] for name in names}
        for _ in range(int(warmup)):
            session.run(None, feed)
        times = []
        for _ in range(int(repeats)):
            start = time.perf_counter()
            session.run(None, feed)
            times.append((time.perf_counter() - start) * 1e3)
        stages.append({"index": stage["index"], "times_ms": times})
    print(json.dumps({"python": platform.python_version(), "machine": platform.machine(),
                      "numpy": np.__version__, "onnxruntime": ort.__version__,
                      "threads": int(threads), "stages": stages}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
