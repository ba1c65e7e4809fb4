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

    write (eqs. 3–4):  M ← M ⊙ (1 − w eᵀ) + w aᵀ           read (eq. 2):  r = Σ_i w(i) M(i)

and the output is y(t) = W_y [h(t); r(t)] + b_y. Everything is differentiable, so BPTT
through :func:`rnnlab.unroll` trains it (no fused kernel: the reference loop).

The state is :class:`NTMState`, flat tensors (B, ·) as the cell contract asks: controller
h and c, the memory (B, N·W), the last read vectors (B, R·W) and every head's last
weighting (B, (R+1)·N). The initial memory is a small constant, the initial weightings
focus on slot 0 and the initial read vectors are zero (learned biases are a known
refinement, not used here).
"""

from __future__ import annotations

from typing import NamedTuple, final

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import Cell, LSTMState
from .lstm import LSTMCell

__all__ = ["NTMCell", "NTMState", "address"]


class NTMState(NamedTuple):
    """The state of :class:`NTMCell`: the controller's, the memory and the heads'."""

    h: Tensor            # (B, H) controller output
    c: Tensor            # (B, H) controller memory cell (zeros for a feed-forward controller)
    memory: Tensor       # (B, N * W)
    reads: Tensor        # (B, R * W) the read vectors of the last step
    weights: Tensor      # (B, (R + 1) * N) the last weighting of every head (reads, then write)


def address(memory: Tensor, key: Tensor, beta: Tensor, gate: Tensor, shift: Tensor,
            gamma: Tensor, previous: Tensor) -> Tensor:
    """One head's weighting (B, N) by the NTM's addressing (eqs. 5–9).

    memory (B, N, W); key (B, W); beta, gate, gamma (B, 1); shift (B, 3) over −1, 0, +1;
    previous (B, N).
    """
    similarity = F.cosine_similarity(memory, key.unsqueeze(1), dim=-1, eps=1e-8)  # (B, N)
    content = torch.softmax(beta * similarity, dim=-1)                            # eq. 5
    gated = gate * content + (1 - gate) * previous                                # eq. 7
    shifted = (shift[:, 0:1] * gated.roll(-1, dims=1) + shift[:, 1:2] * gated     # eq. 8
               + shift[:, 2:3] * gated.roll(1, dims=1))
    sharp = (shifted + 1e-12) ** gamma                                            # eq. 9
    return sharp / sharp.sum(-1, keepdim=True)


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

    def init_state(self, batch_size: int, device=None, dtype=None) -> NTMState:
        z = self._zeros(batch_size, self.hidden_size, device, dtype)
        memory = torch.full((batch_size, self.N * self.W), 1e-6, device=z.device,
                            dtype=z.dtype)
        weights = z.new_zeros(batch_size, self.R + 1, self.N)
        weights[:, :, 0] = 1.0
        return NTMState(z, z.clone(), memory, z.new_zeros(batch_size, self.R * self.W),
                        weights.flatten(1))

    def _head(self, p: Tensor):
        W = self.W
        key, beta, gate = p[:, :W], F.softplus(p[:, W:W + 1]), torch.sigmoid(p[:, W + 1:W + 2])
        shift = torch.softmax(p[:, W + 2:W + 5], dim=-1)
        gamma = 1 + F.softplus(p[:, W + 5:W + 6])
        return key, beta, gate, shift, gamma

    def forward(self, state: NTMState, x: Tensor):
        B = x.shape[0]
        inputs = torch.cat([x, state.reads], dim=1)
        if self.controller_kind == "lstm":
            ctrl, h = self.controller(LSTMState(state.h, state.c), inputs)
            c = ctrl.c
        else:
            h = torch.tanh(self.controller(inputs))
            c = state.c
        params = self.heads(h)
        memory = state.memory.view(B, self.N, self.W)
        previous = state.weights.view(B, self.R + 1, self.N)
        S = self.head_size
        # write first (the write head is the last), then read the updated memory
        w_write = address(memory, *self._head(params[:, self.R * S:(self.R + 1) * S]),
                          previous[:, self.R])
        tail = params[:, (self.R + 1) * S:]
        erase, add = torch.sigmoid(tail[:, :self.W]), torch.tanh(tail[:, self.W:])
        memory = memory * (1 - w_write.unsqueeze(-1) * erase.unsqueeze(1)) \
            + w_write.unsqueeze(-1) * add.unsqueeze(1)                            # eqs. 3-4
        reads, weights = [], []
        for r in range(self.R):
            w = address(memory, *self._head(params[:, r * S:(r + 1) * S]), previous[:, r])
            reads.append(torch.bmm(w.unsqueeze(1), memory).squeeze(1))           # eq. 2
            weights.append(w)
        weights.append(w_write)
        reads = torch.cat(reads, dim=1)
        y = self.out(torch.cat([h, reads], dim=1))
        return NTMState(h, c, memory.flatten(1), reads, torch.cat(weights, dim=1)), y
