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

from typing import NamedTuple

import torch
from torch import Tensor

from ..cells import ElmanCell, LeakyCell
from ._common import (
    Kernel,
    Options,
    Walk,
    dropped,
    frozen_states,
    grads,
    input_grads,
    input_projection,
    leave_step,
    previous_states,
    recurrent_grad,
    run_zoned,
    save,
    states_after,
    steps,
    sum_bias,
    tanh_,
    unpack,
    unrolled,
    zoned,
)


class _Saved(NamedTuple):
    xs: Tensor
    h0: Tensor
    W_xh: Tensor
    W_hh: Tensor
    rho: Tensor
    U: Tensor                   # u(t)
    Y: Tensor                   # h(t)
    states: Tensor | None       # the frozen state after each step, with ragged lengths
    mask: Tensor | None
    drop: Tensor | None
    zone: Tensor | None


class LeakySequence(Kernel):
    name = "leaky"
    schema = ("Tensor xs, Tensor h0, Tensor W_xh, Tensor W_hh, Tensor? bias, Tensor rho, "
              "Tensor? mask, bool reverse, bool relu, Tensor? drop=None, Tensor? zone=None")
    Saved = _Saved
    from_outputs = {"Y": 0}

    @staticmethod
    def fake(xs, h0, W_xh, W_hh, bias, rho, mask, reverse, relu, drop=None, zone=None):
        Y = xs.new_empty(xs.shape[0], xs.shape[1], h0.shape[1])
        return (Y, h0.new_empty(h0.shape)), {"U": torch.empty_like(Y),
                                             "states": None if mask is None else
                                             torch.empty_like(Y)}

    @staticmethod
    def reference(xs, h0, W_xh, W_hh, bias, rho, mask, reverse, relu, drop=None, zone=None):
        inner = ElmanCell(xs.shape[2], h0.shape[1], "relu" if relu else "tanh", device="meta")
        cell = LeakyCell(inner, learn_alpha=True)
        return unrolled(cell, {"cell.W_xh": W_xh, "cell.W_hh": W_hh, "cell.b_xh": bias,
                               "rho": rho}, xs, h0, mask, reverse, drop,
                        None if zone is None else (zone,))

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
        save(ctx, _Saved(xs, h0, W_xh, W_hh, rho, U, Y, states, mask, drop, zone),
             Options(reverse, relu))
        return Y, h.clone()

    @staticmethod
    def backward(ctx, d_ys, d_hT):
        s, opts, need = unpack(ctx)
        U = s.U
        T, B, _ = s.xs.shape
        H = s.W_hh.shape[0]
        alpha = torch.sigmoid(s.rho)
        one_minus_alpha = 1.0 - alpha
        walk = Walk.of(d_ys, s.Y, s.mask, s.zone, opts.reverse)
        dh = walk.start(d_hT, s.h0)
        # activation derivative for every step at once: 1 - u(t)² (or relu's 0/1)
        deriv = (U > 0).to(U.dtype) if opts.relu else torch.addcmul(
            torch.ones_like(U[:1]), U, U, value=-1.0)
        deriv.mul_(one_minus_alpha)                                # ∂h/∂a = (1 - α) ⊙ act'
        need_rho = need.rho
        dA = torch.empty_like(U)
        dH = torch.empty_like(U) if need_rho else None             # ∇h(t) for every t, for ∇α
        dA_t, g_t = dA.unbind(0), deriv.unbind(0)
        dH_t = dH.unbind(0) if need_rho else None
        for t, nxt in walk.order:
            dh_t, passed_on = walk.enter(dh, t, nxt)               # (frozen steps, zoneout)
            if need_rho:
                dH_t[t].copy_(dh_t)
            torch.mul(dh_t, g_t[t], out=dA_t[t])                   # ∇a = ∇h ⊙ (1 - α) ⊙ act'
            direct = dh_t * alpha                                  # ∇h ⊙ α
            if passed_on is not None:                              # + ∂L/∂y(t-1), the frozen
                direct += passed_on                                #   steps' or zoned units' ∇
            dh = recurrent_grad(dA_t[t], s.W_hh, direct, s.drop)       # ∇h(t-1) += d ⊙ Wᵀ ∇a
        # parameter gradients: one GEMM (or reduction) each over all T·B rows
        h_prev = previous_states(states_after(s.Y, s.states), s.h0, opts.reverse)
        d_xs, d_Wxh, d_b = input_grads(dA, s.xs, s.W_xh, need.xs, need.W_xh, need.bias)
        d_Whh = None
        if need.W_hh:                                              # Σ ∇a (d ⊙ h(t-1))ᵀ
            d_Whh = dA.view(T * B, H).t() @ dropped(h_prev, s.drop).view(T * B, H)
        d_rho = None
        if need_rho:
            d_alpha = (dH * (h_prev - U)).sum((0, 1))              # ∇α = Σ ∇h ⊙ (h(t-1) - u)
            d_rho = d_alpha * alpha * one_minus_alpha              # ∇ρ = ∇α ⊙ α(1 - α)
        return grads(need, xs=d_xs, h0=dh, W_xh=d_Wxh, W_hh=d_Whh, bias=d_b, rho=d_rho)


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


