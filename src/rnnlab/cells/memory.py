"""Explicit memory (book section 10.12): the Neural Turing Machine of Graves, Wayne &
Danihelka 2014 as an rnnlab cell.

    NTMCell(input_size, output_size, controller="lstm"|"ff", hidden=100,
            memory_slots=128, memory_width=20, read_heads=1)

A controller (an LSTM cell, or a feed-forward layer) reads [x(t); r(t-1)] — the input and
the vectors read at the previous step — and emits, for every head, the addressing
parameters; a write head also emits an erase vector e and an add vector a. With memory
M (N slots × W), for each head (paper section 3.3, eqs. 5–9):

    w_c(i) = softmax_i(β · cos(k, M(i)))               content addressing, key k, β > 0
    w_g    = g w_c + (1 − g) w(t−1)                     interpolation gate g ∈ (0, 1)
    w̃(i)   = Σ_j w_g(j) s(i − j mod N)                  circular shift, s over {−1, 0, +1}
    w(i)   = w̃(i)^γ / Σ_j w̃(j)^γ                       sharpening, γ ≥ 1

    read (eq. 2):  r = Σ_i w(i) M(i)          write (eqs. 3–4):  M ← M ⊙ (1 − w eᵀ) + w aᵀ

Every head addresses the memory as the step found it, M(t−1): the read heads read it, then
the write head erases and adds. The output is y(t) = W_y [h(t); r(t)] + b_y. Everything is
differentiable, so BPTT through :func:`rnnlab.unroll` trains it (no fused kernel: the
reference loop).

The state is :class:`NTMState`, flat tensors (B, ·) as the cell contract asks: controller
h and c, the memory (B, N·W), the last read vectors (B, R·W) and every head's last
weighting (B, (R+1)·N). It follows what Collier & Beel (2018, "Implementing Neural
Turing Machines") found to train reliably: the memory starts at a small constant
(``MEMORY_INIT``, not random, not learned), the read vectors before the first step are
learned (``initial_reads``, through tanh), and the heads' raw parameters are clipped to
±``PARAM_CLIP``. The initial weightings focus on slot 0. Sharpening is computed as
softmax(γ log w̃), the same weights as w̃^γ / Σ w̃^γ but without the float32 underflow of
w̃^γ to 0 / 0 when γ is large and w̃ spread.
"""

from __future__ import annotations

from typing import NamedTuple, final

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import Cell, LSTMState
from .lstm import LSTMCell

__all__ = ["NTMCell", "NTMState", "address"]

MEMORY_INIT = 1e-6     # every slot starts at this constant (Collier & Beel 2018)
PARAM_CLIP = 20.0      # the heads' raw parameters are clipped to ±PARAM_CLIP


class NTMState(NamedTuple):
    """The state of :class:`NTMCell`: the controller's, the memory and the heads'."""

    h: Tensor            # (B, H) controller output
    c: Tensor            # (B, H) controller memory cell (zeros for a feed-forward controller)
    memory: Tensor       # (B, N * W)
    reads: Tensor        # (B, R * W) the read vectors of the last step
    weights: Tensor      # (B, (R + 1) * N) the last weighting of every head (reads, then write)


def address(memory: Tensor, key: Tensor, beta: Tensor, gate: Tensor, shift: Tensor,
            gamma: Tensor, previous: Tensor, norms: Tensor | None = None) -> Tensor:
    """The weighting (B, N) of one head by the NTM's addressing (eqs. 5–9), or (B, H, N) of
    H heads at once.

    memory (B, N, W); key (B, W); beta, gate, gamma (B, 1); shift (B, 3) over −1, 0, +1;
    previous (B, N) — or each with a head axis: key (B, H, W), beta (B, H, 1), …, previous
    (B, H, N). norms (B, N) are the slots' norms ‖M(i)‖ when the caller has them.
    """
    one = key.dim() == 2
    if one:
        key, beta, gate, shift, gamma, previous = (
            t.unsqueeze(1) for t in (key, beta, gate, shift, gamma, previous))
    if norms is None:
        norms = torch.linalg.vector_norm(memory, dim=-1)
    dots = torch.bmm(key, memory.transpose(1, 2))                                  # (B, H, N)
    similarity = dots / (norms.unsqueeze(1) * torch.linalg.vector_norm(
        key, dim=-1, keepdim=True)).clamp_min(1e-8)                                # eq. 6
    content = torch.softmax(beta * similarity, dim=-1)                              # eq. 5
    gated = gate * content + (1 - gate) * previous                                  # eq. 7
    shifted = (shift[..., 0:1] * gated.roll(-1, dims=-1) + shift[..., 1:2] * gated  # eq. 8
               + shift[..., 2:3] * gated.roll(1, dims=-1))
    # eq. 9, w^γ / Σ w^γ, as a softmax of γ log w: the same weights, but w^γ underflows to
    # 0 / 0 in float32 once γ is large and w is spread (e.g. (1/128)^30 < 1e-63)
    w = torch.softmax(gamma * torch.log(shifted + 1e-12), dim=-1)
    return w.squeeze(1) if one else w


@final
class NTMCell(Cell):
    """The Neural Turing Machine (Graves et al. 2014); see the module docstring.

    Shapes: x (B, I) -> y (B, O); state :class:`NTMState`.
    """

    def __init__(self, input_size: int, output_size: int, controller: str = "lstm",
                 hidden: int = 100, memory_slots: int = 128, memory_width: int = 20,
                 read_heads: int = 1):
        super().__init__()
        if controller not in ("lstm", "ff"):
            raise ValueError(f"controller must be 'lstm' or 'ff', got {controller!r}")
        self.input_size, self.output_size, self.hidden_size = input_size, output_size, hidden
        self.N, self.W, self.R = memory_slots, memory_width, read_heads
        self.controller_kind = controller
        inputs = input_size + read_heads * memory_width
        if controller == "lstm":
            self.controller = LSTMCell(inputs, hidden)
        else:
            self.controller = nn.Linear(inputs, hidden)
        # per head: key W, beta 1, gate 1, shift 3, gamma 1; the write head also e, a (2W)
        self.head_size = memory_width + 6
        self.heads = nn.Linear(hidden, (read_heads + 1) * self.head_size + 2 * memory_width)
        self.out = nn.Linear(hidden + read_heads * memory_width, output_size)
        # the read vectors before the first step, learned (Collier & Beel 2018)
        self.initial_reads = nn.Parameter(torch.zeros(read_heads * memory_width))

    def init_state(self, batch_size: int, device=None, dtype=None) -> NTMState:
        z = self._zeros(batch_size, self.hidden_size, device, dtype)
        memory = torch.full((batch_size, self.N * self.W), MEMORY_INIT, device=z.device,
                            dtype=z.dtype)
        weights = z.new_zeros(batch_size, self.R + 1, self.N)
        weights[:, :, 0] = 1.0
        reads = torch.tanh(self.initial_reads).to(z).expand(batch_size, -1)
        return NTMState(z, z.clone(), memory, reads, weights.flatten(1))

    def _heads(self, p: Tensor):
        """Every head's addressing parameters from p (B, R + 1, S): key (B, R + 1, W), β,
        g, γ (B, R + 1, 1), s (B, R + 1, 3)."""
        W = self.W
        positive = F.softplus(p[..., W:W + 6])               # β at 0 and γ - 1 at 5 of these
        gate = torch.sigmoid(p[..., W + 1:W + 2])
        shift = torch.softmax(p[..., W + 2:W + 5], dim=-1)
        return p[..., :W], positive[..., 0:1], gate, shift, 1 + positive[..., 5:6]

    def forward(self, state: NTMState, x: Tensor):
        B = x.shape[0]
        inputs = torch.cat([x, state.reads], dim=1)
        if self.controller_kind == "lstm":
            ctrl, h = self.controller(LSTMState(state.h, state.c), inputs)
            c = ctrl.c
        else:
            h = torch.tanh(self.controller(inputs))
            c = state.c
        # the heads' parameters, clipped as Collier & Beel's stable implementation does
        params = self.heads(h).clamp(-PARAM_CLIP, PARAM_CLIP)
        memory = state.memory.view(B, self.N, self.W)
        norms = torch.linalg.vector_norm(memory, dim=-1)           # (B, N), shared by heads
        previous = state.weights.view(B, self.R + 1, self.N)
        S = self.head_size
        # every head addresses M(t-1), all at once (the write head last): the read heads
        # read it (eq. 2), then the write head erases and adds (eqs. 3-4)
        heads = params[:, :(self.R + 1) * S].view(B, self.R + 1, S)
        weights = address(memory, *self._heads(heads), previous, norms)         # (B, R+1, N)
        reads = torch.bmm(weights[:, :self.R], memory).flatten(1)               # eq. 2
        w_write = weights[:, self.R].unsqueeze(-1)                              # (B, N, 1)
        tail = params[:, (self.R + 1) * S:]
        erase, add = torch.sigmoid(tail[:, :self.W]), torch.tanh(tail[:, self.W:])
        # eqs. 3-4, M ⊙ (1 − w eᵀ) + w aᵀ, written as M + w ⊙ (a − e ⊙ M): one product fewer
        memory = torch.addcmul(memory, w_write, add.unsqueeze(1) - erase.unsqueeze(1) * memory)
        y = self.out(torch.cat([h, reads], dim=1))
        return NTMState(h, c, memory.flatten(1), reads, weights.flatten(1)), y
