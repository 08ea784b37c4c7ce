"""Train a multi-exit model together with learned exit gates (JEI-DNN style).

A gated exit outputs C class logits and then one gate logit (C + 1 columns,
one tensor per exit, so export and partitioning stay "one output per exit";
`eedge export` marks it with ``--gates`` or an output name ending in
``gated``). sigmoid(gate) is the probability of stopping there, and the
runtimes exit when it reaches a threshold (criterion ``gate``).

Loss: the exits' cross-entropies (as :mod:`eedge.train.multi_exit`) plus
``gate_weight`` times the binary cross-entropy of each early exit's gate
against a target computed on the fly from the exits' current (detached)
predictions:

    target_k = 1  iff  err_k + lam * c_k <= min_{j > k} (err_j + lam * c_j)

with err the 0/1 error of an exit and c its cumulative cost as a fraction of
the whole network. That is what an oracle would do under the objective
"errors + lam x compute": stop when no later exit is better by more than the
computation it costs. With lam < 1 (an error costs more than the whole
network) it reads: stop if this exit is right, or if no later exit would be
(continuing would only spend MACs). Why 0/1 errors rather than the exit's
cross-entropy: the runtime's decision is binary and what matters downstream
is whether the answer is right; a soft target would teach the gate to
reproduce the exit's confidence, which is exactly the max-softmax baseline
it is meant to beat.

Why balanced targets (``balance``): "continue" targets are rare (an early
exit of the digits CNN is right on ~95% of samples, and on ~99% of the
training set it has fitted), so plain BCE is minimized by a gate that says
"stop" to nearly everything; each batch gives both target values half the
weight instead. Measured on digits (gates vs max-softmax thresholds of the
same model at equal expected MACs, 4 seeds): unbalanced gates lost at every
budget, by up to 3 points on clean and 5 on corrupted digits (on one seed the
gate barely ranked samples at all); balanced ones are within 0.2 points of
max-softmax on clean digits and 0.4 to 1.7 points better on corrupted ones
at 20-50% of the MACs (bench/gates_bench.py, with eedge.examples.gated_digits,
whose gates read their inputs detached so they do not change the exits).

Why a second, gate-only phase on held-out data (``gate_data``): after a few
epochs the exits fit the training set, so the training targets stop showing
the errors the exits make at test time. Re-fitting only the gate heads
(backbone and classifiers frozen) on data the exits never saw gives targets
with those errors. JEI-DNN trains on the training set alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from eedge.errors import InputDataError
from eedge.train.multi_exit import seed_everything

if TYPE_CHECKING:
    import torch


@dataclass
class GateTrainConfig:
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 5e-3
    weight_decay: float = 1e-4
    gate_weight: float = 1.0        # BCE of the gates relative to the exits' cross-entropies
    cost_weight: float = 0.5        # lam: one whole network's compute in units of one error
    exit_costs: Sequence[float] | None = None  # cumulative cost per exit; default k+1 / K
    gate_epochs: int = 30           # gate-only epochs on ``gate_data`` (0: none)
    balance: bool = True            # weigh "stop" and "continue" targets equally per batch
    seed: int = 0


def gate_targets(errors: np.ndarray, costs: Sequence[float], cost_weight: float) -> np.ndarray:
    """Targets (K, N) in {0, 1}: 1 where stopping at exit k is no worse than any later exit.

    ``errors`` (K, N) are the exits' 0/1 errors, ``costs`` their cumulative
    costs as fractions of the whole network. The last exit's target is 1.
    """
    errors = np.asarray(errors, dtype=np.float64)
    risk = errors + cost_weight * np.asarray(costs, dtype=np.float64)[:, None]
    later = np.full(errors.shape[1], np.inf)
    targets = np.ones_like(errors)
    for k in range(len(errors) - 1, -1, -1):
        targets[k] = risk[k] <= later
        later = np.minimum(later, risk[k])
    return targets


def _targets_torch(outputs: Sequence["torch.Tensor"], labels: "torch.Tensor", classes: int,
                   costs: Sequence[float], cost_weight: float) -> "torch.Tensor":
    import torch

    with torch.no_grad():
        errors = torch.stack([(o[:, :classes].argmax(dim=1) != labels).double()
                              for o in outputs])
    return torch.from_numpy(gate_targets(errors.numpy(), costs, cost_weight)).float()


def gated_loss(outputs: Sequence["torch.Tensor"], labels: "torch.Tensor", classes: int,
               config: GateTrainConfig, exits_loss: bool = True) -> "torch.Tensor":
    """Exits' cross-entropies (unless ``exits_loss`` is False) + gate BCE (see module doc)."""
    import torch
    from torch.nn import functional

    costs = config.exit_costs or [(k + 1) / len(outputs) for k in range(len(outputs))]
    targets = _targets_torch(outputs, labels, classes, costs, config.cost_weight)
    loss = torch.zeros(())
    for k, out in enumerate(outputs):
        if exits_loss:
            loss = loss + functional.cross_entropy(out[:, :classes], labels)
        if out.shape[1] == classes + 1 and k < len(outputs) - 1:
            weight = None
            if config.balance:  # each target value gets half the batch's weight
                positives = targets[k].mean().clamp(1e-3, 1 - 1e-3)
                weight = torch.where(targets[k] > 0.5, 0.5 / positives, 0.5 / (1 - positives))
            loss = loss + config.gate_weight * functional.binary_cross_entropy_with_logits(
                out[:, classes], targets[k], weight=weight)
    return loss


def _check(model_outputs: Sequence["torch.Tensor"], classes: int) -> None:
    widths = [int(o.shape[1]) for o in model_outputs]
    if any(w not in (classes, classes + 1) for w in widths) or \
            all(w == classes for w in widths[:-1]):
        raise InputDataError(f"exit widths {widths}: a gated exit outputs {classes} class "
                             f"logits and then its gate logit ({classes + 1} columns); at least "
                             "one early exit needs a gate")


def train_gated(model: "torch.nn.Module", x: np.ndarray, y: np.ndarray, classes: int,
                config: GateTrainConfig = GateTrainConfig(),
                gate_data: tuple[np.ndarray, np.ndarray] | None = None,
                on_epoch: Callable[[int, float], None] | None = None,
                gate_parameters: Callable[["torch.nn.Module"], Sequence["torch.nn.Parameter"]]
                | None = None) -> list[float]:
    """Train exits and gates jointly in place; returns each epoch's mean loss.

    ``model(x)`` returns one tensor per exit: (N, classes + 1) for a gated
    exit (gate logit last), (N, classes) otherwise. With ``gate_data``
    (held-out x, y) the gate heads are then refitted alone on it for
    ``config.gate_epochs`` epochs; ``gate_parameters(model)`` names them
    (default: parameters whose name contains "gate").
    """
    import torch

    seed_everything(config.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
        with torch.no_grad():
            _check(model(inputs[:2]), classes)
        losses = _loop(model, list(model.parameters()), inputs, labels, classes, config,
                       config.epochs, True, on_epoch)
        if gate_data is not None and config.gate_epochs > 0:
            chosen = list(gate_parameters(model)) if gate_parameters else \
                [p for name, p in model.named_parameters() if "gate" in name]
            if not chosen:
                raise InputDataError("no gate parameters to refit: name the gate heads' "
                                     "modules '...gate...' or pass gate_parameters")
            held_x = torch.from_numpy(np.ascontiguousarray(gate_data[0], dtype=np.float32))
            held_y = torch.from_numpy(np.asarray(gate_data[1], dtype=np.int64))
            losses += _loop(model, chosen, held_x, held_y, classes, config, config.gate_epochs,
                            False, on_epoch, frozen_stats=True)
        model.eval()
        return losses
    finally:
        torch.set_num_threads(threads)


def _loop(model: "torch.nn.Module", parameters: list["torch.nn.Parameter"],
          inputs: "torch.Tensor", labels: "torch.Tensor", classes: int,
          config: GateTrainConfig, epochs: int, exits_loss: bool,
          on_epoch: Callable[[int, float], None] | None, frozen_stats: bool = False
          ) -> list[float]:
    """AdamW with a cosine schedule over ``parameters``; ``frozen_stats`` keeps BatchNorm's
    running statistics (eval mode) while only the gates learn."""
    import torch

    generator = torch.Generator().manual_seed(config.seed + int(frozen_stats))
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(epochs, 1))
    losses: list[float] = []
    for epoch in range(epochs):
        model.train(not frozen_stats)
        order = torch.randperm(len(inputs), generator=generator)
        total, batches = 0.0, 0
        for start in range(0, len(inputs), config.batch_size):
            idx = order[start:start + config.batch_size]
            loss = gated_loss(model(inputs[idx]), labels[idx], classes, config, exits_loss)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            batches += 1
        scheduler.step()
        losses.append(total / batches)
        if on_epoch is not None:
            on_epoch(epoch, losses[-1])
    return losses
