"""The algorithmic tasks of the Neural Turing Machine paper (Graves et al. 2014, section 4),
for an NTM (:class:`rnnlab.cells.memory.NTMCell`) or an LSTM baseline (``model.arch=lstm``):

    rnnlab train ntm-copy            copy a sequence of random 8-bit vectors (4.1)
    rnnlab train ntm-repeat-copy     copy it a given number of times, then an end marker (4.2)
    rnnlab train ntm-recall          associative recall: after a query item, output the item
                                     that followed it (4.3)

Sequences are generated on the fly: training lengths are drawn from ``1..data.max_len``
(items ``2..data.max_items`` for recall); the valid split uses the training range and the
**test split lengths beyond it** (``data.test_len``, default 2 × max_len), the paper's
generalisation experiment: a model that learned the algorithm keeps its error low there.

Each sequence is read whole, then the model answers while its input is blank. The loss is
binary cross-entropy on the answer steps; ``bit_error_rate`` is the fraction of answer bits
wrong after thresholding at 0.5, and ``bits_per_sequence`` the wrong bits per sequence (the
paper's "cost per sequence" in bits).

The defaults are the paper's sizes (controller 100 units, memory 128 × 20, copy lengths
1..20) with Adam at 1e-3, batches of 16 and the gradient norm clipped at 10; their measured
results over seeds, the LSTM baseline and the lengths beyond training are on
docs/10.12-memory.md (``python benchmarks/ntm.py`` repeats them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn import functional as F

from ..config import ConfigError
from ..data.ntm import copy_batch, recall_batch, repeat_copy_batch
from ..models.memory import MemoryModel
from .base import Task

__all__ = ["NTMCopy", "NTMRepeatCopy", "NTMRecall", "NTMModel"]


@dataclass
class NTMModel:
    arch: Literal["ntm", "lstm"] = "ntm"
    controller: Literal["lstm", "ff"] = "lstm"
    hidden: int = 100               # controller units (the LSTM baseline's units per layer)
    memory_slots: int = 128         # N
    memory_width: int = 20          # W
    read_heads: int = 1
    num_layers: int = 3             # LSTM baseline only (the paper's: 3 layers)


@dataclass
class CopyData:
    bits: int = 8
    max_len: int = 20               # training lengths 1..max_len (the paper's)
    test_len: int = 0               # test length; 0 = 2 * max_len (beyond training)
    valid_size: int = 200
    test_size: int = 200
    seed: int = 1234


@dataclass
class RepeatCopyData:
    bits: int = 8
    max_len: int = 5                # paper: 1..10
    max_repeats: int = 5            # paper: 1..10
    test_len: int = 0               # 0 = 2 * max_len
    test_repeats: int = 0           # 0 = max_repeats
    valid_size: int = 200
    test_size: int = 200
    seed: int = 1234


@dataclass
class RecallData:
    bits: int = 6
    item_len: int = 3
    max_items: int = 6              # training items 2..max_items (paper: 2..6)
    test_items: int = 0             # 0 = 2 * max_items
    valid_size: int = 200
    test_size: int = 200
    seed: int = 1234


class _MemoryTask(Task):
    """Shared training and scoring of the three tasks."""

    ModelConfig = NTMModel
    main_metric = "bit_error_rate"
    train_defaults = dict(steps=3000, batch_size=16, lr=1e-3, clip_norm=10.0,
                          eval_every=500, checkpoint_every=500, threads=1)
    presets = {"lstm": ["model.arch=lstm", "model.hidden=256"],
               "full": ["train.steps=40000"]}

    def __init__(self, cfg, state=None):
        super().__init__(cfg, state)
        m = cfg.model
        for key in ("hidden", "memory_slots", "memory_width", "read_heads", "num_layers"):
            if getattr(m, key) < 1:
                raise ConfigError(f"model.{key} must be at least 1, got {getattr(m, key)}")
        self._check_data(cfg.data)
        d = cfg.data
        self.splits = {"valid": self._fixed(d.seed, d.valid_size, test=False),
                       "test": self._fixed(d.seed + 1, d.test_size, test=True)}

    def _fixed(self, seed, size, test):
        """A fixed split: batches of 50 at the test length, or of 10 in the training range
        (each batch draws its own length, so 200 valid sequences cover about 20 of them)."""
        g, chunk = torch.Generator().manual_seed(seed), 50 if test else 10
        return [self._draw(g, min(chunk, size - i), test) for i in range(0, size, chunk)]

    def build_model(self):
        m = self.cfg.model
        return MemoryModel(m.arch, self.input_size, self.output_size, m.hidden, m.controller,
                           m.memory_slots, m.memory_width, m.read_heads, m.num_layers)

    def batch(self, generator, batch_size, device):
        return tuple(t.to(device) for t in self._draw(generator, batch_size, test=False))

    def _score(self, model, batch):
        x, y, mask = batch
        logits, _ = model(x)
        loss = F.binary_cross_entropy_with_logits(logits, y, weight=mask.expand_as(y),
                                                  reduction="sum")
        wrong = (((logits > 0).float() != y).float() * mask).sum()
        return loss, wrong, (mask.expand_as(y)).sum(), x.shape[1]

    def loss(self, model, batch):
        loss, wrong, bits, _ = self._score(model, batch)
        return loss / bits, {"bit_error_rate": (wrong / bits).item()}

    @torch.no_grad()
    def evaluate(self, model, split, device):
        return self.evaluate_batches(model, self.splits[split], device)

    @torch.no_grad()
    def evaluate_batches(self, model, batches, device):
        """Loss per bit, bit error rate and wrong bits per sequence over ``batches`` of
        ``(inputs, targets, mask)`` (e.g. made by :mod:`rnnlab.data.ntm` at lengths of
        one's choosing)."""
        total = wrong = bits = sequences = 0.0
        for batch in batches:
            loss, w, b, n = self._score(model, tuple(t.to(device) for t in batch))
            total, wrong, bits, sequences = (total + loss.item(), wrong + w.item(),
                                             bits + b.item(), sequences + n)
        return {"loss": total / bits, "bit_error_rate": wrong / bits,
                "bits_per_sequence": wrong / sequences}


class NTMCopy(_MemoryTask):
    name = "ntm-copy"
    description = ("NTM copy (Graves et al. 2014): reproduce random 8-bit vectors; bit error "
                   "rate at test lengths beyond training; model.arch=lstm for the baseline")
    DataConfig = CopyData
    train_defaults = {**_MemoryTask.train_defaults, "steps": 2500, "eval_every": 250,
                      "checkpoint_every": 250}

    def _check_data(self, d):
        if d.bits < 1 or d.max_len < 1 or d.test_len < 0:
            raise ConfigError("ntm-copy needs data.bits >= 1, data.max_len >= 1, "
                              "data.test_len >= 0")
        self.input_size, self.output_size = d.bits + 1, d.bits

    def _draw(self, generator, batch, test):
        d = self.cfg.data
        length = (d.test_len or 2 * d.max_len) if test else \
            int(torch.randint(1, d.max_len + 1, (1,), generator=generator))
        return copy_batch(generator, batch, length, d.bits)


class NTMRepeatCopy(_MemoryTask):
    name = "ntm-repeat-copy"
    description = ("NTM repeat copy: output the sequence n times then an end marker; bit "
                   "error rate at longer test sequences")
    DataConfig = RepeatCopyData
    # in-range error stays near 0.2 for the first 50,000 sequences, then falls to 0 by about
    # 110,000 (docs/10.12-memory.md): the default trains 320,000
    train_defaults = {**_MemoryTask.train_defaults, "steps": 20000, "eval_every": 1000,
                      "checkpoint_every": 1000}

    def _check_data(self, d):
        if d.bits < 1 or d.max_len < 1 or d.max_repeats < 1:
            raise ConfigError("ntm-repeat-copy needs data.bits, data.max_len and "
                              "data.max_repeats >= 1")
        self.input_size, self.output_size = d.bits + 2, d.bits + 1

    def _draw(self, generator, batch, test):
        d = self.cfg.data
        if test:
            length, repeats = d.test_len or 2 * d.max_len, d.test_repeats or d.max_repeats
        else:
            length = int(torch.randint(1, d.max_len + 1, (1,), generator=generator))
            repeats = int(torch.randint(1, d.max_repeats + 1, (1,), generator=generator))
        return repeat_copy_batch(generator, batch, length, repeats, d.bits, d.max_repeats)


class NTMRecall(_MemoryTask):
    name = "ntm-recall"
    description = ("NTM associative recall: given a query item, output the item after it; "
                   "bit error rate with more items at test than in training")
    DataConfig = RecallData

    def _check_data(self, d):
        if d.bits < 1 or d.item_len < 1 or d.max_items < 2:
            raise ConfigError("ntm-recall needs data.bits >= 1, data.item_len >= 1, "
                              "data.max_items >= 2")
        self.input_size, self.output_size = d.bits + 2, d.bits

    def _draw(self, generator, batch, test):
        d = self.cfg.data
        items = (d.test_items or 2 * d.max_items) if test else \
            int(torch.randint(2, d.max_items + 1, (1,), generator=generator))
        return recall_batch(generator, batch, items, d.bits, d.item_len)
