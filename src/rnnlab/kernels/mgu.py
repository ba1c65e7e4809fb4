"""Fused minimal gated unit with hand-derived BPTT (Zhou et al. 2016, "Minimal Gated Unit
for Recurrent Neural Networks"; the single-gate GRU of book section 10.10.2).

Forward per step, gate order f, n:

    X = U x(t) + b_x + b_h                  (all t: one GEMM before the loop)
    f = σ(X_f + W_hf h(t-1))                 recurrent GEMM 1
    n = tanh(X_n + W_hn (f ⊙ h(t-1)))        recurrent GEMM 2 (needs f)
    h(t) = (1 - f) ⊙ h(t-1) + f ⊙ n          = h(t-1) + f ⊙ (n - h(t-1))

Backward per step, with ∇h arriving from the output and from step t+1:

    ∇n      = ∇h ⊙ f
    ∇a_n    = ∇n ⊙ (1 - n²)                  the gradient of X_n
    ∇(f⊙h)  = W_hnᵀ ∇a_n                     backward GEMM 1
    ∇f      = ∇h ⊙ (n - h(t-1)) + ∇(f⊙h) ⊙ h(t-1)
    ∇a_f    = ∇f ⊙ f(1 - f)                  the gradient of X_f
    ∇h(t-1) = ∇h ⊙ (1 - f) + ∇(f⊙h) ⊙ f + W_hfᵀ ∇a_f      backward GEMM 2
    ∇W_hf = Σ_t ∇a_f(t) h(t-1)ᵀ,  ∇W_hn = Σ_t ∇a_n(t) (f ⊙ h(t-1))ᵀ,
    ∇U = Σ_t ∇X(t) x(t)ᵀ,  ∇b = Σ_t ∇X(t)                    (after the loop)
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..cells import MGUCell
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
    X: Tensor                   # f, n of every step
    FH: Tensor                  # f ⊙ h(t-1) (as W_hn read it: d ⊙ h under dropout)
    Y: Tensor                   # h(t)
    states: Tensor | None       # the frozen state after each step, with ragged lengths
    mask: Tensor | None
    drop: Tensor | None
    zone: Tensor | None


class MGUSequence(Kernel):
    name = "mgu"
    schema = ("Tensor xs, Tensor h0, Tensor W_xh, Tensor W_hh, Tensor? bias, Tensor? mask, "
              "bool reverse, Tensor? drop=None, Tensor? zone=None")
    Saved = _Saved
    from_outputs = {"Y": 0}

    @staticmethod
    def fake(xs, h0, W_xh, W_hh, bias, mask, reverse, drop=None, zone=None):
        T, B, H = xs.shape[0], xs.shape[1], h0.shape[1]
        Y = xs.new_empty(T, B, H)
        return (Y, h0.new_empty(h0.shape)), {"X": xs.new_empty(T, B, 2 * H),
                                             "FH": torch.empty_like(Y),
                                             "states": None if mask is None else
                                             torch.empty_like(Y)}

    @staticmethod
    def reference(xs, h0, W_xh, W_hh, bias, mask, reverse, drop=None, zone=None):
        cell = MGUCell(xs.shape[2], h0.shape[1], device="meta")
        return unrolled(cell, {"W_xh": W_xh, "W_hh": W_hh, "b_xh": bias}, xs, h0, mask,
                        reverse, drop, None if zone is None else (zone,))

    @staticmethod
    def forward(ctx, xs, h0, W_xh, W_hh, bias, mask, reverse: bool, drop=None, zone=None):
        # drop (B, H): recurrent dropout; zone (T, B, H): zoneout, lengths folded in
        T, B, _ = xs.shape
        H = h0.shape[1]
        X = input_projection(xs, W_xh, bias)      # (T, B, 2H): becomes f, n in place
        W_fT = W_hh[:H].t().contiguous()          # h (B, H) @ W_hfᵀ (H, H)
        W_nT = W_hh[H:].t().contiguous()
        FH, Y = xs.new_empty(T, B, H), xs.new_empty(T, B, H)   # f ⊙ h(t-1), h(t)
        f_t, n_t = X[..., :H].unbind(0), X[..., H:].unbind(0)
        FH_t, Y_t = FH.unbind(0), Y.unbind(0)
        states, s_t, m_t = frozen_states(Y, mask)                 # ragged lengths only
        z_t = zone.unbind(0) if zone is not None else None
        h = h0
        for t in steps(T, reverse):
            hd = dropped(h, drop)                                  # d ⊙ h: what W reads
            f = f_t[t].addmm_(hd, W_fT).sigmoid_()                # f = σ(X_f + W_hf h)
            fh = torch.mul(f, hd, out=FH_t[t])
            n = tanh_(n_t[t].addmm_(fh, W_nT))                     # n = tanh(X_n + W_hn (f⊙h))
            h_new = torch.lerp(h, n, f, out=Y_t[t])                # h + f ⊙ (n - h)
            if z_t is not None:
                h = zoned(h_new, h, z_t, t, Y_t[t])                # zoneout
            else:
                h = leave_step(h_new, h, m_t, s_t, t)              # frozen past its length
        save(ctx, _Saved(xs, h0, W_xh, W_hh, X, FH, Y, states, mask, drop, zone),
             Options(reverse))
        return Y, h.clone()

    @staticmethod
    def backward(ctx, d_ys, d_hT):
        s, opts, need = unpack(ctx)
        X, drop = s.X, s.drop
        T, B, _ = s.xs.shape
        H = s.h0.shape[1]
        W_hf, W_hn = s.W_hh[:H], s.W_hh[H:]
        walk = Walk.of(d_ys, s.Y, s.mask, s.zone, opts.reverse)
        dh = walk.start(d_hT, s.h0)
        ones = torch.ones_like(s.h0)
        h_prev = previous_states(states_after(s.Y, s.states), s.h0, opts.reverse)
        h_read = h_prev if drop is None else h_prev * drop           # d ⊙ h(t-1)
        dX = torch.empty_like(X)
        f_t, n_t = X[..., :H].unbind(0), X[..., H:].unbind(0)
        daf_t, dan_t = dX[..., :H].unbind(0), dX[..., H:].unbind(0)
        hp_t, hr_t = h_prev.unbind(0), h_read.unbind(0)
        for t, nxt in walk.order:
            dh_t, passed_on = walk.enter(dh, t, nxt)               # (frozen steps, zoneout)
            f, n, hp, hr = f_t[t], n_t[t], hp_t[t], hr_t[t]
            dn = dh_t * f                                          # ∇n = ∇h ⊙ f
            torch.mul(dn, torch.addcmul(ones, n, n, value=-1.0), out=dan_t[t])  # ⊙ tanh'
            dfh = dan_t[t] @ W_hn                                  # ∇(f⊙h) = W_hnᵀ ∇a_n
            df = torch.addcmul(dh_t * (n - hp), dfh, hr)           # ∇f
            torch.mul(df, torch.addcmul(f, f, f, value=-1.0), out=daf_t[t])  # σ' = f(1 - f)
            if drop is None:
                direct = torch.addcmul(dh_t - dn, dfh, f)          # ∇h ⊙ (1 - f) + ∇(f⊙h) ⊙ f
                if passed_on is not None:                          # + ∂L/∂y(t-1), the frozen
                    direct += passed_on                            #   steps' or zoned units' ∇
                dh = torch.addmm(direct, daf_t[t], W_hf)           # ∇h(t-1) += W_hfᵀ ∇a_f
            else:                                                  # the read d ⊙ h(t-1):
                read = torch.addmm(dfh * f, daf_t[t], W_hf)        #   ∇(f⊙h) ⊙ f + W_hfᵀ ∇a_f
                dh = torch.addcmul(dh_t - dn, read, drop)
                if passed_on is not None:
                    dh += passed_on
        # parameter gradients: one GEMM each over all T·B rows
        d_xs, d_Wxh, d_b = input_grads(dX, s.xs, s.W_xh, need.xs, need.W_xh, need.bias)
        d_Whh = None
        if need.W_hh:
            dX2 = dX.view(T * B, 2 * H)
            d_Whh = torch.cat([dX2[:, :H].t() @ h_read.view(T * B, H),    # ∇W_hf
                               dX2[:, H:].t() @ s.FH.view(T * B, H)])     # ∇W_hn
        return grads(need, xs=d_xs, h0=dh, W_xh=d_Wxh, W_hh=d_Whh, bias=d_b)


def mgu_kernel(cell, xs: Tensor, h0: Tensor, mask: Tensor | None, reverse: bool,
               drop: Tensor | None = None, zone=None):
    """Fused sequence for :class:`rnnlab.MGUCell`: (T, B, I) -> ((T, B, H), h (B, H)).
    ``drop`` (B, H): recurrent dropout mask; ``zone`` (z (T, B, H),): zoneout weights."""
    bias = sum_bias(cell.b_xh, cell.b_hh)    # b_hf and b_hn both add to the input projection
    return run_zoned(lambda m, z: MGUSequence.apply(
        xs, h0, cell.W_xh, cell.W_hh, bias, m, reverse, drop, *(z or ())), mask, zone)


