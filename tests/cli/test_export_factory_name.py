"""A torch model given as FILE.py:FACTORY is named after the factory, not the file."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from cli_runner import run_cli as run
from eedge.cli.export_cmd import _torch_model_name

MODELS = textwrap.dedent("""
    import torch.nn as nn

    class TwoExitNet(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.block1 = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU())
            self.exit1 = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                       nn.Linear(4 * width, 10))
            self.block2 = nn.Sequential(nn.Conv2d(width, 8, 3, padding=1), nn.ReLU(),
                                        nn.MaxPool2d(2))
            self.exit2 = nn.Sequential(nn.Flatten(), nn.Linear(8 * 4 * 4, 10))

        def forward(self, x):
            h1 = self.block1(x)
            return self.exit1(h1), self.exit2(self.block2(h1))

    def small_net():
        return TwoExitNet(4).eval()

    def wide_net():
        return TwoExitNet(8).eval()
""")


def test_file_factory_bundle_is_named_after_the_factory(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "zoo_models.py"
    source.write_text(MODELS)
    code, out, err = run(capsys, "export", f"{source}:wide_net", "--input-shape", "1,1,8,8",
                         "--out", str(tmp_path / "b"), "--json")
    assert code == 0, err
    assert json.loads(out)["manifest"]["model"]["name"] == "wide_net"


@pytest.mark.parametrize("spec, name", [
    ("models/zoo.py:resnet18_ee", "resnet18_ee"),
    ("eedge.examples.digits_model:build_model", "build_model"),
])
def test_every_factory_spelling_names_the_factory(spec: str, name: str) -> None:
    assert _torch_model_name(spec) == name
