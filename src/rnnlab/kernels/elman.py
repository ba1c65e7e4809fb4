"""Fused Elman RNN (tanh or relu) with hand-derived BPTT, book eqs. 10.8 and 10.16-10.22.

Forward, for t = 1..τ (or τ..1 in reverse):

    a(t) = b + W h(t-1) + U x(t)        U x(t) + b for all t is one GEMM before the loop
    h(t) = tanh(a(t))

Backward (with ∂L/∂h(t) arriving from the outputs and from the future):

    ∇_h(t) L = ∂L/∂y(t) + Wᵀ ∇_a(t+1) L                         (10.20 / 10.21)
    ∇_a(t) L = diag(1 - h(t)²) ∇_h(t) L                          (tanh'; relu: 1[h > 0])
    ∇_W L = Σ_t ∇_a(t) L h(t-1)ᵀ,  ∇_U L = Σ_t ∇_a(t) L x(t)ᵀ,  ∇_b L = Σ_t ∇_a(t) L   (10.22)

The three sums are one GEMM (or reduction) each over all T·B rows, after the loop.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import (
    backward_steps,
    enter_step,
    frozen_states,
    input_projection,
    leave_step,
    previous_states,
    steps,
    sum_bias,
    tanh_,
    zeros_if_none,
)


class ElmanSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xs, h0, W_xh, W_hh, bias, mask, reverse: bool, relu: bool):
        T, B, _ = xs.shape
        A = input_projection(xs, W_xh, bias)     # (T, B, H): U x(t) + b, becomes h(t) in place
        W_hhT = W_hh.t().contiguous()            # h (B, H) @ Wᵀ: contiguous is faster per step
        act_ = torch.relu_ if relu else tanh_
        a_t = A.unbind(0)
        states, s_t, m_t = frozen_states(A, mask)                  # ragged lengths only
        h = h0
        for t in steps(T, reverse):
            new = act_(a_t[t].addmm_(h, W_hhT))                    # h(t) = tanh(a(t))
            h = leave_step(new, h, m_t, s_t, t)                    # frozen past its length
        ys = A                                                     # outputs (0 past lengths)
        ctx.save_for_backward(xs, h0, W_xh, W_hh, ys, states, mask)
        ctx.reverse, ctx.relu, ctx.has_bias = reverse, relu, bias is not None
        return ys, h.clone()

    @staticmethod
    def backward(ctx, d_ys, d_hT):
        xs, h0, W_xh, W_hh, ys, states, mask = ctx.saved_tensors
        T, B, I = xs.shape
        H = W_hh.shape[0]
        d_ys = zeros_if_none(d_ys, ys)
        dh = zeros_if_none(d_hT, h0).clone()
        # activation derivative for every step at once: diag(1 - h(t)^2) (or relu's 0/1)
        deriv = (ys > 0).to(ys.dtype) if ctx.relu else torch.addcmul(
            torch.ones_like(ys[:1]), ys, ys, value=-1.0)
        dA = torch.empty_like(ys)
        dA_t, dy_t, g_t = dA.unbind(0), d_ys.unbind(0), deriv.unbind(0)
        m_t = mask.to(ys.dtype).unbind(0) if mask is not None else None
        order = backward_steps(T, ctx.reverse)
        if m_t is None:
            dh = dh + dy_t[order[0][0]]                            # ∇_h(τ)
        for t, nxt in order:
            dh_t, passed_on = enter_step(dh, dy_t, m_t, t, nxt)
            torch.mul(dh_t, g_t[t], out=dA_t[t])                   # ∇_a(t) = h'(t) ∇_h(t)
            if passed_on is None:                                  # ∇_h(t-1) = Wᵀ ∇_a(t)
                dh = dA_t[t] @ W_hh                                #   (+ ∂L/∂y(t-1) or the
            else:                                                  #   frozen steps' ∇)
                dh = torch.addmm(passed_on, dA_t[t], W_hh)
        # parameter gradients: one GEMM each over all T·B rows (10.22)
        dA2 = dA.view(T * B, H)
        h_prev = previous_states(ys if states is None else states, h0, ctx.reverse)
        d_xs = (dA2 @ W_xh).view(T, B, I) if ctx.needs_input_grad[0] else None
        d_Wxh = dA2.t() @ xs.reshape(T * B, I) if ctx.needs_input_grad[2] else None
        d_Whh = dA2.t() @ h_prev.view(T * B, H) if ctx.needs_input_grad[3] else None
        d_b = dA2.sum(0) if ctx.has_bias and ctx.needs_input_grad[4] else None
        return d_xs, dh, d_Wxh, d_Whh, d_b, None, None, None


def elman_kernel(cell, xs: Tensor, h0: Tensor, mask: Tensor | None, reverse: bool):
    """Fused sequence for :class:`rnnlab.ElmanCell`: (T, B, I) -> ((T, B, H), h (B, H))."""
    bias = sum_bias(cell.b_xh, cell.b_hh)
    return ElmanSequence.apply(xs, h0, cell.W_xh, cell.W_hh, bias, mask, reverse,
                               cell.nonlinearity == "relu")
