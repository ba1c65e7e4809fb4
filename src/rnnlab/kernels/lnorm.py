"""Fused layer-normalised LSTM and GRU (:mod:`rnnlab.cells_norm`; Ba, Kiros & Hinton 2016)
with hand-derived BPTT, layer-norm backward included.

Layer norm of a row z ∈ R^N and its backward (per row, N = 4H, 3H or H):

    ẑ = (z - μ) ρ,  ρ = 1 / sqrt(mean (z - μ)² + eps);   LN(z) = γ ⊙ ẑ + β
    ∇ẑ = γ ⊙ ∇LN
    ∇z = ρ (∇ẑ - mean(∇ẑ) - ẑ ⊙ mean(∇ẑ ⊙ ẑ))
    ∇γ = Σ_rows ∇LN ⊙ ẑ,  ∇β = Σ_rows ∇LN                                   (after the loop)

The input side, LN(W_xh x(t)), has no recurrence: its GEMM and its normalisation run for all
T·B rows at once before the loop, and its backward once after the loop. Only the recurrent
projection's LN (and the LSTM's LN of c) run per step; the forward takes torch's fused
``native_layer_norm`` for them (one op giving LN(z), μ and ρ), the backward is the formula
above. Saved for backward: ẑ of the input side, the raw recurrent projections R (T, B, G·H)
with their μ, ρ, the activated gates, the states; ẑ of R and of c, and tanh(LN(c)), are
recomputed for all steps at once (two or three whole-tensor ops) at the start of backward.

LN-LSTM, gate order i, f, o, g inside the kernel (the LNs see all 4H rows, so permuting the
rows of W_xh, W_hh and the LN parameters changes nothing else):

    A = LN(U x(t); γ_x, b_x) + b_h                         (all t, before the loop)
    R = W h(t-1);  G = A + γ_h ⊙ R̂                        (per step; b_h rides in A)
    i, f, o = σ(G_i, G_f, G_o);  g = tanh(G_g)
    c(t) = f ⊙ c(t-1) + i ⊙ g
    k = tanh(γ_c ⊙ ĉ(t) + b_c);  h(t) = o ⊙ k

Backward per step, with ∇h and ∇c arriving from the output and from step t+1:

    ∇o  = ∇h ⊙ k
    ∇ℓ  = ∇h ⊙ o ⊙ (1 - k²)                     (∇ of LN(c)), stored for ∇γ_c, ∇b_c
    ∇c += ρ_c (γ_c ∇ℓ - mean(γ_c ∇ℓ) - ĉ mean(γ_c ∇ℓ ⊙ ĉ))
    ∇i = ∇c ⊙ g,  ∇f = ∇c ⊙ c(t-1),  ∇g = ∇c ⊙ i,  ∇c(t-1) = ∇c ⊙ f
    ∇G = (∇i, ∇f, ∇o) ⊙ σ(1 - σ),  ∇g ⊙ (1 - g²)
    ∇R = ρ_h (γ_h ∇G - mean(γ_h ∇G) - R̂ mean(γ_h ∇G ⊙ R̂))
    ∇h(t-1) = Wᵀ ∇R
    ∇W = Σ_t ∇R h(t-1)ᵀ;  ∇γ_h = Σ ∇G ⊙ R̂;  ∇b = Σ ∇G;  then the input LN's backward
    with ∇A = ∇G, and ∇U = Σ_t ∇(U x) x(t)ᵀ                               (after the loop)

LN-GRU (reset gate after the product), gate order r, z, n:

    X = LN(U x(t); γ_x, b_x)                                (all t, before the loop)
    Q = γ_h ⊙ R̂ + b_h,  R = W h(t-1)                        (per step)
    r, z = σ(X_r + Q_r), σ(X_z + Q_z);  n = tanh(X_n + r ⊙ Q_n)
    h(t) = n + z ⊙ (h(t-1) - n)

Backward per step:

    ∇z = ∇h ⊙ (h(t-1) - n);  ∇X_n = ∇h ⊙ (1 - z) ⊙ (1 - n²);  ∇r = ∇X_n ⊙ Q_n
    ∇Q = (∇r ⊙ r(1 - r), ∇z ⊙ z(1 - z), ∇X_n ⊙ r);  ∇X_rz = ∇Q_rz
    ∇R = ρ_h (γ_h ∇Q - mean(γ_h ∇Q) - R̂ mean(γ_h ∇Q ⊙ R̂))
    ∇h(t-1) = ∇h ⊙ z + Wᵀ ∇R

Ragged lengths (mask) and reverse work as in the other kernels (:mod:`._common`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..cells import LSTMState
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

__all__ = ["ln_lstm_kernel", "ln_gru_kernel", "LNLSTMSequence", "LNGRUSequence",
           "ln_backward"]


def ln_backward(d_hat: Tensor, z_hat: Tensor, rho: Tensor, out: Tensor | None = None) -> Tensor:
    """∇z of a layer norm, per row: ρ (∇ẑ - mean(∇ẑ) - ẑ ⊙ mean(∇ẑ ⊙ ẑ)).

    ``d_hat`` = γ ⊙ ∇LN(z) (n, N), ``z_hat`` (n, N), ``rho`` (n, 1) -> (n, N), into ``out``.
    """
    N = d_hat.shape[-1]
    s1 = d_hat.sum(-1, keepdim=True)                       # N mean(∇ẑ)
    s2 = torch.mul(d_hat, z_hat).sum(-1, keepdim=True)     # N mean(∇ẑ ⊙ ẑ)
    dz = torch.sub(d_hat, s1, alpha=1.0 / N, out=out)
    return dz.addcmul_(z_hat, s2, value=-1.0 / N).mul_(rho)


def _input_layer_norm(xs: Tensor, W_xh: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """ẑ and ρ of U x(t) for all T·B rows at once: (T·B, G), (T·B, 1)."""
    Z = input_projection(xs, W_xh, None)                   # (T, B, G)
    G = Z.shape[-1]
    z_hat, _, rho = torch.native_layer_norm(Z.view(-1, G), (G,), None, None, eps)
    return z_hat, rho


def _input_layer_norm_backward(ctx, dA2: Tensor, xs: Tensor, W_xh: Tensor, g_xh: Tensor,
                               z_hat: Tensor, rho: Tensor, ix: int):
    """∇xs, ∇U and ∇γ_x from ∇A (T·B, G), the gradient of LN(U x; γ_x, ·)."""
    T, B, I = xs.shape
    need_x, need_W, need_g = (ctx.needs_input_grad[k] for k in (0, ix, ix + 2))
    d_g = (dA2 * z_hat).sum(0) if need_g else None
    d_xs = d_W = None
    if need_x or need_W:
        dZ = ln_backward(dA2 * g_xh, z_hat, rho)           # (T·B, G)
        d_xs = (dZ @ W_xh).view(T, B, I) if need_x else None
        d_W = dZ.t() @ xs.reshape(T * B, I) if need_W else None
    return d_xs, d_W, d_g


def _ifog(w: Tensor | None, H: int) -> Tensor | None:
    """torch.nn's gate rows i, f, g, o -> the kernel's i, f, o, g (as :mod:`.lstm`)."""
    if w is None:
        return None
    return torch.cat([w[:2 * H], w[3 * H:], w[2 * H:3 * H]], dim=0)


def _stack(parts: list[Tensor]) -> Tensor:
    return torch.stack(parts)                               # T × (B, 1) -> (T, B, 1)


class LNLSTMSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xs, h0, c0, W_xh, W_hh, g_xh, g_hh, bias, g_c, b_c, mask,
                reverse: bool, eps: float):
        T, B, _ = xs.shape
        H = c0.shape[1]
        X_hat, rho_x = _input_layer_norm(xs, W_xh, eps)               # (T·B, 4H), (T·B, 1)
        G = (torch.addcmul(bias, X_hat, g_xh) if bias is not None
             else X_hat * g_xh).view(T, B, 4 * H)                      # A; activated in place
        W_hhT = W_hh.t().contiguous()                                  # (H, 4H)
        R, Y, C = xs.new_empty(T, B, 4 * H), xs.new_empty(T, B, H), xs.new_empty(T, B, H)
        G_t, sig_t, g_t = G.unbind(0), G[..., :3 * H].unbind(0), G[..., 3 * H:].unbind(0)
        i_t, f_t, o_t = (G[..., k * H:(k + 1) * H].unbind(0) for k in range(3))
        R_t, Y_t, C_t = R.unbind(0), Y.unbind(0), C.unbind(0)
        mu_h, rho_h, mu_c, rho_c = ([None] * T for _ in range(4))
        states, s_t, m_t = frozen_states(Y, mask)
        h, c = h0, c0
        for t in steps(T, reverse):
            r = torch.mm(h, W_hhT, out=R_t[t])                         # R = W h(t-1)
            q, mu_h[t], rho_h[t] = torch.native_layer_norm(r, (4 * H,), g_hh, None, eps)
            G_t[t].add_(q)                                             # G = A + γ_h ⊙ R̂
            sig_t[t].sigmoid_()                                        # i, f, o
            tanh_(g_t[t])                                              # g
            c_new = torch.mul(f_t[t], c, out=C_t[t]).addcmul_(i_t[t], g_t[t])
            k, mu_c[t], rho_c[t] = torch.native_layer_norm(c_new, (H,), g_c, b_c, eps)
            h_new = torch.mul(o_t[t], tanh_(k), out=Y_t[t])            # h = o ⊙ tanh(LN(c))
            c = c_new if m_t is None else torch.where(m_t[t], c_new, c, out=C_t[t])
            h = leave_step(h_new, h, m_t, s_t, t)
        ctx.save_for_backward(xs, h0, c0, W_xh, W_hh, g_xh, g_hh, g_c, b_c, X_hat, rho_x, G,
                              R, _stack(mu_h), _stack(rho_h), Y, C, _stack(mu_c),
                              _stack(rho_c), states, mask)
        ctx.reverse, ctx.has_bias = reverse, bias is not None
        return Y, h.clone(), c.clone()

    @staticmethod
    def backward(ctx, d_ys, d_hT, d_cT):
        (xs, h0, c0, W_xh, W_hh, g_xh, g_hh, g_c, b_c, X_hat, rho_x, G, R, mu_h, rho_h, Y,
         C, mu_c, rho_c, states, mask) = ctx.saved_tensors
        T, B, _ = xs.shape
        H = c0.shape[1]
        d_ys = zeros_if_none(d_ys, Y)
        dh = zeros_if_none(d_hT, h0).clone()
        dc = zeros_if_none(d_cT, c0).clone()
        ones = torch.ones_like(c0)
        # recomputed for all steps at once: R̂, ĉ and k = tanh(γ_c ĉ + b_c)
        R_hat = (R - mu_h).mul_(rho_h)                                 # (T, B, 4H)
        C_hat = (C - mu_c).mul_(rho_c)     # (T, B, H); rows frozen past a length get ∇ = 0
        K = tanh_(torch.addcmul(b_c, C_hat, g_c) if b_c is not None else C_hat * g_c)
        c_prev = previous_states(C, c0, ctx.reverse)
        dG, dR, dL = torch.empty_like(G), torch.empty_like(R), torch.empty_like(C)
        dG_t, dsig_t, dR_t, dL_t = (dG.unbind(0), dG[..., :3 * H].unbind(0), dR.unbind(0),
                                    dL.unbind(0))
        di_t, df_t, do_t, dg_t = (dG[..., k * H:(k + 1) * H].unbind(0) for k in range(4))
        sig_t, g_t = G[..., :3 * H].unbind(0), G[..., 3 * H:].unbind(0)
        i_t, f_t, o_t = (G[..., k * H:(k + 1) * H].unbind(0) for k in range(3))
        dy_t, cp_t, K_t, Ch_t, Rh_t = (d_ys.unbind(0), c_prev.unbind(0), K.unbind(0),
                                       C_hat.unbind(0), R_hat.unbind(0))
        rc_t, rh_t = rho_c.unbind(0), rho_h.unbind(0)
        m_t = mask.to(G.dtype).unbind(0) if mask is not None else None
        order = backward_steps(T, ctx.reverse)
        if m_t is None:
            dh = dh + dy_t[order[0][0]]
        for t, nxt in order:
            dh_t, passed_on = enter_step(dh, dy_t, m_t, t, nxt)
            dc_t, carry_c = enter_step(dc, None, m_t, t, nxt)
            k = K_t[t]
            torch.mul(dh_t, k, out=do_t[t])                            # ∇o = ∇h ⊙ k
            dl = torch.mul(dh_t, o_t[t], out=dL_t[t])                  # ∇ℓ = ∇h ⊙ o ⊙ (1 - k²)
            dl.mul_(torch.addcmul(ones, k, k, value=-1.0))
            dc_t = ln_backward(dl * g_c, Ch_t[t], rc_t[t]).add_(dc_t)  # ∇c += LN backward
            torch.mul(dc_t, g_t[t], out=di_t[t])                       # ∇i = ∇c ⊙ g
            torch.mul(dc_t, cp_t[t], out=df_t[t])                      # ∇f = ∇c ⊙ c(t-1)
            torch.mul(dc_t, i_t[t], out=dg_t[t])                       # ∇g = ∇c ⊙ i
            dc = dc_t.mul_(f_t[t])                                     # ∇c(t-1) = ∇c ⊙ f
            s = sig_t[t]
            dsig_t[t].mul_(torch.addcmul(s, s, s, value=-1.0))         # σ' = σ(1 - σ)
            dg_t[t].mul_(torch.addcmul(ones, g_t[t], g_t[t], value=-1.0))  # tanh' = 1 - g²
            dr = ln_backward(dG_t[t] * g_hh, Rh_t[t], rh_t[t], out=dR_t[t])  # ∇R
            dh = dr @ W_hh if passed_on is None else torch.addmm(passed_on, dr, W_hh)
            if carry_c is not None:
                dc = dc + carry_c
        dG2, dR2, dL2 = dG.view(T * B, 4 * H), dR.view(T * B, 4 * H), dL.view(T * B, H)
        need = ctx.needs_input_grad
        d_xs, d_Wxh, d_gxh = _input_layer_norm_backward(ctx, dG2, xs, W_xh, g_xh, X_hat,
                                                        rho_x, 3)
        d_Whh = None
        if need[4]:
            h_prev = previous_states(Y if states is None else states, h0, ctx.reverse)
            d_Whh = dR2.t() @ h_prev.view(T * B, H)
        d_ghh = (dG2 * R_hat.view(T * B, 4 * H)).sum(0) if need[6] else None
        d_b = dG2.sum(0) if ctx.has_bias and need[7] else None
        d_gc = (dL2 * C_hat.view(T * B, H)).sum(0) if need[8] else None
        d_bc = dL2.sum(0) if b_c is not None and need[9] else None
        return (d_xs, dh, dc, d_Wxh, d_Whh, d_gxh, d_ghh, d_b, d_gc, d_bc,
                None, None, None)


def ln_lstm_kernel(cell, xs: Tensor, state: LSTMState, mask: Tensor | None, reverse: bool):
    """Fused sequence for :class:`rnnlab.LayerNormLSTMCell`:
    (T, B, I) -> ((T, B, H), LSTMState(h (B, H), c (B, H)))."""
    H = cell.hidden_size
    ys, h, c = LNLSTMSequence.apply(
        xs, state[0], state[1], _ifog(cell.W_xh, H), _ifog(cell.W_hh, H), _ifog(cell.g_xh, H),
        _ifog(cell.g_hh, H), _ifog(sum_bias(cell.b_xh, cell.b_hh), H), cell.g_c, cell.b_c,
        mask, reverse, cell.eps)
    return ys, LSTMState(h, c)


class LNGRUSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xs, h0, W_xh, W_hh, g_xh, g_hh, b_xh, b_hh, mask, reverse: bool,
                eps: float):
        T, B, _ = xs.shape
        H = h0.shape[1]
        X_hat, rho_x = _input_layer_norm(xs, W_xh, eps)               # (T·B, 3H), (T·B, 1)
        X = (torch.addcmul(b_xh, X_hat, g_xh) if b_xh is not None
             else X_hat * g_xh).view(T, B, 3 * H)                      # becomes r, z, n
        W_hhT = W_hh.t().contiguous()                                  # (H, 3H)
        R, Y = xs.new_empty(T, B, 3 * H), xs.new_empty(T, B, H)
        rz_t, r_t, z_t, n_t = (X[..., a:b].unbind(0) for a, b in
                               ((0, 2 * H), (0, H), (H, 2 * H), (2 * H, 3 * H)))
        R_t, Y_t = R.unbind(0), Y.unbind(0)
        mu_h, rho_h = [None] * T, [None] * T
        states, s_t, m_t = frozen_states(Y, mask)
        h = h0
        for t in steps(T, reverse):
            r = torch.mm(h, W_hhT, out=R_t[t])                         # R = W h(t-1)
            q, mu_h[t], rho_h[t] = torch.native_layer_norm(r, (3 * H,), g_hh, b_hh, eps)
            q_rz, q_n = q.split((2 * H, H), 1)                         # Q = γ_h ⊙ R̂ + b_h
            rz_t[t].add_(q_rz).sigmoid_()                              # r, z
            n = tanh_(n_t[t].addcmul_(r_t[t], q_n))                    # n = tanh(X_n + r ⊙ Q_n)
            h_new = torch.lerp(n, h, z_t[t], out=Y_t[t])               # n + z ⊙ (h - n)
            h = leave_step(h_new, h, m_t, s_t, t)
        ctx.save_for_backward(xs, h0, W_xh, W_hh, g_xh, g_hh, b_hh, X_hat, rho_x, X, R,
                              _stack(mu_h), _stack(rho_h), Y, states, mask)
        ctx.reverse, ctx.has_bias = reverse, b_xh is not None
        return Y, h.clone()

    @staticmethod
    def backward(ctx, d_ys, d_hT):
        (xs, h0, W_xh, W_hh, g_xh, g_hh, b_hh, X_hat, rho_x, X, R, mu_h, rho_h, Y, states,
         mask) = ctx.saved_tensors
        T, B, _ = xs.shape
        H = h0.shape[1]
        d_ys = zeros_if_none(d_ys, Y)
        dh = zeros_if_none(d_hT, h0).clone()
        ones = torch.ones_like(h0)
        R_hat = (R - mu_h).mul_(rho_h)                                 # (T, B, 3H)
        Qn = R_hat[..., 2 * H:] * g_hh[2 * H:]                         # Q_n (T, B, H)
        if b_hh is not None:
            Qn += b_hh[2 * H:]
        h_prev = previous_states(Y if states is None else states, h0, ctx.reverse)
        dX, dQ, dR = torch.empty_like(X), torch.empty_like(X), torch.empty_like(R)
        rz_t, r_t, z_t, n_t = (X[..., a:b].unbind(0) for a, b in
                               ((0, 2 * H), (0, H), (H, 2 * H), (2 * H, 3 * H)))
        dXn_t, dQ_t, dR_t = dX[..., 2 * H:].unbind(0), dQ.unbind(0), dR.unbind(0)
        dQrz_t, dQr_t, dQz_t, dQn_t = (dQ[..., a:b].unbind(0) for a, b in
                                       ((0, 2 * H), (0, H), (H, 2 * H), (2 * H, 3 * H)))
        dy_t, hp_t, Qn_t, Rh_t, rh_t = (d_ys.unbind(0), h_prev.unbind(0), Qn.unbind(0),
                                        R_hat.unbind(0), rho_h.unbind(0))
        m_t = mask.to(X.dtype).unbind(0) if mask is not None else None
        order = backward_steps(T, ctx.reverse)
        if m_t is None:
            dh = dh + dy_t[order[0][0]]
        for t, nxt in order:
            dh_t, passed_on = enter_step(dh, dy_t, m_t, t, nxt)
            z, n = z_t[t], n_t[t]
            torch.mul(dh_t, hp_t[t] - n, out=dQz_t[t])                 # ∇z = ∇h ⊙ (h(t-1) - n)
            dn = torch.addcmul(dh_t, dh_t, z, value=-1.0)              # ∇n = ∇h ⊙ (1 - z)
            torch.mul(dn, torch.addcmul(ones, n, n, value=-1.0), out=dXn_t[t])  # ⊙ tanh'
            torch.mul(dXn_t[t], Qn_t[t], out=dQr_t[t])                 # ∇r = ∇X_n ⊙ Q_n
            rz = rz_t[t]
            dQrz_t[t].mul_(torch.addcmul(rz, rz, rz, value=-1.0))      # σ' = σ(1 - σ)
            torch.mul(dXn_t[t], r_t[t], out=dQn_t[t])                  # ∇Q_n = ∇X_n ⊙ r
            dr = ln_backward(dQ_t[t] * g_hh, Rh_t[t], rh_t[t], out=dR_t[t])  # ∇R
            direct = dh_t * z if passed_on is None else torch.addcmul(passed_on, dh_t, z)
            dh = torch.addmm(direct, dr, W_hh)                         # ∇h(t-1)
        dX[..., :2 * H] = dQ[..., :2 * H]                              # r, z: same in X and Q
        dX2, dQ2, dR2 = dX.view(T * B, 3 * H), dQ.view(T * B, 3 * H), dR.view(T * B, 3 * H)
        need = ctx.needs_input_grad
        d_xs, d_Wxh, d_gxh = _input_layer_norm_backward(ctx, dX2, xs, W_xh, g_xh, X_hat,
                                                        rho_x, 2)
        d_Whh = dR2.t() @ h_prev.view(T * B, H) if need[3] else None
        d_ghh = (dQ2 * R_hat.view(T * B, 3 * H)).sum(0) if need[5] else None
        d_bxh = dX2.sum(0) if ctx.has_bias and need[6] else None
        d_bhh = dQ2.sum(0) if ctx.has_bias and need[7] else None
        return d_xs, dh, d_Wxh, d_Whh, d_gxh, d_ghh, d_bxh, d_bhh, None, None, None


def ln_gru_kernel(cell, xs: Tensor, h0: Tensor, mask: Tensor | None, reverse: bool):
    """Fused sequence for :class:`rnnlab.LayerNormGRUCell`: (T, B, I) -> ((T, B, H), h)."""
    return LNGRUSequence.apply(xs, h0, cell.W_xh, cell.W_hh, cell.g_xh, cell.g_hh, cell.b_xh,
                               cell.b_hh, mask, reverse, cell.eps)
