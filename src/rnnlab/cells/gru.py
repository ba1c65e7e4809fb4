"""The GRU and the minimal gated unit, book section 10.10.2."""

from __future__ import annotations

from typing import final

import torch
from torch import Tensor, nn

from .base import Cell, check_sizes, dropped, uniform_

__all__ = ["GRUCell", "MGUCell"]


@final
class GRUCell(Cell):
    """Gated recurrent unit, Cho et al. 2014; book section 10.10.2. Gate order r, z, n:

        r = σ(W_xr x + b_xr + W_hr h(t-1) + b_hr)
        z = σ(W_xz x + b_xz + W_hz h(t-1) + b_hz)
        n = tanh(W_xn x + b_xn + r ⊙ (W_hn h(t-1) + b_hn))      reset="after" (default)
        n = tanh(W_xn x + b_xn + W_hn (r ⊙ h(t-1)) + b_hn)      reset="before"
        h(t) = (1 - z) ⊙ n + z ⊙ h(t-1)

    ``reset="after"`` applies the reset gate after the recurrent matrix product, as torch.nn
    and cuDNN do; all three recurrent products are then one GEMM per step. ``"before"`` is
    the original formulation of Cho et al. 2014 (the book's eq. 10.45).

    Shapes: x (B, I), h (B, H), y = h.
    """

    regularizable = True

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 reset: str = "after", device=None, dtype=None):
        super().__init__()
        check_sizes(input_size, hidden_size)
        if reset not in ("after", "before"):
            raise ValueError(f"reset must be 'after' or 'before', got {reset!r}")
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.reset = reset
        self.W_xh = nn.Parameter(torch.empty(3 * hidden_size, input_size, **kw))
        self.W_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size, **kw))
        self.b_xh = nn.Parameter(torch.empty(3 * hidden_size, **kw)) if bias else None
        self.b_hh = nn.Parameter(torch.empty(3 * hidden_size, **kw)) if bias else None
        uniform_(self.parameters(), hidden_size)

    def init_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return self._zeros(batch_size, self.hidden_size, device, dtype)

    def forward(self, h: Tensor, x: Tensor, drop: Tensor | None = None) -> tuple[Tensor, Tensor]:
        H = self.hidden_size
        gx = nn.functional.linear(x, self.W_xh, self.b_xh)
        x_r, x_z, x_n = gx.chunk(3, dim=-1)
        hd = dropped(h, drop)                 # what the recurrent weights read
        if self.reset == "after":
            h_r, h_z, h_n = nn.functional.linear(hd, self.W_hh, self.b_hh).chunk(3, dim=-1)
            r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + r * h_n)
        else:
            b_r, b_z, b_n = (self.b_hh.chunk(3) if self.b_hh is not None else (None,) * 3)
            r = torch.sigmoid(x_r + nn.functional.linear(hd, self.W_hh[:H], b_r))
            z = torch.sigmoid(x_z + nn.functional.linear(hd, self.W_hh[H:2 * H], b_z))
            n = torch.tanh(x_n + nn.functional.linear(r * hd, self.W_hh[2 * H:], b_n))
        h = (1 - z) * n + z * h
        return h, h

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, reset={self.reset!r}, "
                f"bias={self.b_xh is not None}")


@final
class MGUCell(Cell):
    """Minimal gated unit (update-gate-only GRU), Zhou et al. 2016, the single-gate
    variant the book mentions in section 10.10.2. Gate order f, n:

        f = σ(W_xf x + b_xf + W_hf h(t-1) + b_hf)
        n = tanh(W_xn x + b_xn + W_hn (f ⊙ h(t-1)) + b_hn)
        h(t) = (1 - f) ⊙ h(t-1) + f ⊙ n

    Shapes: x (B, I), h (B, H), y = h.
    """

    regularizable = True

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        check_sizes(input_size, hidden_size)
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.W_xh = nn.Parameter(torch.empty(2 * hidden_size, input_size, **kw))
        self.W_hh = nn.Parameter(torch.empty(2 * hidden_size, hidden_size, **kw))
        self.b_xh = nn.Parameter(torch.empty(2 * hidden_size, **kw)) if bias else None
        self.b_hh = nn.Parameter(torch.empty(2 * hidden_size, **kw)) if bias else None
        uniform_(self.parameters(), hidden_size)

    def init_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return self._zeros(batch_size, self.hidden_size, device, dtype)

    def forward(self, h: Tensor, x: Tensor, drop: Tensor | None = None) -> tuple[Tensor, Tensor]:
        H = self.hidden_size
        x_f, x_n = nn.functional.linear(x, self.W_xh, self.b_xh).chunk(2, dim=-1)
        b_f, b_n = self.b_hh.chunk(2) if self.b_hh is not None else (None, None)
        hd = dropped(h, drop)                 # what the recurrent weights read
        f = torch.sigmoid(x_f + nn.functional.linear(hd, self.W_hh[:H], b_f))
        n = torch.tanh(x_n + nn.functional.linear(f * hd, self.W_hh[H:], b_n))
        h = (1 - f) * h + f * n
        return h, h
