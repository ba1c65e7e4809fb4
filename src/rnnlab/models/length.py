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

from ..cells import LSTMState
from ..layers import Stack

__all__ = ["HaltHead", "LengthHead", "LengthModel", "STRATEGIES"]

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


class LengthModel(nn.Module):
    """Encoder (bidirectional LSTM) -> context -> LSTM decoder initialised from it, with the
    chosen length strategy's extra output."""

    def __init__(self, vocab: int, embed: int, hidden: int, strategy: str, max_len: int):
        super().__init__()
        self.strategy = strategy
        self.embed = nn.Embedding(vocab, embed)
        self.encoder = Stack.build("lstm", embed, hidden, bidirectional=True)
        self.init = nn.Linear(2 * hidden, hidden)
        self.decoder = Stack.build("lstm", embed, hidden)
        self.out = nn.Linear(hidden, vocab)
        self.halt = HaltHead(hidden) if strategy == "halt" else None
        self.tau = LengthHead(2 * hidden, max_len) if strategy == "predict" else None

    def context(self, src: Tensor, lengths: Tensor) -> Tensor:
        """src (S, B) -> (B, 2H): the final forward and backward states."""
        _, states = self.encoder(self.embed(src), lengths=lengths)
        forward_state, backward_state = states[0]                  # the one bidirectional layer
        return torch.cat([forward_state.h, backward_state.h], dim=-1)

    def start(self, context: Tensor):
        h = torch.tanh(self.init(context))
        return [LSTMState(h, torch.zeros_like(h))]

    def decode(self, tokens_in: Tensor, state):
        """Teacher-forced or one step: tokens (T, B) -> states (T, B, H), new state."""
        return self.decoder(self.embed(tokens_in), state)
