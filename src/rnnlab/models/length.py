"""How a generator decides the length τ of its output (book section 10.2.4, end): three
strategies, for any decoder whose per-step states are ``(T, B, H)`` (a language model's or
an encoder–decoder's):

    "eos"       an end-of-sequence symbol in the vocabulary; generation stops after it
    "halt"      an extra Bernoulli output at every step, P(stop after this token | h_t)
                (:class:`HaltHead`), trained with cross-entropy against "is this the last
                token"; generation stops when it says so (p > 0.5)
    "predict"   an extra output that predicts τ itself, a categorical over 1..max_len from
                the conditioning context (:class:`LengthHead`); generation emits exactly τ̂
                tokens

The task ``seq-length`` (:mod:`rnnlab.tasks.seq_length`) shows all three on one problem:
reverse a digit sequence of random length, so the output length must be inferred:

    rnnlab train seq-length --set model.length=eos        (or halt, predict)

It reports exact-match accuracy, length accuracy and token accuracy on held-out sequences.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["HaltHead", "LengthHead", "STRATEGIES"]

STRATEGIES = ("eos", "halt", "predict")


class HaltHead(nn.Module):
    """P(halt after step t) = σ(w · h_t + b): ``states (T, B, H) -> logits (T, B)``."""

    def __init__(self, hidden: int):
        super().__init__()
        self.linear = nn.Linear(hidden, 1)

    def forward(self, states: Tensor) -> Tensor:
        return self.linear(states).squeeze(-1)

    @staticmethod
    def loss(logits: Tensor, lengths: Tensor) -> Tensor:
        """Binary cross-entropy on the valid steps: target 1 at step lengths - 1, else 0."""
        T = logits.shape[0]
        steps = torch.arange(T, device=logits.device)[:, None]
        valid = steps < lengths[None, :]
        target = (steps == (lengths - 1)[None, :]).float()
        return F.binary_cross_entropy_with_logits(logits[valid], target[valid])


class LengthHead(nn.Module):
    """τ from the context: ``context (B, C) -> logits (B, max_len)`` over τ = 1..max_len."""

    def __init__(self, context_size: int, max_len: int):
        super().__init__()
        self.linear = nn.Sequential(nn.Linear(context_size, context_size), nn.Tanh(),
                                    nn.Linear(context_size, max_len))

    def forward(self, context: Tensor) -> Tensor:
        return self.linear(context)

    @staticmethod
    def loss(logits: Tensor, lengths: Tensor) -> Tensor:
        return F.cross_entropy(logits, lengths - 1)
