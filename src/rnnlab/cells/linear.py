"""Cells whose gates read only the input: minGRU and minLSTM (Feng et al. 2024, "Were RNNs
All We Needed?", arXiv 2410.01201, sections 3.1.3 and 3.2.3).

Both are linear recurrences in the state,

    h(t) = a(t) ⊙ h(t-1) + b(t)        with (a(t), b(t)) a function of x(t) alone,

so every step's coefficients come from one GEMM over all T·B rows
(:meth:`MinGRUCell.coefficients`) and the time loop is a linear scan
(:func:`rnnlab.kernels.scan.linear_scan`), sequential or parallel over time.
The reference step ``forward(h, x)`` is the same formula in plain torch ops.

Weights follow the formulas; the rows of ``W_xh`` are the gates stacked in the order the
docstrings give, so that one GEMM computes them all.
"""

from __future__ import annotations

from typing import final

import torch
from torch import Tensor, nn

from .base import Cell, check_sizes, uniform_

__all__ = ["MinGRUCell", "MinLSTMCell"]


class _LinearRecurrence(Cell):
    """What minGRU and minLSTM share: ``gates`` blocks of H rows in ``W_xh`` (I inputs),
    the state h alone, and the step h = a ⊙ h + b from :meth:`coefficients`."""

    gates: int

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        check_sizes(input_size, hidden_size)
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.W_xh = nn.Parameter(torch.empty(self.gates * hidden_size, input_size, **kw))
        self.b_xh = nn.Parameter(torch.empty(self.gates * hidden_size, **kw)) if bias else None
        uniform_(self.parameters(), hidden_size)

    def init_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return self._zeros(batch_size, self.hidden_size, device, dtype)

    def coefficients(self, xs: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, h: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self.coefficients(x)                 # x (B, I) -> a, b (B, H)
        h = a * h + b
        return h, h

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.b_xh is not None}"


@final
class MinGRUCell(_LinearRecurrence):
    """minGRU, Feng et al. 2024 (arXiv 2410.01201, section 3.1.3). Gate order z, h̃:

        z(t)  = σ(W_z x(t) + b_z)
        h̃(t) = W_h x(t) + b_h
        h(t)  = (1 - z(t)) ⊙ h(t-1) + z(t) ⊙ h̃(t)
        y(t)  = h(t)

    i.e. h(t) = a(t) ⊙ h(t-1) + b(t) with a = 1 - z, b = z ⊙ h̃.

    Shapes: x (B, I), h (B, H), y = h; ``W_xh`` (2H, I) = [W_z; W_h], ``b_xh`` (2H,).
    """

    gates = 2

    def coefficients(self, xs: Tensor) -> tuple[Tensor, Tensor]:
        """(a, b) of h(t) = a(t) ⊙ h(t-1) + b(t) for every step: xs (T, B, I) -> two
        (T, B, H), from one GEMM over all T·B rows (or one step: (B, I) -> (B, H))."""
        z, h_tilde = nn.functional.linear(xs, self.W_xh, self.b_xh).chunk(2, dim=-1)
        z = torch.sigmoid(z)
        return 1 - z, z * h_tilde


@final
class MinLSTMCell(_LinearRecurrence):
    """minLSTM, Feng et al. 2024 (arXiv 2410.01201, section 3.2.3). Gate order f, i, h̃:

        f(t)  = σ(W_f x(t) + b_f)
        i(t)  = σ(W_i x(t) + b_i)
        h̃(t) = W_h x(t) + b_h
        f'(t), i'(t) = f / (f + i), i / (f + i)        (time-independent scale)
        h(t)  = f'(t) ⊙ h(t-1) + i'(t) ⊙ h̃(t)
        y(t)  = h(t)

    i.e. h(t) = a(t) ⊙ h(t-1) + b(t) with a = f', b = i' ⊙ h̃. There is no separate memory
    cell: the state is h alone.

    Shapes: x (B, I), h (B, H), y = h; ``W_xh`` (3H, I) = [W_f; W_i; W_h], ``b_xh`` (3H,).
    """

    gates = 3

    def coefficients(self, xs: Tensor) -> tuple[Tensor, Tensor]:
        """(a, b) of h(t) = a(t) ⊙ h(t-1) + b(t) for every step: xs (T, B, I) -> two
        (T, B, H), from one GEMM over all T·B rows (or one step: (B, I) -> (B, H))."""
        f, i, h_tilde = nn.functional.linear(xs, self.W_xh, self.b_xh).chunk(3, dim=-1)
        f, i = torch.sigmoid(f), torch.sigmoid(i)
        total = f + i
        return f / total, i / total * h_tilde
