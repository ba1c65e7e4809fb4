"""Synthetic long-range memory benchmarks: the adding problem and the copy-memory task.

Both are generated on the fly. Training batches come from the training loop's generator
(seeded by ``train.seed``); the held-out valid and test sets are fixed, drawn from their own
generators seeded by ``data.seed`` (valid) and ``data.seed + 1`` (test), so changing
``train.seed`` never changes what the model is scored on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..config import ConfigError
from ..data.synthetic import adding_batch, copy_batch
from ..models.sequence import SequenceModel
from .base import Task

__all__ = ["Adding", "AddingModel", "AddingData", "Copy", "CopyModel", "CopyData"]


# --- adding problem -----------------------------------------------------------------------


@dataclass
class AddingModel:
    cell: str = "lstm"
    hidden: int = 128
    num_layers: int = 1


@dataclass
class AddingData:
    length: int = 100          # T, the sequence length
    valid_size: int = 1000
    test_size: int = 1000
    seed: int = 1234           # seeds the fixed valid (seed) and test (seed + 1) sets


class Adding(Task):
    name = "adding"
    description = ("adding problem (Hochreiter & Schmidhuber 1997): sum the two marked "
                   "values of a length-T sequence; MSE, predicting the mean scores ~0.167")
    ModelConfig, DataConfig = AddingModel, AddingData
    main_metric = "mse"
    # threads=1: the per-step GEMMs are small, and a second intra-op thread only adds
    # synchronisation (measured 8x slower with 2 threads on a busy 2-core machine)
    train_defaults = dict(steps=1500, batch_size=64, lr=1e-2, clip_norm=1.0,
                          eval_every=250, checkpoint_every=500, threads=1)

    def __init__(self, cfg, state=None):
        super().__init__(cfg, state)
        d = cfg.data
        if d.length < 2:
            raise ConfigError(f"data.length must be at least 2, got {d.length}")
        if d.valid_size < 1 or d.test_size < 1:
            raise ConfigError("data.valid_size and data.test_size must be at least 1")
        self.splits = {
            "valid": adding_batch(torch.Generator().manual_seed(d.seed), d.valid_size, d.length),
            "test": adding_batch(torch.Generator().manual_seed(d.seed + 1), d.test_size,
                                 d.length),
        }

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        return SequenceModel(m.cell, 2, m.hidden, m.num_layers, 1)

    def batch(self, generator, batch_size, device):
        xs, target = adding_batch(generator, batch_size, self.cfg.data.length)
        return xs.to(device), target.to(device)

    def _mse(self, model, batch) -> Tensor:
        xs, target = batch
        ys, _ = model(xs)                                  # (T, B, 1)
        return F.mse_loss(ys[-1, :, 0], target)            # many-to-one: the last output

    def loss(self, model, batch):
        return self._mse(model, batch), {}

    @torch.no_grad()
    def evaluate(self, model, split, device):
        xs, target = self.splits[split]
        total, n = 0.0, target.shape[0]
        for i in range(0, n, 500):
            chunk = (xs[:, i:i + 500].to(device), target[i:i + 500].to(device))
            total += self._mse(model, chunk).item() * chunk[1].shape[0]
        return {"loss": total / n, "mse": total / n}


# --- copy memory --------------------------------------------------------------------------


@dataclass
class CopyModel:
    cell: str = "lstm"
    hidden: int = 128
    num_layers: int = 1


@dataclass
class CopyData:
    symbols: int = 5           # S, symbols to remember (10 reaches only ~0.42 in 1500 steps)
    delay: int = 20            # blanks between the last symbol and the go marker
    alphabet: int = 8          # A, distinct symbols (memoryless accuracy = 1/A)
    valid_size: int = 1000
    test_size: int = 1000
    seed: int = 1234


class Copy(Task):
    name = "copy"
    description = ("copy memory (Arjovsky et al. 2016): recall S symbols after a delay; "
                   "per-symbol accuracy, memoryless baseline 1/alphabet")
    ModelConfig, DataConfig = CopyModel, CopyData
    main_metric = "accuracy"
    train_defaults = dict(steps=2500, batch_size=64, lr=3e-3, clip_norm=1.0,
                          eval_every=250, checkpoint_every=500, threads=1)

    def __init__(self, cfg, state=None):
        super().__init__(cfg, state)
        d = cfg.data
        if d.symbols < 1 or d.delay < 0 or d.alphabet < 2:
            raise ConfigError("copy needs data.symbols >= 1, data.delay >= 0, "
                              "data.alphabet >= 2")
        if d.valid_size < 1 or d.test_size < 1:
            raise ConfigError("data.valid_size and data.test_size must be at least 1")
        self.splits = {
            "valid": self._draw(torch.Generator().manual_seed(d.seed), d.valid_size),
            "test": self._draw(torch.Generator().manual_seed(d.seed + 1), d.test_size),
        }

    def _draw(self, generator, batch_size):
        d = self.cfg.data
        return copy_batch(generator, batch_size, d.symbols, d.delay, d.alphabet)

    def build_model(self) -> nn.Module:
        m, d = self.cfg.model, self.cfg.data
        return SequenceModel(m.cell, d.alphabet + 2, m.hidden, m.num_layers, d.alphabet)

    def batch(self, generator, batch_size, device):
        tokens, targets = self._draw(generator, batch_size)
        return tokens.to(device), targets.to(device)

    def export_example(self):
        tokens, _ = self._draw(torch.Generator().manual_seed(0), 2)
        return F.one_hot(tokens, self.cfg.data.alphabet + 2).float()   # (T, B, A + 2)

    def _logits(self, model, tokens):
        xs = F.one_hot(tokens, self.cfg.data.alphabet + 2).float()   # (T, B, A + 2)
        ys, _ = model(xs)                                             # (T, B, A)
        return ys[-self.cfg.data.symbols:]                            # (S, B, A) recall steps

    def loss(self, model, batch):
        tokens, targets = batch
        logits = self._logits(model, tokens)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        accuracy = (logits.argmax(-1) == targets).float().mean().item()
        return loss, {"accuracy": accuracy}

    @torch.no_grad()
    def evaluate(self, model, split, device):
        tokens, targets = self.splits[split]
        loss_sum, correct, n = 0.0, 0.0, targets.numel()
        for i in range(0, targets.shape[1], 500):
            tok, tgt = tokens[:, i:i + 500].to(device), targets[:, i:i + 500].to(device)
            logits = self._logits(model, tok)
            loss_sum += F.cross_entropy(logits.flatten(0, 1), tgt.flatten(),
                                        reduction="sum").item()
            correct += (logits.argmax(-1) == tgt).sum().item()
        return {"loss": loss_sum / n, "accuracy": correct / n}
