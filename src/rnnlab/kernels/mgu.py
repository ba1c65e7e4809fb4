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
    run_zoned,
    steps,
    sum_bias,
    tanh_,
    zeros_if_none,
    zone_step,
    zoned,
)


class MGUSequence(torch.autograd.Function):
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
        ctx.save_for_backward(xs, h0, W_xh, W_hh, X, FH, Y, states, mask, drop, zone)
        ctx.reverse, ctx.has_bias = reverse, bias is not None
        return Y, h.clone()

    @staticmethod
    def backward(ctx, d_ys, d_hT):
        xs, h0, W_xh, W_hh, X, FH, Y, states, mask, drop, zone = ctx.saved_tensors
        T, B, I = xs.shape
        H = h0.shape[1]
        W_hf, W_hn = W_hh[:H], W_hh[H:]
        d_ys = zeros_if_none(d_ys, Y)
        dh = zeros_if_none(d_hT, h0).clone()
        ones = torch.ones_like(h0)
        h_prev = previous_states(Y if states is None else states, h0, ctx.reverse)
        h_read = h_prev if drop is None else h_prev * drop           # d ⊙ h(t-1)
        dX = torch.empty_like(X)
        f_t, n_t = X[..., :H].unbind(0), X[..., H:].unbind(0)
        daf_t, dan_t = dX[..., :H].unbind(0), dX[..., H:].unbind(0)
        dy_t, hp_t, hr_t = d_ys.unbind(0), h_prev.unbind(0), h_read.unbind(0)
        z_t = zone.unbind(0) if zone is not None else None
        m_t = mask.to(X.dtype).unbind(0) if mask is not None else None
        order = backward_steps(T, ctx.reverse)
        if m_t is None and z_t is None:
            dh = dh + dy_t[order[0][0]]
        for t, nxt in order:
            if z_t is None:
                dh_t, passed_on = enter_step(dh, dy_t, m_t, t, nxt)
            else:
                dh_t, passed_on = zone_step(dh, dy_t, z_t, t)      # zoneout
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
        dX2 = dX.view(T * B, 2 * H)
        d_xs = (dX2 @ W_xh).view(T, B, I) if ctx.needs_input_grad[0] else None
        d_Wxh = dX2.t() @ xs.reshape(T * B, I) if ctx.needs_input_grad[2] else None
        d_Whh = None
        if ctx.needs_input_grad[3]:
            d_Whh = torch.cat([dX2[:, :H].t() @ h_read.view(T * B, H),    # ∇W_hf
                               dX2[:, H:].t() @ FH.view(T * B, H)])       # ∇W_hn
        d_b = dX2.sum(0) if ctx.has_bias and ctx.needs_input_grad[4] else None
        return d_xs, dh, d_Wxh, d_Whh, d_b, None, None, None, None


def mgu_kernel(cell, xs: Tensor, h0: Tensor, mask: Tensor | None, reverse: bool,
               drop: Tensor | None = None, zone=None):
    """Fused sequence for :class:`rnnlab.MGUCell`: (T, B, I) -> ((T, B, H), h (B, H)).
    ``drop`` (B, H): recurrent dropout mask; ``zone`` (z (T, B, H),): zoneout weights."""
    bias = sum_bias(cell.b_xh, cell.b_hh)    # b_hf and b_hn both add to the input projection
    return run_zoned(lambda m, z: MGUSequence.apply(
        xs, h0, cell.W_xh, cell.W_hh, bias, m, reverse, drop, *(z or ())), mask, zone)


