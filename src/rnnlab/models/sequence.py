"""Read-outs over a recurrent stack (book figs. 10.3 and 10.5): one output per step
(:class:`SequenceModel`) or one from the final step (:class:`SequenceClassifier`).

    SequenceModel:       xs (T, B, I) -> Stack -> ys (T, B, H) -> Linear -> (T, B, O)
    SequenceClassifier:  xs (T, B, F) -> Stack -> h(T) (B, H) -> Linear -> logits (B, C)
"""

from __future__ import annotations

from torch import Tensor, nn

from ..layers import Stack

__all__ = ["SequenceModel", "SequenceClassifier"]


class SequenceModel(nn.Module):
    """Read-out over a recurrent stack: ``xs (T, B, I) -> Stack -> Linear -> (T, B, O)``."""

    def __init__(self, cell: str, input_size: int, hidden: int, num_layers: int,
                 output_size: int, dropout: float = 0.0):
        super().__init__()
        self.rnn = Stack.build(cell, input_size, hidden, num_layers, dropout)
        self.out = nn.Linear(self.rnn.output_size, output_size)

    def forward(self, xs: Tensor, state=None):
        ys, state = self.rnn(xs, state)               # (T, B, H)
        return self.out(ys), state                    # (T, B, O)


class SequenceClassifier(nn.Module):
    """``xs (T, B, F) -> Stack -> h(T) (B, H) -> Linear -> logits (B, C)``."""

    def __init__(self, cell: str, input_size: int, hidden: int, num_layers: int,
                 classes: int, dropout: float = 0.0):
        super().__init__()
        self.rnn = Stack.build(cell, input_size, hidden, num_layers, dropout)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(self.rnn.output_size, classes)

    def forward(self, xs: Tensor) -> Tensor:
        ys, _ = self.rnn(xs)                              # (T, B, H)
        return self.out(self.drop(ys[-1]))                # (B, C), from the final step
