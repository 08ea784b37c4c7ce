"""The device-side runner builds the batch-1 C helper the way pip would, or says why not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from eedge.profiling import remote_runner
from eedge.profiling.ssh import ROW_DECIDE


def test_the_helper_is_compiled_and_registered(tmp_path: Path) -> None:
    """In a fresh interpreter (as on a device): compiled, importable under its package
    name, and the batch-1 path picks it up."""
    code = (f"import sys; sys.path.insert(0, {str(Path(remote_runner.__file__).parent)!r}); "
            "import remote_runner as r; "
            f"print(r.load_compiled_helper({str(ROW_DECIDE)!r}, {str(tmp_path)!r})); "
            "import eedge.runtime.cascade_one as c; import numpy as np; "
            "print(c.compiled.__file__); "
            "print(c.compiled.float_decision(np.ones((1, 3), np.float32), 3, -1, 0, "
            "0.1, None, 1e-11, False))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[0] == "compiled"
    assert Path(out[1]).parent == tmp_path
    assert out[2] == "(0, False)"


def test_a_helper_that_does_not_compile_leaves_the_python_path(tmp_path: Path) -> None:
    broken = tmp_path / "_rowdecide.c"
    broken.write_text("this is not C\n")
    said = remote_runner.load_compiled_helper(str(broken), str(tmp_path))
    assert said == "python (the C helper did not compile on the device)"
    assert "eedge.runtime._rowdecide" not in sys.modules or \
        Path(sys.modules["eedge.runtime._rowdecide"].__file__).parent != tmp_path
