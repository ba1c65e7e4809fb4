"""Layer-normalised LSTM and GRU cells (Ba, Kiros & Hinton 2016, "Layer Normalization",
arXiv:1607.06450, sec. 3.1 and the LN-LSTM of its supplementary material).

Layer normalisation of a row vector z ∈ R^N (one batch row; the statistics never mix rows):

    LN(z; γ, β) = γ ⊙ (z - μ) / σ + β,    μ = mean_k z_k,  σ = sqrt(mean_k (z_k - μ)² + eps)

LN-LSTM (gate order i, f, g, o as :class:`rnnlab.cells.LSTMCell`):

    a    = LN(W_xh x(t); γ_xh, b_xh) + LN(W_hh h(t-1); γ_hh, b_hh)        a ∈ R^4H
    i, f, o = σ(a_i, a_f, a_o);  g = tanh(a_g)
    c(t) = f ⊙ c(t-1) + i ⊙ g
    h(t) = o ⊙ tanh(LN(c(t); γ_c, b_c))
    y(t) = h(t)

LN-GRU (reset gate after the product, gate order r, z, n as :class:`rnnlab.cells.GRUCell`):

    X = LN(W_xh x(t); γ_xh, b_xh),   R = LN(W_hh h(t-1); γ_hh, b_hh)      X, R ∈ R^3H
    r = σ(X_r + R_r),  z = σ(X_z + R_z)
    n = tanh(X_n + r ⊙ R_n)
    h(t) = (1 - z) ⊙ n + z ⊙ h(t-1)

Choices, the same in both cells and in their fused kernels (:mod:`rnnlab.kernels.lnorm`):

- Each projection is normalised over its whole pre-activation vector (4H for the LSTM, 3H
  for the GRU), as in the paper's LN-LSTM equations and the authors' code
  (github.com/ryankiros/layer-norm, ``lnlstm_layer``) and PyTorch's fastrnns benchmark;
  the authors' LN-GRU normalises the (r, z) and n blocks separately instead.
- The cell state c(t) stays unnormalised; LN(c) only feeds the output's tanh (the paper's
  equations; TensorFlow's LayerNormBasicLSTMCell carries LN(c) as the state instead).
- The paper's a = LN(W_h h; α₁, β₁) + LN(W_x x; α₂, β₂) + b has three additive vectors of
  which only the sum matters: here the two LN shifts are the cells' ``b_xh`` and ``b_hh``
  (their sum is β₁ + β₂ + b), so the weight names are those of LSTMCell / GRUCell and
  ``bias=False`` drops every shift (``b_xh``, ``b_hh``, ``b_c``). The gains are ``g_xh``,
  ``g_hh`` (and ``g_c`` for the LSTM), initialised to 1; shifts start at 0, except the
  LSTM's forget block of ``b_xh`` (``forget_bias``, 1 by default, as LSTMCell).
- σ uses the biased variance with ``eps`` inside the square root (torch.nn.LayerNorm's
  convention, ``eps=1e-5`` by default, as the authors' code).

Shapes: x (B, I); LSTM state ``LSTMState(h (B, H), c (B, H))``, GRU state h (B, H); y (B, H).

Use: ``rnnlab.make_cell("ln-lstm", I, H)`` / ``"ln-gru"``, ``--set model.cell=ln-lstm`` for the
tasks whose model takes a cell name (e.g. ``rnnlab train char-lm --set model.cell=ln-gru``),
and ``rnnlab bench --cells ln-lstm ln-gru``.
"""

from __future__ import annotations

from typing import final

import torch
from torch import Tensor, nn

from .base import Cell, LSTMState, check_sizes, uniform_

__all__ = ["LayerNormLSTMCell", "LayerNormGRUCell", "layer_norm"]


def layer_norm(z: Tensor, gain: Tensor, shift: Tensor | None, eps: float) -> Tensor:
    """LN(z; γ, β) over the last dimension: (B, N) -> (B, N), statistics per row."""
    return nn.functional.layer_norm(z, z.shape[-1:], gain, shift, eps)


def _check_eps(eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    return float(eps)


class _LayerNormCell(Cell):
    """Weights W_xh (G·H, I), W_hh (G·H, H); LN gains g_xh, g_hh (G·H) and shifts b_xh,
    b_hh (G·H, None without bias)."""

    regularizable = True      # forward(..., drop=) reads d ⊙ h(t-1) through W_hh

    def _init_weights(self, gates: int, input_size: int, hidden_size: int, bias: bool,
                      eps: float, kw: dict) -> None:
        check_sizes(input_size, hidden_size)
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.eps = _check_eps(eps)
        G = gates * hidden_size
        self.W_xh = nn.Parameter(torch.empty(G, input_size, **kw))
        self.W_hh = nn.Parameter(torch.empty(G, hidden_size, **kw))
        uniform_([self.W_xh, self.W_hh], hidden_size)
        self.b_xh = nn.Parameter(torch.zeros(G, **kw)) if bias else None
        self.b_hh = nn.Parameter(torch.zeros(G, **kw)) if bias else None
        self.g_xh = nn.Parameter(torch.ones(G, **kw))
        self.g_hh = nn.Parameter(torch.ones(G, **kw))

    def _projections(self, x: Tensor, h: Tensor, drop: Tensor | None = None):
        """LN(W_xh x; γ_xh, b_xh) and LN(W_hh h; γ_hh, b_hh), each (B, G·H); with a
        recurrent dropout mask, W_hh reads d ⊙ h."""
        if drop is not None:
            h = h * drop
        return (layer_norm(nn.functional.linear(x, self.W_xh), self.g_xh, self.b_xh, self.eps),
                layer_norm(nn.functional.linear(h, self.W_hh), self.g_hh, self.b_hh, self.eps))

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, eps={self.eps:g}, "
                f"bias={self.b_xh is not None}")


@final
class LayerNormLSTMCell(_LayerNormCell):
    """LN-LSTM (Ba, Kiros & Hinton 2016; module docstring for the equations and choices):
    LN on W_xh x and on W_hh h, each over all 4H pre-activations, and on c(t) before the
    output's tanh. Gate order i, f, g, o.

    Shapes: x (B, I), state ``LSTMState(h (B, H), c (B, H))``, y (B, H).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 eps: float = 1e-5, forget_bias: float = 1.0, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self._init_weights(4, input_size, hidden_size, bias, eps, kw)
        self.g_c = nn.Parameter(torch.ones(hidden_size, **kw))
        self.b_c = nn.Parameter(torch.zeros(hidden_size, **kw)) if bias else None
        if bias:
            with torch.no_grad():
                self.b_xh[hidden_size:2 * hidden_size].fill_(forget_bias)

    def init_state(self, batch_size: int, device=None, dtype=None) -> LSTMState:
        return LSTMState(self._zeros(batch_size, self.hidden_size, device, dtype),
                         self._zeros(batch_size, self.hidden_size, device, dtype))

    def forward(self, state: LSTMState, x: Tensor,
                drop: Tensor | None = None) -> tuple[LSTMState, Tensor]:
        h, c = state
        ax, ah = self._projections(x, h, drop)
        i, f, g, o = (ax + ah).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(layer_norm(c, self.g_c, self.b_c, self.eps))
        return LSTMState(h, c), h


@final
class LayerNormGRUCell(_LayerNormCell):
    """LN-GRU with the reset gate after the product (module docstring for the equations):
    LN on W_xh x and on W_hh h, each over all 3H pre-activations; the n block of the
    normalised recurrent projection (with its shift) is what r multiplies. Gate order r, z, n.

    Shapes: x (B, I), h (B, H), y = h.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self._init_weights(3, input_size, hidden_size, bias, eps,
                           {"device": device, "dtype": dtype})

    def init_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return self._zeros(batch_size, self.hidden_size, device, dtype)

    def forward(self, h: Tensor, x: Tensor, drop: Tensor | None = None) -> tuple[Tensor, Tensor]:
        X, R = self._projections(x, h, drop)
        x_r, x_z, x_n = X.chunk(3, dim=-1)
        h_r, h_z, h_n = R.chunk(3, dim=-1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        h = (1 - z) * n + z * h
        return h, h
