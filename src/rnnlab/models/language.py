"""Recurrent language models (book section 10.2): embedding -> recurrent stack -> logits.

    tokens (T, B) -> embedding (T, B, E) -> Stack(cell) (T, B, H) -> linear (T, B, V)

:class:`CharRNN` (char-lm; Karpathy's char-rnn, Graves 2013) and :class:`WordRNN` (word-lm;
Zaremba, Sutskever & Vinyals 2014: dropout on the non-recurrent connections only, optional
weight tying of Press & Wolf 2017 / Inan et al. 2017).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..layers import Stack

__all__ = ["CharRNN", "WordRNN", "TieError"]


class CharRNN(nn.Module):
    """Embedding -> recurrent stack -> logits. ``embed=0`` feeds one-hot vectors instead."""

    def __init__(self, vocab_size: int, cell: str, embed: int, hidden: int, num_layers: int,
                 dropout: float, recurrent_dropout: float = 0.0, zoneout: float = 0.0):
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, embed) if embed > 0 else None
        self.rnn = Stack.build(cell, embed if embed > 0 else vocab_size, hidden, num_layers,
                               dropout, recurrent_dropout=recurrent_dropout, zoneout=zoneout)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(self.rnn.output_size, vocab_size)

    def forward(self, tokens: Tensor, state=None):
        """tokens (T, B) int64 -> logits (T, B, V), state (one entry per layer)."""
        if self.embed is not None:
            xs = self.embed(tokens)                                   # (T, B, E)
        else:
            xs = F.one_hot(tokens, self.vocab_size).float()           # (T, B, V)
        ys, state = self.rnn(xs, state)                               # (T, B, H)
        return self.out(self.drop(ys)), state                         # (T, B, V)


class TieError(ValueError):
    """Weight tying asked for with an embedding size unequal to the recurrent output size."""

    def __init__(self, embed: int, size: int):
        super().__init__(f"tie needs embed ({embed}) equal to the recurrent output size "
                         f"({size})")
        self.embed, self.size = embed, size


class WordRNN(nn.Module):
    """Embedding -> dropout -> recurrent stack (dropout between layers) -> dropout -> logits.

    Dropout sits on the non-recurrent connections only (Zaremba et al. 2014, section 3).
    With ``tie`` the output layer reuses the embedding matrix: logits = h W_embed^T + b
    (:class:`TieError` when ``embed`` differs from the recurrent output size).
    """

    def __init__(self, vocab_size: int, cell: str, embed: int, hidden: int, num_layers: int,
                 dropout: float, tie: bool = False, recurrent_dropout: float = 0.0,
                 zoneout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed)
        self.rnn = Stack.build(cell, embed, hidden, num_layers, dropout,
                               recurrent_dropout=recurrent_dropout, zoneout=zoneout)
        self.drop = nn.Dropout(dropout)
        if tie:
            if self.rnn.output_size != embed:
                raise TieError(embed, self.rnn.output_size)
            self.out = None
            self.out_bias = nn.Parameter(torch.zeros(vocab_size))
        else:
            self.out = nn.Linear(self.rnn.output_size, vocab_size)

    def forward(self, tokens: Tensor, state=None):
        """tokens (T, B) int64 -> logits (T, B, V), state (one entry per layer)."""
        xs = self.drop(self.embed(tokens))                            # (T, B, E)
        ys, state = self.rnn(xs, state)                               # (T, B, H)
        ys = self.drop(ys)
        if self.out is None:
            return F.linear(ys, self.embed.weight, self.out_bias), state   # (T, B, V)
        return self.out(ys), state                                    # (T, B, V)
