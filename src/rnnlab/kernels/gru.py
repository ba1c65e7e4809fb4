"""Fused GRU (reset gate after the product, as torch.nn and cuDNN) with hand-derived BPTT
(book section 10.10.2; Cho et al. 2014).

Forward per step, gate order r, z, n:

    X = U x(t) + b_x + (b_hr, b_hz, 0)     (all t: one GEMM before the loop)
    R = W h(t-1) + (0, 0, b_hn)            (per step: R_r, R_z accumulate into X in place)
    r, z = σ(X_r + R_r), σ(X_z + R_z)
    n    = tanh(X_n + r ⊙ R_n)
    h(t) = n + z ⊙ (h(t-1) - n)            = (1 - z) ⊙ n + z ⊙ h(t-1)

Backward per step, with ∇h arriving from the output and from step t+1:

    ∇z   = ∇h ⊙ (h(t-1) - n)
    ∇a_n = ∇h ⊙ (1 - z) ⊙ (1 - n²)          the gradient of X_n
    ∇r   = ∇a_n ⊙ R_n
    ∇a_r, ∇a_z = ∇r ⊙ r(1 - r), ∇z ⊙ z(1 - z)
    ∇R   = (∇a_r, ∇a_z, ∇a_n ⊙ r)
    ∇h(t-1) = ∇h ⊙ z + Wᵀ ∇R
    ∇W = Σ_t ∇R(t) h(t-1)ᵀ,  ∇U = Σ_t ∇X(t) x(t)ᵀ                    (after the loop)

On CPU, for blocks of B·H >= 1024, n = tanh(a_n) = 2σ(2a_n) - 1 with the 2 folded into the
n rows of U and b_x and into the addcmul (torch's tanh costs several times its sigmoid).
The backward keeps one (T, B, 3H) buffer, ∇X = (∇a_r, ∇a_z, ∇a_n): the per-step GEMM for
Wᵀ ∇R is split at the gates, W_rzᵀ ∇a_rz + W_hnᵀ (∇a_n ⊙ r), and after ∇U, ∇x and ∇b_x
the n block becomes ∇R_n = ∇a_n ⊙ r in place for ∇W; h(t-1) is read from the saved
states (no shifted copy). Per step: 7 ops forward, 10 backward (2 of them GEMMs).

:class:`GRUBeforeSequence` is the original formulation (reset gate before the product,
Cho et al. 2014, book eq. 10.45). Every bias adds to the input projection, and the
candidate needs r first, so each step has two recurrent GEMMs:

    X = U x(t) + b_x + b_h                  (all t: one GEMM before the loop)
    r, z = σ(X_r + W_hr h(t-1)), σ(X_z + W_hz h(t-1))          GEMM 1
    n    = tanh(X_n + W_hn (r ⊙ h(t-1)))                         GEMM 2
    h(t) = n + z ⊙ (h(t-1) - n)

Backward per step:

    ∇z      = ∇h ⊙ (h(t-1) - n)
    ∇a_n    = ∇h ⊙ (1 - z) ⊙ (1 - n²)
    ∇(r⊙h)  = W_hnᵀ ∇a_n                     backward GEMM 1
    ∇r      = ∇(r⊙h) ⊙ h(t-1)
    ∇a_r, ∇a_z = ∇r ⊙ r(1 - r), ∇z ⊙ z(1 - z)
    ∇h(t-1) = ∇h ⊙ z + ∇(r⊙h) ⊙ r + W_hrzᵀ (∇a_r, ∇a_z)         backward GEMM 2
    ∇W_hrz = Σ_t ∇a_rz(t) h(t-1)ᵀ,  ∇W_hn = Σ_t ∇a_n(t) (r ⊙ h(t-1))ᵀ,
    ∇U = Σ_t ∇X(t) x(t)ᵀ,  ∇b = Σ_t ∇X(t)                      (after the loop)

Recurrent dropout (both forms): the recurrent weights read d ⊙ h(t-1) with one mask d per
sequence; z ⊙ h(t-1) and h(t-1) - n keep the undropped state. The part of ∇h(t-1) that
comes back through W is multiplied by d, and ∇W uses d ⊙ h(t-1). Zoneout: h(t) =
z' ⊙ h(t-1) + (1 - z') ⊙ h̃(t) with h̃ the GRU's update above; ∇ ⊙ (1 - z') enters the
step and ∇ ⊙ z' passes straight to t-1 (:func:`._common.zone_step`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..cells import GRUCell
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
    outer_previous,
    previous_states,
    previous_views,
    run_zoned,
    save,
    sigmoid_grad,
    sigmoid_tanh,
    states_after,
    steps,
    sum_bias,
    tanh_,
    tanh_grad,
    unpack,
    unrolled,
    zoned,
)


class _Saved(NamedTuple):
    xs: Tensor
    h0: Tensor
    W_xh: Tensor
    W_hh: Tensor
    X: Tensor                   # r, z, n of every step
    R: Tensor                   # R_n = W_hn h(t-1) + b_hn (after); r ⊙ h(t-1) (before)
    Y: Tensor                   # h(t)
    states: Tensor | None       # the frozen state after each step, with ragged lengths
    mask: Tensor | None
    drop: Tensor | None
    zone: Tensor | None


def _fake(xs, h0, mask):
    """The shapes of both GRU kernels' outputs: (ys, h), {X, R, states} (:class:`Kernel`)."""
    T, B, H = xs.shape[0], xs.shape[1], h0.shape[1]
    Y = xs.new_empty(T, B, H)
    return (Y, h0.new_empty(h0.shape)), {"X": xs.new_empty(T, B, 3 * H),
                                         "R": xs.new_empty(T, B, H),
                                         "states": None if mask is None else
                                         torch.empty_like(Y)}


class GRUSequence(Kernel):
    name = "gru"
    schema = ("Tensor xs, Tensor h0, Tensor W_xh, Tensor W_hh, Tensor? bias_x, Tensor? b_hn, "
              "Tensor? mask, bool reverse, Tensor? drop=None, Tensor? zone=None")
    Saved = _Saved
    from_outputs = {"Y": 0}

    @staticmethod
    def fake(xs, h0, W_xh, W_hh, bias_x, b_hn, mask, reverse, drop=None, zone=None):
        return _fake(xs, h0, mask)

    @staticmethod
    def reference(xs, h0, W_xh, W_hh, bias_x, b_hn, mask, reverse, drop=None, zone=None):
        H = h0.shape[1]
        b_hh = None if b_hn is None else torch.cat([b_hn.new_zeros(2 * H), b_hn])
        cell = GRUCell(xs.shape[2], H, reset="after", device="meta")
        return unrolled(cell, {"W_xh": W_xh, "W_hh": W_hh, "b_xh": bias_x, "b_hh": b_hh}, xs,
                        h0, mask, reverse, drop, None if zone is None else (zone,))

    @staticmethod
    def forward(ctx, xs, h0, W_xh, W_hh, bias_x, b_hn, mask, reverse: bool, drop=None,
                zone=None):
        # drop (B, H): recurrent dropout (W reads d ⊙ h(t-1)); zone (T, B, H): zoneout
        T, B, _ = xs.shape
        H = h0.shape[1]
        # Where tanh goes through the sigmoid, tanh(a) = 2σ(2a) - 1, the loop computes k·a_n
        # with k = 2 folded into U_n, b_xn and the addcmul: one sigmoid and one affine op.
        k = 2.0 if sigmoid_tanh(h0) else 1.0
        W_x, b_x = W_xh, bias_x
        if k != 1.0:
            W_x = torch.cat([W_xh[:2 * H], W_xh[2 * H:] * k])
            b_x = None if bias_x is None else torch.cat([bias_x[:2 * H], bias_x[2 * H:] * k])
        X = input_projection(xs, W_x, b_x)       # (T, B, 3H): becomes r, z, n in place
        W_rzT = W_hh[:2 * H].t().contiguous()     # h (B, H) @ W_rzᵀ (H, 2H)
        W_nT = W_hh[2 * H:].t().contiguous()
        Rn, Y = xs.new_empty(T, B, H), xs.new_empty(T, B, H)
        rz_t, r_t, z_t, n_t = (X[..., a:b].unbind(0) for a, b in
                               ((0, 2 * H), (0, H), (H, 2 * H), (2 * H, 3 * H)))
        Rn_t, Y_t = Rn.unbind(0), Y.unbind(0)
        states, s_t, m_t = frozen_states(Y, mask)                 # ragged lengths only
        zo_t = zone.unbind(0) if zone is not None else None
        minus_one = X.new_full((), -1.0)
        h = h0
        with torch.inference_mode():             # in place: no autograd bookkeeping
            for t in steps(T, reverse):
                hd = dropped(h, drop)                                  # what W reads
                rz_t[t].addmm_(hd, W_rzT).sigmoid_()                   # r, z
                if b_hn is None:
                    torch.mm(hd, W_nT, out=Rn_t[t])                    # R_n = W_hn h + b_hn
                else:
                    torch.addmm(b_hn, hd, W_nT, out=Rn_t[t])
                a_n = n_t[t].addcmul_(r_t[t], Rn_t[t], value=k)        # k (X_n + r ⊙ R_n)
                if k == 1.0:
                    n = a_n.tanh_()                                    # n = tanh(a_n)
                else:                                                  #   = 2σ(2a_n) - 1
                    n = torch.add(minus_one, a_n.sigmoid_(), alpha=2.0, out=a_n)
                h_new = torch.lerp(n, h, z_t[t], out=Y_t[t])           # n + z ⊙ (h - n)
                if zo_t is not None:
                    h = zoned(h_new, h, zo_t, t, Y_t[t])               # zoneout
                else:
                    h = leave_step(h_new, h, m_t, s_t, t)              # frozen past its length
        save(ctx, _Saved(xs, h0, W_xh, W_hh, X, Rn, Y, states, mask, drop, zone),
             Options(reverse))
        return Y, h.clone()

    @staticmethod
    def backward(ctx, d_ys, d_hT):
        s, opts, need = unpack(ctx)
        X, W_hh, drop = s.X, s.W_hh, s.drop
        H = s.h0.shape[1]
        walk = Walk.of(d_ys, s.Y, s.mask, s.zone, opts.reverse)
        dh = walk.start(d_hT, s.h0)
        hs = states_after(s.Y, s.states)
        # ∇X (T, B, 3H) = (∇a_r, ∇a_z, ∇a_n), the only (T, B, ·) temporary; ∇R differs from
        # it only in n, ∇R_n = ∇a_n ⊙ r: per step a (B, H) temporary, for all t in place below
        dX = torch.empty_like(X)
        rz_t, r_t, z_t, n_t = (X[..., a:b].unbind(0) for a, b in
                               ((0, 2 * H), (0, H), (H, 2 * H), (2 * H, 3 * H)))
        drz_t, dr_t, dz_t, dn_t = (dX[..., a:b].unbind(0) for a, b in
                                   ((0, 2 * H), (0, H), (H, 2 * H), (2 * H, 3 * H)))
        Rn_t = s.R.unbind(0)
        hp_t = previous_views(hs, s.h0, opts.reverse)              # h(t-1), no copy
        W_rz, W_hn = W_hh[:2 * H], W_hh[2 * H:]
        for t, nxt in walk.order:
            dh_t, passed_on = walk.enter(dh, t, nxt)               # (frozen steps, zoneout)
            z, n = z_t[t], n_t[t]
            torch.sub(hp_t[t], n, out=dz_t[t]).mul_(dh_t)          # ∇z = ∇h ⊙ (h(t-1) - n)
            dn = torch.addcmul(dh_t, dh_t, z, value=-1.0)          # ∇n = ∇h ⊙ (1 - z)
            tanh_grad(dn, n, dn_t[t])                              # ∇a_n = ∇n ⊙ (1 - n²)
            torch.mul(dn_t[t], Rn_t[t], out=dr_t[t])               # ∇r = ∇a_n ⊙ R_n
            sigmoid_grad(drz_t[t], rz_t[t], drz_t[t])              # ∇a_r,z = ∇r,z ⊙ σ(1 - σ)
            # ∇h(t-1) = ∇h ⊙ z + W_rzᵀ ∇a_rz + W_hnᵀ ∇R_n (+ ∂L/∂y(t-1) or the frozen ∇)
            direct = dh_t * z if passed_on is None else torch.addcmul(passed_on, dh_t, z)
            if drop is None:
                dh = torch.addmm(direct, drz_t[t], W_rz).addmm_(dn_t[t] * r_t[t], W_hn)
            else:                                                  # W read d ⊙ h(t-1)
                read = (drz_t[t] @ W_rz).addmm_(dn_t[t] * r_t[t], W_hn)
                dh = torch.addcmul(direct, read, drop)
        # parameter gradients: one GEMM each over all T·B rows
        d_xs, d_Wxh, d_bx = input_grads(dX, s.xs, s.W_xh, need.xs, need.W_xh, need.bias_x)
        dX[..., 2 * H:].mul_(X[..., :H])                           # now ∇R: ∇R_n = ∇a_n ⊙ r
        d_Whh = None
        if need.W_hh:                                              # Σ ∇R (d ⊙ h(t-1))ᵀ
            d_Whh = outer_previous(dX, dropped(hs, drop), dropped(s.h0, drop), opts.reverse)
        d_bhn = dX.view(-1, 3 * H)[:, 2 * H:].sum(0) if need.b_hn else None
        return grads(need, xs=d_xs, h0=dh, W_xh=d_Wxh, W_hh=d_Whh, bias_x=d_bx, b_hn=d_bhn)


def gru_kernel(cell, xs: Tensor, h0: Tensor, mask: Tensor | None, reverse: bool,
               drop: Tensor | None = None, zone=None):
    """Fused sequence for :class:`rnnlab.cells.GRUCell` with ``reset="after"``. ``drop`` (B, H):
    recurrent dropout mask; ``zone`` (z (T, B, H),): zoneout weights."""
    H = cell.hidden_size
    bias_x = b_hn = None
    if cell.b_xh is not None:
        # b_hr and b_hz add to the input projection; b_hn stays inside r ⊙ (W_hn h + b_hn)
        bias_x = cell.b_xh + torch.cat([cell.b_hh[:2 * H], cell.b_hh.new_zeros(H)])
        b_hn = cell.b_hh[2 * H:]
    return run_zoned(lambda m, z: GRUSequence.apply(
        xs, h0, cell.W_xh, cell.W_hh, bias_x, b_hn, m, reverse, drop, *(z or ())), mask, zone)




class GRUBeforeSequence(Kernel):
    """The GRU with the reset gate applied before the product (Cho et al. 2014) over a whole
    sequence, its hand-derived BPTT written out in backward."""
    name = "gru_before"
    schema = ("Tensor xs, Tensor h0, Tensor W_xh, Tensor W_hh, Tensor? bias, Tensor? mask, "
              "bool reverse, Tensor? drop=None, Tensor? zone=None")
    Saved = _Saved
    from_outputs = {"Y": 0}

    @staticmethod
    def fake(xs, h0, W_xh, W_hh, bias, mask, reverse, drop=None, zone=None):
        return _fake(xs, h0, mask)

    @staticmethod
    def reference(xs, h0, W_xh, W_hh, bias, mask, reverse, drop=None, zone=None):
        cell = GRUCell(xs.shape[2], h0.shape[1], reset="before", device="meta")
        return unrolled(cell, {"W_xh": W_xh, "W_hh": W_hh, "b_xh": bias}, xs, h0, mask,
                        reverse, drop, None if zone is None else (zone,))

    @staticmethod
    def forward(ctx, xs, h0, W_xh, W_hh, bias, mask, reverse: bool, drop=None, zone=None):
        T, B, _ = xs.shape
        H = h0.shape[1]
        X = input_projection(xs, W_xh, bias)      # (T, B, 3H): becomes r, z, n in place
        W_rzT = W_hh[:2 * H].t().contiguous()     # h (B, H) @ W_rzᵀ (H, 2H)
        W_nT = W_hh[2 * H:].t().contiguous()
        RH, Y = xs.new_empty(T, B, H), xs.new_empty(T, B, H)   # r ⊙ h(t-1), h(t)
        rz_t, r_t, z_t, n_t = (X[..., a:b].unbind(0) for a, b in
                               ((0, 2 * H), (0, H), (H, 2 * H), (2 * H, 3 * H)))
        RH_t, Y_t = RH.unbind(0), Y.unbind(0)
        states, s_t, m_t = frozen_states(Y, mask)                 # ragged lengths only
        zo_t = zone.unbind(0) if zone is not None else None
        h = h0
        for t in steps(T, reverse):
            hd = dropped(h, drop)                                  # what W reads
            rz_t[t].addmm_(hd, W_rzT).sigmoid_()                   # r, z
            rh = torch.mul(r_t[t], hd, out=RH_t[t])
            n = tanh_(n_t[t].addmm_(rh, W_nT))                     # n = tanh(X_n + W_hn (r⊙h))
            h_new = torch.lerp(n, h, z_t[t], out=Y_t[t])           # n + z ⊙ (h - n)
            if zo_t is not None:
                h = zoned(h_new, h, zo_t, t, Y_t[t])               # zoneout
            else:
                h = leave_step(h_new, h, m_t, s_t, t)              # frozen past its length
        save(ctx, _Saved(xs, h0, W_xh, W_hh, X, RH, Y, states, mask, drop, zone),
             Options(reverse))
        return Y, h.clone()

    @staticmethod
    def backward(ctx, d_ys, d_hT):
        s, opts, need = unpack(ctx)
        X, drop = s.X, s.drop
        T, B, _ = s.xs.shape
        H = s.h0.shape[1]
        W_rz, W_hn = s.W_hh[:2 * H], s.W_hh[2 * H:]
        walk = Walk.of(d_ys, s.Y, s.mask, s.zone, opts.reverse)
        dh = walk.start(d_hT, s.h0)
        ones = torch.ones_like(s.h0)
        h_prev = previous_states(states_after(s.Y, s.states), s.h0, opts.reverse)
        h_read = dropped(h_prev, drop)                             # d ⊙ h(t-1)
        dX = torch.empty_like(X)
        rz_t, r_t, z_t, n_t = (X[..., a:b].unbind(0) for a, b in
                               ((0, 2 * H), (0, H), (H, 2 * H), (2 * H, 3 * H)))
        drz_t, dr_t, dz_t, dn_t = (dX[..., a:b].unbind(0) for a, b in
                                   ((0, 2 * H), (0, H), (H, 2 * H), (2 * H, 3 * H)))
        hp_t, hr_t = h_prev.unbind(0), h_read.unbind(0)
        for t, nxt in walk.order:
            dh_t, passed_on = walk.enter(dh, t, nxt)               # (frozen steps, zoneout)
            r, z, n, hp = r_t[t], z_t[t], n_t[t], hp_t[t]
            torch.mul(dh_t, hp - n, out=dz_t[t])                   # ∇z = ∇h ⊙ (h(t-1) - n)
            dn = torch.addcmul(dh_t, dh_t, z, value=-1.0)          # ∇n = ∇h ⊙ (1 - z)
            torch.mul(dn, torch.addcmul(ones, n, n, value=-1.0), out=dn_t[t])  # ⊙ tanh'
            drh = dn_t[t] @ W_hn                                   # ∇(r⊙h) = W_hnᵀ ∇a_n
            torch.mul(drh, hr_t[t], out=dr_t[t])                   # ∇r = ∇(r⊙h) ⊙ h(t-1)
            rz = rz_t[t]
            drz_t[t].mul_(torch.addcmul(rz, rz, rz, value=-1.0))   # σ' = σ(1 - σ)
            if drop is None:
                direct = torch.addcmul(dh_t * z, drh, r)           # ∇h ⊙ z + ∇(r⊙h) ⊙ r
                if passed_on is not None:                          # + ∂L/∂y(t-1), the frozen
                    direct += passed_on                            #   steps' or zoned units' ∇
                dh = torch.addmm(direct, drz_t[t], W_rz)           # ∇h(t-1) += W_hrzᵀ ∇a_rz
            else:                                                  # the read d ⊙ h(t-1):
                read = torch.addmm(drh * r, drz_t[t], W_rz)        #   ∇(r⊙h) ⊙ r + W_hrzᵀ ∇a
                dh = torch.addcmul(dh_t * z, read, drop)
                if passed_on is not None:
                    dh += passed_on
        # parameter gradients: one GEMM each over all T·B rows
        d_xs, d_Wxh, d_b = input_grads(dX, s.xs, s.W_xh, need.xs, need.W_xh, need.bias)
        d_Whh = None
        if need.W_hh:
            dX2 = dX.view(T * B, 3 * H)
            d_Whh = torch.cat([dX2[:, :2 * H].t() @ h_read.view(T * B, H),  # ∇W_hr, ∇W_hz
                               dX2[:, 2 * H:].t() @ s.R.view(T * B, H)])   # ∇W_hn
        return grads(need, xs=d_xs, h0=dh, W_xh=d_Wxh, W_hh=d_Whh, bias=d_b)


def gru_before_kernel(cell, xs: Tensor, h0: Tensor, mask: Tensor | None, reverse: bool,
                      drop: Tensor | None = None, zone=None):
    """Fused sequence for :class:`rnnlab.cells.GRUCell` with ``reset="before"``. ``drop`` (B, H):
    recurrent dropout mask; ``zone`` (z (T, B, H),): zoneout weights."""
    bias = sum_bias(cell.b_xh, cell.b_hh)    # every recurrent bias adds to the projection
    return run_zoned(lambda m, z: GRUBeforeSequence.apply(
        xs, h0, cell.W_xh, cell.W_hh, bias, m, reverse, drop, *(z or ())), mask, zone)


