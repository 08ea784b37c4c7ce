"""How eedge finds its shipped targets and firmware templates (wheel first, then checkout)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import run_cli

import eedge.resources as resources
import eedge.targets as targets
from eedge.errors import TargetError


def test_the_packaged_copy_wins_over_the_checkout(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "_data" / "targets").mkdir(parents=True)
    monkeypatch.setattr(resources, "PACKAGE_DATA", tmp_path / "_data")
    assert resources.data_dir("targets") == tmp_path / "_data" / "targets"


def test_a_checkout_is_used_only_when_it_is_one(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed, the "checkout" is site-packages: a stray targets/ there is not ours."""
    site = tmp_path / "site-packages"
    (site / "targets").mkdir(parents=True)
    monkeypatch.setattr(resources, "PACKAGE_DATA", site / "eedge" / "_data")
    monkeypatch.setattr(resources, "CHECKOUT", site)
    assert resources.data_dir("targets") == site / "eedge" / "_data" / "targets"
    (site / "pyproject.toml").write_text("")
    assert resources.data_dir("targets") == site / "targets"


def test_missing_targets_are_an_error_not_an_empty_list(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A wheel without its data used to list no targets and call `host` unknown."""
    monkeypatch.setattr(targets, "TARGETS_DIR", tmp_path / "eedge" / "_data" / "targets")
    with pytest.raises(TargetError, match="installation is incomplete; reinstall"):
        targets.list_targets()
    with pytest.raises(TargetError, match="installation is incomplete"):
        targets.load_target("host")
    code, _, err = run_cli(capsys, "targets")
    assert code == TargetError.exit_code and "reinstall" in err
    assert targets.load_target(str(Path(resources.data_dir("targets")) / "host.yaml")).name \
        == "host"  # an explicit YAML path does not need the shipped directory
