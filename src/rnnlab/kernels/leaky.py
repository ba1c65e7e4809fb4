"""Fused leaky Elman units with hand-derived BPTT, book section 10.9.2 (Mozer 1992;
Jaeger et al. 2007): :class:`rnnlab.LeakyCell` wrapping an :class:`rnnlab.ElmanCell`.

Forward, for t = 1..τ (or τ..1 in reverse), with α = σ(ρ) per unit:

    a(t) = b + W h(t-1) + U x(t)        U x(t) + b for all t is one GEMM before the loop
    u(t) = tanh(a(t))                   (or relu)
    h(t) = α ⊙ h(t-1) + (1 - α) ⊙ u(t)  = u(t) + α ⊙ (h(t-1) - u(t))

Backward, with ∇h(t) arriving from the output and from step t+1:

    ∇u(t)   = ∇h(t) ⊙ (1 - α)
    ∇a(t)   = ∇u(t) ⊙ (1 - u(t)²)                       (relu: 1[u > 0])
    ∇h(t-1) = ∇h(t) ⊙ α + Wᵀ ∇a(t)
    ∇α = Σ_t ∇h(t) ⊙ (h(t-1) - u(t)),  ∇ρ = ∇α ⊙ α(1 - α)
    ∇W = Σ_t ∇a(t) h(t-1)ᵀ,  ∇U = Σ_t ∇a(t) x(t)ᵀ,  ∇b = Σ_t ∇a(t)     (after the loop)

The sums over t are one GEMM (or reduction) each over all T·B rows, after the loop.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import (
    backward_steps,
    dropped,
    enter_step,
    frozen_states,
    input_projection,
    leave_step,
    previous_states,
    recurrent_grad,
    run_zoned,
    steps,
    sum_bias,
    tanh_,
    zeros_if_none,
    zone_step,
    zoned,
)


class LeakySequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xs, h0, W_xh, W_hh, bias, rho, mask, reverse: bool, relu: bool,
                drop=None, zone=None):
        # drop (B, H): recurrent dropout; zone (T, B, H): zoneout, lengths folded in
        T, B, _ = xs.shape
        U = input_projection(xs, W_xh, bias)     # (T, B, H): U x(t) + b, becomes u(t) in place
        W_hhT = W_hh.t().contiguous()
        alpha = torch.sigmoid(rho)               # (H,)
        act_ = torch.relu_ if relu else tanh_
        Y = torch.empty_like(U)
        u_t, Y_t = U.unbind(0), Y.unbind(0)
        states, s_t, m_t = frozen_states(Y, mask)                 # ragged lengths only
        z_t = zone.unbind(0) if zone is not None else None
        h = h0
        for t in steps(T, reverse):
            u = act_(u_t[t].addmm_(dropped(h, drop), W_hhT))      # u(t) = tanh(a(t))
            h_new = torch.lerp(u, h, alpha, out=Y_t[t])            # u + α ⊙ (h(t-1) - u)
            if z_t is not None:
                h = zoned(h_new, h, z_t, t, Y_t[t])                # zoneout
            else:
                h = leave_step(h_new, h, m_t, s_t, t)              # frozen past its length
        ctx.save_for_backward(xs, h0, W_xh, W_hh, rho, U, Y, states, mask, drop, zone)
        ctx.reverse, ctx.relu, ctx.has_bias = reverse, relu, bias is not None
        return Y, h.clone()

    @staticmethod
    def backward(ctx, d_ys, d_hT):
        xs, h0, W_xh, W_hh, rho, U, Y, states, mask, drop, zone = ctx.saved_tensors
        T, B, I = xs.shape
        H = W_hh.shape[0]
        alpha = torch.sigmoid(rho)
        one_minus_alpha = 1.0 - alpha
        d_ys = zeros_if_none(d_ys, Y)
        dh = zeros_if_none(d_hT, h0).clone()
        # activation derivative for every step at once: 1 - u(t)² (or relu's 0/1)
        deriv = (U > 0).to(U.dtype) if ctx.relu else torch.addcmul(
            torch.ones_like(U[:1]), U, U, value=-1.0)
        deriv.mul_(one_minus_alpha)                                # ∂h/∂a = (1 - α) ⊙ act'
        need_rho = ctx.needs_input_grad[5]
        dA = torch.empty_like(U)
        dH = torch.empty_like(U) if need_rho else None             # ∇h(t) for every t, for ∇α
        dA_t, dy_t, g_t = dA.unbind(0), d_ys.unbind(0), deriv.unbind(0)
        dH_t = dH.unbind(0) if need_rho else None
        m_t = mask.to(U.dtype).unbind(0) if mask is not None else None
        z_t = zone.unbind(0) if zone is not None else None
        order = backward_steps(T, ctx.reverse)
        if m_t is None and z_t is None:
            dh = dh + dy_t[order[0][0]]
        for t, nxt in order:
            if z_t is None:
                dh_t, passed_on = enter_step(dh, dy_t, m_t, t, nxt)
            else:
                dh_t, passed_on = zone_step(dh, dy_t, z_t, t)      # zoneout
            if need_rho:
                dH_t[t].copy_(dh_t)
            torch.mul(dh_t, g_t[t], out=dA_t[t])                   # ∇a = ∇h ⊙ (1 - α) ⊙ act'
            direct = dh_t * alpha                                  # ∇h ⊙ α
            if passed_on is not None:                              # + ∂L/∂y(t-1), the frozen
                direct += passed_on                                #   steps' or zoned units' ∇
            dh = recurrent_grad(dA_t[t], W_hh, direct, drop)       # ∇h(t-1) += d ⊙ Wᵀ ∇a
        # parameter gradients: one GEMM (or reduction) each over all T·B rows
        dA2 = dA.view(T * B, H)
        h_prev = previous_states(Y if states is None else states, h0, ctx.reverse)
        d_xs = (dA2 @ W_xh).view(T, B, I) if ctx.needs_input_grad[0] else None
        d_Wxh = dA2.t() @ xs.reshape(T * B, I) if ctx.needs_input_grad[2] else None
        d_Whh = None
        if ctx.needs_input_grad[3]:                                # Σ ∇a (d ⊙ h(t-1))ᵀ
            d_Whh = dA2.t() @ dropped(h_prev, drop).view(T * B, H)
        d_b = dA2.sum(0) if ctx.has_bias and ctx.needs_input_grad[4] else None
        d_rho = None
        if need_rho:
            d_alpha = (dH * (h_prev - U)).sum((0, 1))              # ∇α = Σ ∇h ⊙ (h(t-1) - u)
            d_rho = d_alpha * alpha * one_minus_alpha              # ∇ρ = ∇α ⊙ α(1 - α)
        return d_xs, dh, d_Wxh, d_Whh, d_b, d_rho, None, None, None, None, None


def leaky_kernel(cell, xs: Tensor, h0: Tensor, mask: Tensor | None, reverse: bool,
                 drop: Tensor | None = None, zone=None):
    """Fused sequence for :class:`rnnlab.LeakyCell` around an :class:`rnnlab.ElmanCell`:
    (T, B, I) -> ((T, B, H), h (B, H)). ``drop`` (B, H): recurrent dropout mask; ``zone``
    (z (T, B, H),): zoneout weights."""
    inner = cell.cell
    bias = sum_bias(inner.b_xh, inner.b_hh)
    relu = inner.nonlinearity == "relu"
    return run_zoned(lambda m, z: LeakySequence.apply(
        xs, h0, inner.W_xh, inner.W_hh, bias, cell.rho, m, reverse, relu, drop, *(z or ())),
        mask, zone)


