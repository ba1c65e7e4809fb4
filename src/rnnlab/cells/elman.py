"""The Elman (vanilla) RNN cell, book eq. 10.8."""

from __future__ import annotations

from typing import final

import torch
from torch import Tensor, nn

from .base import ACTIVATIONS, Cell, check_sizes, dropped, uniform_

__all__ = ["ElmanCell"]


@final
class ElmanCell(Cell):
    """The vanilla (Elman) RNN, book eq. 10.8 (Elman 1990):

        a(t) = b_xh + W_xh x(t) + b_hh + W_hh h(t-1)
        h(t) = tanh(a(t))            (or relu)
        y(t) = h(t)

    Shapes: x (B, I), h (B, H). The output layer o = c + V h of eq. 10.8 belongs to the
    model that uses the cell.
    """

    regularizable = True

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh",
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        check_sizes(input_size, hidden_size)
        if nonlinearity not in ACTIVATIONS:
            raise ValueError(f"nonlinearity must be one of {sorted(ACTIVATIONS)}, "
                             f"got {nonlinearity!r}")
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.nonlinearity = nonlinearity
        self.W_xh = nn.Parameter(torch.empty(hidden_size, input_size, **kw))
        self.W_hh = nn.Parameter(torch.empty(hidden_size, hidden_size, **kw))
        self.b_xh = nn.Parameter(torch.empty(hidden_size, **kw)) if bias else None
        self.b_hh = nn.Parameter(torch.empty(hidden_size, **kw)) if bias else None
        uniform_(self.parameters(), hidden_size)

    def init_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return self._zeros(batch_size, self.hidden_size, device, dtype)

    def forward(self, h: Tensor, x: Tensor, drop: Tensor | None = None) -> tuple[Tensor, Tensor]:
        a = nn.functional.linear(x, self.W_xh, self.b_xh)
        a = a + nn.functional.linear(dropped(h, drop), self.W_hh, self.b_hh)
        h = ACTIVATIONS[self.nonlinearity](a)
        return h, h

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}, "
                f"bias={self.b_xh is not None}")
