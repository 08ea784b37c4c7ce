"""`--weights`: what training scripts save loads; what does not fit says which keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from eedge.errors import ModelError
from eedge.frontends.torch_frontend import load_weights


def net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))


def trained() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return net().state_dict()


def save(tmp_path: Path, obj: object) -> Path:
    path = tmp_path / "w.pt"
    torch.save(obj, path)
    return path


def prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in state.items()}


@pytest.mark.parametrize("wrap", [
    lambda sd: {"state_dict": sd, "epoch": 7, "optimizer": {"state": {}, "param_groups": []}},
    lambda sd: {"model_state_dict": sd, "best_accuracy": torch.tensor(0.93)},
    lambda sd: {"model": sd, "args": {"lr": 0.1}},
    lambda sd: prefixed(sd, "module."),                      # DataParallel / DDP
    lambda sd: {"state_dict": prefixed(sd, "module.")},
    lambda sd: prefixed(sd, "_orig_mod."),                   # torch.compile
], ids=["state_dict", "model_state_dict", "model", "module-prefix", "checkpoint-module-prefix",
        "compile-prefix"])
def test_checkpoints_are_unwrapped(tmp_path: Path, wrap) -> None:  # type: ignore[no-untyped-def]
    state = trained()
    module = net()
    load_weights(module, save(tmp_path, wrap(state)))
    for key, value in module.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_a_model_whose_own_keys_have_the_prefix_keeps_it(tmp_path: Path) -> None:
    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = net()

    state = Wrapper().state_dict()
    module = Wrapper()
    load_weights(module, save(tmp_path, state))
    assert torch.equal(module.state_dict()["module.0.weight"], state["module.0.weight"])


def test_mismatch_lists_keys_with_counts(tmp_path: Path) -> None:
    state = trained()
    del state["0.weight"]
    state.update({f"head{i}.weight": torch.ones(2) for i in range(5)})
    state["3.weight"] = torch.ones(5, 144)
    with pytest.raises(ModelError) as info:
        load_weights(net(), save(tmp_path, {"state_dict": state}))
    message = str(info.value)
    assert "\n" not in message
    assert "1 missing key(s) (0.weight)" in message
    assert "5 unexpected key(s) (head0.weight, head1.weight, head2.weight, … 2 more)" in message
    assert "1 with another shape (3.weight [5, 144] vs [10, 144] in the model)" in message


def test_pickled_module_error_is_one_plain_line(tmp_path: Path) -> None:
    """torch's weights_only refusal has ESC[1m bold codes and many lines: none may leak."""
    with pytest.raises(ModelError) as info:
        load_weights(net(), save(tmp_path, net()))
    message = str(info.value)
    assert "\x1b" not in message and "\n" not in message
    assert "torch.nn.modules.container.Sequential" in message
    assert "torch.save(model.state_dict(), path)" in message


@pytest.mark.parametrize("obj, message", [
    (torch.ones(3), "holds a Tensor, not a state dict"),
    ({"weights": 1, "step": 2}, "no state dict under 'state_dict', 'model_state_dict', 'model'"),
    ({"model": [1, 2]}, "no state dict under"),
])
def test_files_without_a_state_dict(tmp_path: Path, obj: object, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        load_weights(net(), save(tmp_path, obj))


def test_not_a_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    path.write_bytes(b"\x1b[31mnot a checkpoint\n")
    with pytest.raises(ModelError, match="cannot load weights from") as info:
        load_weights(net(), path)
    assert "\x1b" not in str(info.value) and "\n" not in str(info.value)


def test_a_failing_forward_is_reported_on_one_plain_line() -> None:
    from eedge.frontends.torch_frontend import torch_to_onnx

    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("shapes \x1b[1mcannot\x1b[0m be multiplied\n(2x4 and 9x3)")

    with pytest.raises(ModelError) as info:
        torch_to_onnx(Broken(), torch.zeros(1, 4).numpy())
    message = str(info.value)
    assert "\x1b" not in message and "\n" not in message
    assert "shapes cannot be multiplied; (2x4 and 9x3)" in message
