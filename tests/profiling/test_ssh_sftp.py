"""SSH profiling against a device whose sshd has no SFTP subsystem (issue 16 item 9).

paramiko's ``open_sftp`` raised ``SSHException: Channel closed`` through the CLI
(exit 1, a traceback); it is a TargetError that says how to enable SFTP.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "codegen"))
sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parent))

from int8_bundles import int8_bundle  # noqa: E402
from sshd import fake_pi  # noqa: E402

from cli_runner import run_cli  # noqa: E402
from eedge.errors import TargetError  # noqa: E402


def test_profile_on_a_device_without_sftp(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    bundle = int8_bundle("sequential", tmp_path)
    with fake_pi(tmp_path / "pi", sftp=False) as pi:
        target = pi.target_yaml(tmp_path / "pi.yaml")
        code, _, err = run_cli(capsys, "profile", str(bundle.path), "--target", str(target),
                               "--repeats", "2", "--warmup", "1")
    assert code == TargetError.exit_code, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("…")]
    assert len(lines) == 1 and "offers no SFTP subsystem" in lines[0], err
    assert "Subsystem sftp" in lines[0]
