"""Many-to-one sentence classifier (book 10.2.4, 10.3): embedding -> (bidirectional) stack
over ragged lengths -> pooled sentence vector -> linear logits.

    tokens (T, B) -> embedding (T, B, E) -> Stack(cell, lengths) (T, B, D) -> pool (B, D)
                  -> dropout -> linear (B, C)

``pool``: "last" (each sentence's own last output; bidirectional: the forward output at
t = len with the backward output at t = 1, Tai et al. 2015), "mean" or "max" over the valid
steps. Used by the sentiment task.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layers import Bidirectional, Stack

__all__ = ["SentenceClassifier"]


class SentenceClassifier(nn.Module):
    """Embedding -> recurrent stack over ragged lengths -> pooled state -> linear logits."""

    def __init__(self, vocab_size: int, num_classes: int, cell: str, embed: int, hidden: int,
                 num_layers: int, bidirectional: bool, pool: str, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.rnn = Stack.build(cell, embed, hidden, num_layers, dropout, bidirectional)
        self.pool = pool
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(self.rnn.output_size, num_classes)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """tokens (T, B) int64 (0 = padding), lengths (B,) int64 -> logits (B, C)."""
        xs = self.drop(self.embed(tokens))                          # (T, B, E)
        ys, _ = self.rnn(xs, lengths=lengths)                       # (T, B, D), 0 past len
        return self.out(self.drop(self.features(ys, lengths)))      # (B, C)

    def features(self, ys: Tensor, lengths: Tensor) -> Tensor:
        """The sentence vector (B, D) from the top layer's outputs ys (T, B, D)."""
        T, B, D = ys.shape
        if self.pool == "mean":
            return ys.sum(0) / lengths.clamp(min=1).unsqueeze(1).to(ys.dtype)
        if self.pool == "max":
            valid = (torch.arange(T, device=ys.device).unsqueeze(1) < lengths).unsqueeze(2)
            top = ys.masked_fill(~valid, float("-inf")).amax(0)     # (B, D)
            return torch.where(lengths.unsqueeze(1) > 0, top, torch.zeros_like(top))
        # last: the forward direction's output at t = len (outputs are zero for len 0) ...
        last = ys[(lengths - 1).clamp(min=0), torch.arange(B, device=ys.device)]  # (B, D)
        top = self.rnn.layers[-1]
        if not isinstance(top, Bidirectional):
            return last
        # ... and the backward direction's output at t = 1, where its pass ends
        H = top.fwd.output_size
        return torch.cat([last[:, :H], ys[0, :, H:]], dim=1)
