"""The LSTM cell, book section 10.10.1."""

from __future__ import annotations

from typing import final

import torch
from torch import Tensor, nn

from .base import Cell, LSTMState, check_sizes, dropped, uniform_

__all__ = ["LSTMCell", "LSTMState"]


@final
class LSTMCell(Cell):
    """Long short-term memory, Hochreiter & Schmidhuber 1997, with the forget gate of
    Gers et al. 2000; book section 10.10.1. Gate order i, f, g, o as in torch.nn:

        i, f, o = σ(W_xh x + b_xh + W_hh h(t-1) + b_hh)   (rows of each gate)
        g       = tanh(...)
        c(t)    = f ⊙ c(t-1) + i ⊙ g
        h(t)    = o ⊙ tanh(c(t))             (then h(t) = W_hr h(t) with proj_size > 0,
                                              Sak et al. 2014)
        y(t)    = h(t)

    rnnlab's own cells start with a forget-gate bias of ``forget_bias`` (1 by default,
    Jozefowicz et al. 2015) so that memory is kept at the start of training; the
    torch.nn-compatible :class:`rnnlab.LSTM` uses torch.nn's initialisation instead.

    Shapes: x (B, I), state ``LSTMState(h (B, P or H), c (B, H))``, y (B, P or H).
    """

    regularizable = True

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 proj_size: int = 0, forget_bias: float = 1.0, device=None, dtype=None):
        super().__init__()
        check_sizes(input_size, hidden_size)
        if not isinstance(proj_size, int) or not (proj_size == 0 or 0 < proj_size < hidden_size):
            raise ValueError(f"proj_size must be an int with 0 <= proj_size < hidden_size "
                             f"({hidden_size}), got {proj_size!r}")
        kw = {"device": device, "dtype": dtype}
        out = proj_size or hidden_size
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, out
        self.proj_size = proj_size
        self.W_xh = nn.Parameter(torch.empty(4 * hidden_size, input_size, **kw))
        self.W_hh = nn.Parameter(torch.empty(4 * hidden_size, out, **kw))
        self.b_xh = nn.Parameter(torch.empty(4 * hidden_size, **kw)) if bias else None
        self.b_hh = nn.Parameter(torch.empty(4 * hidden_size, **kw)) if bias else None
        self.W_hr = nn.Parameter(torch.empty(proj_size, hidden_size, **kw)) if proj_size else None
        uniform_(self.parameters(), hidden_size)
        if bias:
            with torch.no_grad():
                self.b_xh[hidden_size:2 * hidden_size].fill_(forget_bias)
                self.b_hh[hidden_size:2 * hidden_size].zero_()

    def init_state(self, batch_size: int, device=None, dtype=None) -> LSTMState:
        return LSTMState(self._zeros(batch_size, self.output_size, device, dtype),
                         self._zeros(batch_size, self.hidden_size, device, dtype))

    def forward(self, state: LSTMState, x: Tensor,
                drop: Tensor | None = None) -> tuple[LSTMState, Tensor]:
        h, c = state
        gates = nn.functional.linear(x, self.W_xh, self.b_xh)
        gates = gates + nn.functional.linear(dropped(h, drop), self.W_hh, self.b_hh)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        if self.W_hr is not None:
            h = nn.functional.linear(h, self.W_hr)
        return LSTMState(h, c), h

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, proj_size={self.proj_size}, "
                f"bias={self.b_xh is not None}")
