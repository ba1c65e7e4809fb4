"""The forecasting net (book sections 10.2 and 10.2.4): a forecast of ``horizon`` steps of
``K`` targets at every step of the input window,

    xs (T, B, F) -> Stack(cell) -> ys (T, B, H) -> dropout -> linear -> (T, B, horizon * K)

Many-to-one reads only the last step, many-to-many all of them (:mod:`rnnlab.tasks.forecast`).
"""

from __future__ import annotations

from torch import Tensor, nn

from ..layers import Stack

__all__ = ["Forecaster"]


class Forecaster(nn.Module):
    """``xs (T, B, F) -> Stack -> Linear -> (T, B, horizon * K)``, a forecast at every step."""

    def __init__(self, cell: str, input_size: int, hidden: int, num_layers: int,
                 output_size: int, dropout: float = 0.0):
        super().__init__()
        self.rnn = Stack.build(cell, input_size, hidden, num_layers, dropout)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(self.rnn.output_size, output_size)

    def forward(self, xs: Tensor, state=None):
        ys, state = self.rnn(xs, state)                   # (T, B, H)
        return self.out(self.drop(ys)), state             # (T, B, horizon * K)
