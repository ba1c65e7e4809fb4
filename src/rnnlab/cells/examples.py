"""Custom cells written the way a user writes one: the cell contract, plain torch ops, no
kernel. They run :class:`rnnlab.Recurrent`'s generic path (:mod:`rnnlab.fast`); ``rnnlab
bench`` times them and the tests check the generic path on them.

    MyCell          the README's example: h = tanh(W [x; h] + b)
    HandGRU         a GRU written out (torch.nn's equations, gate order and parameter names
                    of rnnlab's GRUCell: W_xh, W_hh, b_xh, b_hh), to compare with the gru kernel
    PeepholeLSTM    an LSTM whose gates also read the memory cell (Gers & Schmidhuber 2000)
    IndRNNCell      independently recurrent units, h = relu(W x + u ⊙ h + b) (Li et al. 2018)
"""

from __future__ import annotations

from typing import final

import torch
from torch import Tensor, nn

from .base import Cell, LSTMState, check_sizes, uniform_

__all__ = ["MyCell", "HandGRU", "PeepholeLSTM", "IndRNNCell"]


@final
class MyCell(Cell):
    """The README's custom cell: h(t) = tanh(W [x(t); h(t-1)] + b). x (B, I) -> y = h (B, H)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        check_sizes(input_size, hidden_size)
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, \
            hidden_size
        self.lin = nn.Linear(input_size + hidden_size, hidden_size)

    def init_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return self._zeros(batch_size, self.hidden_size, device, dtype)

    def forward(self, h: Tensor, x: Tensor):
        h = torch.tanh(self.lin(torch.cat([x, h], -1)))
        return h, h


@final
class HandGRU(Cell):
    """A GRU as a user writes it (torch.nn's GRU, reset gate after the product):

        r = σ(W_xr x + b_xr + W_hr h + b_hr),  z = σ(W_xz x + b_xz + W_hz h + b_hz)
        n = tanh(W_xn x + b_xn + r ⊙ (W_hn h + b_hn)),  h' = (1 - z) ⊙ n + z ⊙ h

    Weights (3H, ·) in torch.nn's gate order r, z, n. x (B, I) -> y = h (B, H)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        check_sizes(input_size, hidden_size)
        H = hidden_size
        self.input_size, self.hidden_size, self.output_size = input_size, H, H
        self.W_xh = nn.Parameter(torch.empty(3 * H, input_size))
        self.W_hh = nn.Parameter(torch.empty(3 * H, H))
        self.b_xh = nn.Parameter(torch.empty(3 * H))
        self.b_hh = nn.Parameter(torch.empty(3 * H))
        uniform_(self.parameters(), H)

    def init_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return self._zeros(batch_size, self.hidden_size, device, dtype)

    def forward(self, h: Tensor, x: Tensor):
        xr, xz, xn = nn.functional.linear(x, self.W_xh, self.b_xh).chunk(3, -1)
        hr, hz, hn = nn.functional.linear(h, self.W_hh, self.b_hh).chunk(3, -1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        return h, h


@final
class PeepholeLSTM(Cell):
    """An LSTM with peephole connections (Gers & Schmidhuber 2000): the input and forget
    gates read c(t-1), the output gate reads c(t), through diagonal weights p_i, p_f, p_o:

        i = σ(W_i [x; h] + p_i ⊙ c + b_i),  f = σ(W_f [x; h] + p_f ⊙ c + b_f)
        c' = f ⊙ c + i ⊙ tanh(W_g [x; h] + b_g),  o = σ(W_o [x; h] + p_o ⊙ c' + b_o)
        h' = o ⊙ tanh(c')

    State :class:`LSTMState` (h, c), each (B, H). x (B, I) -> y = h (B, H)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        check_sizes(input_size, hidden_size)
        H = hidden_size
        self.input_size, self.hidden_size, self.output_size = input_size, H, H
        self.gates = nn.Linear(input_size + H, 4 * H)
        self.peep = nn.Parameter(torch.empty(3, H))
        uniform_([self.peep], H)

    def init_state(self, batch_size: int, device=None, dtype=None) -> LSTMState:
        z = self._zeros(batch_size, self.hidden_size, device, dtype)
        return LSTMState(z, z.clone())

    def forward(self, state: LSTMState, x: Tensor):
        h, c = state
        i, f, g, o = self.gates(torch.cat([x, h], -1)).chunk(4, -1)
        i = torch.sigmoid(i + self.peep[0] * c)
        f = torch.sigmoid(f + self.peep[1] * c)
        c = f * c + i * torch.tanh(g)
        h = torch.sigmoid(o + self.peep[2] * c) * torch.tanh(c)
        return LSTMState(h, c), h


@final
class IndRNNCell(Cell):
    """IndRNN (Li et al. 2018, "Independently Recurrent Neural Network"): each unit reads
    only its own past, h(t) = relu(W x(t) + u ⊙ h(t-1) + b), u (H,) a vector. The recurrent
    weights are initialised in (0, 1) so that no unit explodes at the start. x (B, I) ->
    y = h (B, H)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        check_sizes(input_size, hidden_size)
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, \
            hidden_size
        self.W = nn.Linear(input_size, hidden_size)
        self.u = nn.Parameter(torch.rand(hidden_size))

    def init_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return self._zeros(batch_size, self.hidden_size, device, dtype)

    def forward(self, h: Tensor, x: Tensor):
        h = torch.relu(self.W(x) + self.u * h)
        return h, h
