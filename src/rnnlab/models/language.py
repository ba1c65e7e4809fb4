"""Recurrent language models (book section 10.2): embedding -> recurrent stack -> logits.

    tokens (T, B) -> embedding (T, B, E) -> Stack(cell) (T, B, H) -> linear (T, B, V)

:class:`CharRNN` (char-lm; Karpathy's char-rnn, Graves 2013) and :class:`WordRNN` (word-lm;
Zaremba, Sutskever & Vinyals 2014: dropout on the non-recurrent connections only, optional
weight tying of Press & Wolf 2017 / Inan et al. 2017). :class:`FeedbackLM` (char-lm with
``model.cell=feedback``): the output-to-hidden recurrence of Fig. 10.4, trained with teacher
forcing and run free.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..cells import OutputFeedbackCell
from ..layers import Recurrent, Stack

__all__ = ["CharRNN", "FeedbackLM", "WordRNN", "TieError"]


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


class FeedbackLM(nn.Module):
    """A character model whose only recurrence is through its output (book Fig. 10.4,
    section 10.2.1; Jordan 1986), :class:`~rnnlab.cells.OutputFeedbackCell` with softmax
    feedback and O = V:

        h(t) = tanh(b_h + W_xh e(x(t)) + W_yh ŷ(t-1))        o(t) = b_y + W_hy h(t)

    **Free-running** (:meth:`forward`, test time): ŷ(t-1) = softmax(o(t-1)), the model's own
    prediction, fed back step by step (the fused kernel); the state is ``[ŷ]`` (B, V), a
    one-entry list like a :class:`Stack`'s. **Teacher forcing** (:meth:`teacher_forced`,
    training): ŷ(t-1) is the one-hot of the true character t, every step computed at once
    (:meth:`rnnlab.Recurrent.teacher_forced`). In a language model the true character t is
    also the input x(t), so under teacher forcing the net sees nothing of the past beyond
    x(t): the book's point that output recurrence is less powerful than hidden-to-hidden.
    """

    def __init__(self, vocab_size: int, embed: int, hidden: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, embed) if embed > 0 else None
        cell = OutputFeedbackCell(embed if embed > 0 else vocab_size, hidden, vocab_size,
                                  feedback="softmax")
        self.rnn = Recurrent(cell)

    def _inputs(self, tokens: Tensor) -> Tensor:
        if self.embed is not None:
            return self.embed(tokens)                                 # (T, B, E)
        return F.one_hot(tokens, self.vocab_size).float()             # (T, B, V)

    def forward(self, tokens: Tensor, state=None):
        """Free-running: tokens (T, B) int64 -> logits (T, B, V), state ``[ŷ (B, V)]``."""
        logits, y = self.rnn(self._inputs(tokens), None if state is None else state[0])
        return logits, [y]

    def teacher_forced(self, tokens: Tensor, targets: Tensor) -> Tensor:
        """tokens (T, B), their next characters targets (T, B) -> logits (T, B, V), the true
        previous character fed back at every step (the one at t = 0 is ``tokens[0]``)."""
        y = F.one_hot(targets, self.vocab_size).to(self.rnn.cell.W_hy.dtype)   # (T, B, V)
        y0 = F.one_hot(tokens[0], self.vocab_size).to(y.dtype)                # (B, V)
        return self.rnn.teacher_forced(self._inputs(tokens), y, y0)


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
