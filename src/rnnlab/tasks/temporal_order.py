"""The temporal order problem, in the setting of Pascanu, Mikolov & Bengio 2013 ("On the
difficulty of training recurrent neural networks", section 4.1.1): the testbed of book
section 10.11 for gradient clipping and the vanishing-gradient regulariser Ω.

    xs (T, B, 6) one-hot symbols -> Stack(cell) -> h(T) (B, H) -> Linear -> logits (B, 4)

Two symbols from {A, B}, near the start (steps [T/10, 2T/10)) and in the middle
([5T/10, 6T/10)) of a stream of distractors; the class is their order (AA, AB, BA, BB),
read at the last step (:func:`rnnlab.data.synthetic.temporal_order_batch`). Chance is 75 %
error; the paper counts a run as solved when under 1 % of 10 000 fresh sequences are
misclassified.

The defaults are the paper's: 50 tanh units, minibatches of 20, constant learning rate 0.01
without momentum, the gradient norm clipped at 1 (SGD-C); ``train.pascanu=2`` adds Ω
(SGD-CR; the authors' code uses 2, the text 4). ``model.init`` picks the paper's
initialisations (biases 0 in both):

    basic   W_xh, W_hh, W_out ~ N(0, 0.1²)                                  ("basic tanh")
    smart   W_xh, W_out ~ N(0, 0.01²); W_hh sparse, 15 non-zero N(0, 0.01²) entries per
            row, rescaled to spectral radius 0.95                           ("smart tanh")
    default the cell's own (torch.nn's uniform)

Valid and test sets are fixed (``data.seed``, ``data.seed + 1``); ``error`` is the fraction
misclassified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..config import ConfigError
from ..data.synthetic import temporal_order_batch
from ..models.sequence import SequenceClassifier
from .base import Task

__all__ = ["TemporalOrder", "TemporalOrderModel", "TemporalOrderData", "pascanu_init_"]


@dataclass
class TemporalOrderModel:
    cell: str = "rnn"
    hidden: int = 50
    num_layers: int = 1
    init: Literal["basic", "smart", "default"] = "basic"


@dataclass
class TemporalOrderData:
    length: int = 50           # T, the sequence length (at least 10)
    valid_size: int = 10000
    test_size: int = 10000
    seed: int = 1234           # seeds the fixed valid (seed) and test (seed + 1) sets


def pascanu_init_(model: nn.Module, scheme: str) -> None:
    """Pascanu et al.'s (2013) ``basic`` or ``smart`` tanh initialisation, in place, from
    torch's global generator: every matrix ``W_*`` of the recurrent cells and the read-out
    weight drawn as in the module docstring, every bias zeroed (``default``: no change)."""
    if scheme == "default":
        return
    if scheme not in ("basic", "smart"):
        raise ValueError(f"init must be 'basic', 'smart' or 'default', got {scheme!r}")
    std = 0.1 if scheme == "basic" else 0.01
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rpartition(".")[2]
            if leaf.startswith("b") or leaf == "bias":
                p.zero_()
                continue
            p.normal_(0.0, std)
            if scheme == "smart" and leaf == "W_hh":
                if p.shape[0] != p.shape[1]:
                    raise ValueError(f"the smart init sets W_hh's spectral radius, which needs "
                                     f"a square W_hh (the tanh or relu RNN, model.cell=rnn); "
                                     f"{name} is {tuple(p.shape)}")
                H = p.shape[1]
                keep = torch.rand(p.shape).argsort(dim=1) < min(15, H)   # 15 per row
                p.mul_(keep)
                radius = torch.linalg.eigvals(p.double()).abs().max().item()
                if radius > 0:
                    p.mul_(0.95 / radius)


class TemporalOrder(Task):
    name = "temporal-order"
    description = ("temporal order problem (Hochreiter & Schmidhuber 1997; Pascanu et al. "
                   "2013): classify the order of two far-apart symbols; error, chance 0.75")
    ModelConfig, DataConfig = TemporalOrderModel, TemporalOrderData
    main_metric = "error"
    train_defaults = dict(steps=20000, batch_size=20, optimizer="sgd", momentum=0.0, lr=0.01,
                          clip_norm=1.0, eval_every=1000, checkpoint_every=5000,
                          log_every=100, threads=1)

    def __init__(self, cfg, state=None):
        super().__init__(cfg, state)
        d = cfg.data
        if d.length < 10:
            raise ConfigError(f"data.length must be at least 10, got {d.length}")
        if d.valid_size < 1 or d.test_size < 1:
            raise ConfigError("data.valid_size and data.test_size must be at least 1")
        self.splits = {
            "valid": temporal_order_batch(torch.Generator().manual_seed(d.seed), d.valid_size,
                                          d.length),
            "test": temporal_order_batch(torch.Generator().manual_seed(d.seed + 1),
                                         d.test_size, d.length),
        }

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        model = SequenceClassifier(m.cell, 6, m.hidden, m.num_layers, 4)
        pascanu_init_(model, m.init)
        return model

    def batch(self, generator, batch_size, device):
        xs, target = temporal_order_batch(generator, batch_size, self.cfg.data.length)
        return xs.to(device), target.to(device)

    def loss(self, model, batch) -> tuple[Tensor, dict]:
        xs, target = batch
        logits = model(xs)                                          # (B, 4)
        error = (logits.argmax(-1) != target).float().mean().item()
        return F.cross_entropy(logits, target), {"error": error}

    @torch.no_grad()
    def evaluate(self, model, split, device):
        xs, target = self.splits[split]
        loss_sum, wrong, n = 0.0, 0, target.shape[0]
        for i in range(0, n, 2000):
            logits = model(xs[:, i:i + 2000].to(device))
            t = target[i:i + 2000].to(device)
            loss_sum += F.cross_entropy(logits, t, reduction="sum").item()
            wrong += (logits.argmax(-1) != t).sum().item()
        return {"loss": loss_sum / n, "error": wrong / n}
