"""eedge.train.gates: gate targets by hand, joint training, and the example's export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gated_model import onnx_path, trained, whole_onnx
from torch import nn

from eedge.errors import InputDataError
from eedge.examples.gated_digits import OUTPUT_NAMES, torch_outputs
from eedge.policies.criteria import sigmoid
from eedge.train.gates import GateTrainConfig, gate_targets, train_gated


def test_targets_stop_when_right_or_when_no_later_exit_is() -> None:
    # columns: right at 0; wrong at 0 but right at 1; wrong everywhere; right only at 2
    errors = np.array([[0, 1, 1, 1],
                       [0, 0, 1, 1],
                       [0, 0, 1, 0]])
    targets = gate_targets(errors, [0.2, 0.6, 1.0], cost_weight=0.5)
    assert targets.tolist() == [[1, 0, 1, 0],
                                [1, 1, 1, 0],
                                [1, 1, 1, 1]]


def test_targets_with_expensive_compute_stop_even_when_wrong() -> None:
    # cost_weight 2: a later exit's extra 0.8 of the network costs 1.6 errors
    errors = np.array([[1], [0]])
    assert gate_targets(errors, [0.2, 1.0], 2.0)[:, 0].tolist() == [1, 1]
    assert gate_targets(errors, [0.2, 1.0], 1.0)[:, 0].tolist() == [0, 1]


def test_trained_gates_rank_their_targets_above_chance() -> None:
    """On test data, each gate ranks samples whose target is "stop" above the others
    (AUROC, Mann-Whitney): well above chance for exit 0 (about 50 negatives here), above
    chance for exit 1 (a handful of errors, so a loose bound)."""
    model = trained()
    data = model.data
    outs = torch_outputs(model.model, data.x_test)
    assert [o.shape[1] for o in outs] == [11, 11, 10]
    # the exits learned (the final exit of this short schedule is above 95%)
    assert np.mean(np.argmax(outs[-1], 1) == data.y_test) > 0.95
    errors = np.stack([np.argmax(o[:, :10], 1) != data.y_test for o in outs])
    targets = gate_targets(errors, [1 / 3, 2 / 3, 1.0], 0.5)
    for k, bound in ((0, 0.7), (1, 0.5)):
        gate = sigmoid(outs[k][:, 10])
        pos, neg = gate[targets[k] == 1], gate[targets[k] == 0]
        assert len(pos) and len(neg)
        auroc = float(np.mean(pos[:, None] > neg[None, :]))
        assert auroc > bound, (k, auroc)


def test_user_export_with_default_torch_onnx_export_matches_torch() -> None:
    import onnx

    model = onnx.load(onnx_path())
    assert [o.name for o in model.graph.output] == OUTPUT_NAMES
    x = trained().data.x_test[:16]
    for a, b in zip(whole_onnx(x), torch_outputs(trained().model, x)):
        assert np.allclose(a, b, atol=1e-4)


class _NoGate(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x.reshape(len(x), -1)[:, :10]
        return flat, flat


def test_models_without_a_gate_are_refused() -> None:
    x = np.zeros((4, 1, 8, 8), np.float32)
    with pytest.raises(InputDataError, match="at least one early exit needs a gate"):
        train_gated(_NoGate(), x, np.zeros(4, np.int64), 10, GateTrainConfig(epochs=1))


class _TinyGated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(64, 10)
        self.head = nn.Linear(64, 11)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x.reshape(len(x), -1)
        return self.head(flat), self.body(flat)


def test_gate_refit_needs_named_gate_parameters() -> None:
    x = np.random.default_rng(0).random((8, 1, 8, 8)).astype(np.float32)
    y = np.arange(8) % 10
    with pytest.raises(InputDataError, match="no gate parameters"):
        train_gated(_TinyGated(), x, y, 10, GateTrainConfig(epochs=1, gate_epochs=1),
                    gate_data=(x, y))
    model = _TinyGated()
    before = model.body.weight.detach().clone()
    losses = train_gated(model, x, y, 10, GateTrainConfig(epochs=1, gate_epochs=2),
                         gate_data=(x, y), gate_parameters=lambda m: [m.head.weight])
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert not torch.equal(before, model.body.weight)  # the joint epoch trained the body


def test_balanced_gate_loss_gives_each_target_value_half_the_weight() -> None:
    from torch.nn import functional

    from eedge.train.gates import gated_loss

    labels = torch.tensor([0, 1, 2, 3])
    # exit 0 is right on samples 0-2 and wrong on 3, which the final exit gets right
    early = torch.full((4, 11), -5.0)
    early[[0, 1, 2], [0, 1, 2]] = 5.0
    early[3, 0] = 5.0
    early[:, 10] = torch.tensor([0.3, -1.0, 2.0, 0.7])
    final = torch.full((4, 10), -5.0)
    final[torch.arange(4), labels] = 5.0
    config = GateTrainConfig(gate_weight=1.0, cost_weight=0.5)
    exits_only = gated_loss([early[:, :10], final], labels, 10, config)
    bce = functional.binary_cross_entropy_with_logits(early[:, 10], torch.tensor([1., 1, 1, 0]),
                                                      reduction="none")
    expected = 0.5 * bce[:3].mean() + 0.5 * bce[3]
    got = gated_loss([early, final], labels, 10, config) - exits_only
    assert torch.isclose(got, expected, atol=1e-6)
    plain = gated_loss([early, final], labels, 10, GateTrainConfig(balance=False)) - exits_only
    assert torch.isclose(plain, bce.mean(), atol=1e-6)
