"""Fused layer-normalised LSTM and GRU (:mod:`rnnlab.cells_norm`; Ba, Kiros & Hinton 2016)
with hand-derived BPTT, layer-norm backward included.

Layer norm of a row z ∈ R^N and its backward (per row, N = 4H, 3H or H):

    ẑ = (z - μ) ρ,  ρ = 1 / sqrt(mean (z - μ)² + eps);   LN(z) = γ ⊙ ẑ + β
    ∇z = ρ (d - mean(d) - ẑ ⊙ mean(d ⊙ ẑ)),   d = γ ⊙ ∇LN
       = d' - mean(d') - ẑ ⊙ mean(d' ⊙ ẑ),    d' = ρ γ ⊙ ∇LN   (ρ is one number per row)
    ∇γ = Σ_rows ∇LN ⊙ ẑ,  ∇β = Σ_rows ∇LN

The input side, LN(U x(t)), has no recurrence: its GEMM and its normalisation run for all
T·B rows at once before the loop, and its backward once after the loop. Per step run the
recurrent projection's LN (and the LSTM's LN of c): torch's fused ``native_layer_norm`` in
the forward (one op giving LN(z), μ and ρ), the formula above in the backward.

LN-LSTM, gate order i, f, o, g inside the kernel (the LNs see all 4H rows at once, so
permuting the rows of U, W and the LN parameters changes nothing else):

    A = LN(U x(t); γ_x, b_x) + b_h                         (all t, before the loop)
    R = W h(t-1);  a = A + γ_h ⊙ R̂                        (per step; b_h rides in A)
    i, f, o = σ(a_i, a_f, a_o);  g = tanh(a_g) = 2 σ(2 a_g) - 1
    c(t) = f ⊙ c(t-1) + i ⊙ g
    k = tanh(γ_c ⊙ ĉ(t) + b_c) = 2 σ(2 (γ_c ⊙ ĉ + b_c)) - 1;  h(t) = o ⊙ k

(the g rows of A and γ_h are doubled on the way in, so one sigmoid covers all four gates).
Backward per step, with ∇h and ∇c entering from the output and from step t+1:

    ∇ℓ  = ∇h ⊙ o ⊙ (1 - k²)                  (∇ of LN(c))
    ∇c += LN backward of ∇ℓ                  (d' = ∇h ⊙ o (1 - k²) γ_c ρ_c)
    ∇a  = (∇c ⊙ g σ'(i), ∇c ⊙ c(t-1) σ'(f), ∇h ⊙ k σ'(o), ∇c ⊙ i (1 - g²))
    ∇R  = LN backward of ∇a                   (d' = ∇a ⊙ γ_h ρ_h)
    ∇h(t-1) = Wᵀ ∇R,  ∇c(t-1) = ∇c ⊙ f

LN-GRU (reset gate after the product), gate order r, z, n:

    X = LN(U x(t); γ_x, b_x)                                (all t, before the loop)
    Q = γ_h ⊙ R̂ + b_h,  R = W h(t-1)                        (per step)
    r, z = σ(X_r + Q_r), σ(X_z + Q_z);  n = tanh(X_n + r ⊙ Q_n)
    h(t) = n + z ⊙ (h(t-1) - n)

Backward per step:

    ∇X_n = ∇h ⊙ (1 - z)(1 - n²)
    ∇Q   = ∇h ⊙ ((1 - z)(1 - n²) Q_n r(1 - r),  (h(t-1) - n) z(1 - z),  (1 - z)(1 - n²) r)
    ∇X_r, ∇X_z = ∇Q_r, ∇Q_z
    ∇R   = LN backward of ∇Q                  (d' = ∇Q ⊙ γ_h ρ_h)
    ∇h(t-1) = ∇h ⊙ z + Wᵀ ∇R

Every factor that multiplies ∇h or ∇c above (σ', 1 - g², ĉ, R̂, h(t-1) - n, ... times
γ ρ) depends only on the forward values, so the backward computes them for a chunk of
steps at once (as many as fit in about 64 Ki elements per buffer: one step at a time for
large B·H, a few dozen for small ones) right before the chunk's steps, where the loop
then does about eight ops a step for the GRU and seventeen for the LSTM. The parameter
gradients of the chunk (∇a, ∇γ_h, ∇γ_c, ∇b_c) follow right after its steps; ∇U, ∇W and the
input LN's backward are single GEMMs / passes over all T·B rows after the loop.
Saved for backward: ẑ and ρ of the input side, the activated gates, the raw recurrent
projections R (T, B, G·H) with their μ, ρ, the states, and μ, ρ of c.

Ragged lengths (mask) and reverse work as in the other kernels (:mod:`._common`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..cells import LSTMState
from ._common import (
    backward_steps,
    frozen_states,
    input_projection,
    leave_step,
    previous_states,
    steps,
    sum_bias,
    tanh,
    tanh_,
    zeros_if_none,
)

__all__ = ["ln_lstm_kernel", "ln_gru_kernel", "LNLSTMSequence", "LNGRUSequence",
           "ln_backward"]

CHUNK_ELEMENTS = 1 << 16      # backward factors are computed for chunks of about this size


def ln_backward(d: Tensor, z_hat: Tensor, out: Tensor | None = None) -> Tensor:
    """∇z of a layer norm per row, from d' = ρ γ ⊙ ∇LN (n, N) and ẑ (n, N):
    d' - mean(d') - ẑ ⊙ mean(d' ⊙ ẑ) -> (n, N), into ``out``."""
    N = d.shape[-1]
    s1 = d.sum(-1, keepdim=True)                            # N mean(d')
    s2 = torch.mul(d, z_hat).sum(-1, keepdim=True)          # N mean(d' ⊙ ẑ)
    return torch.sub(d, s1, alpha=1.0 / N, out=out).addcmul_(z_hat, s2, value=-1.0 / N)


def _input_layer_norm(xs: Tensor, W_xh: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """ẑ and ρ of U x(t) for all T·B rows at once: (T·B, G), (T·B, 1)."""
    Z = input_projection(xs, W_xh, None)                    # (T, B, G)
    G = Z.shape[-1]
    z_hat, _, rho = torch.native_layer_norm(Z.view(-1, G), (G,), None, None, eps)
    return z_hat, rho


def _input_backward(ctx, dA: Tensor, xs: Tensor, W_xh: Tensor, g_xh: Tensor, z_hat: Tensor,
                    rho: Tensor, ix: int):
    """∇xs, ∇U and ∇γ_x from ∇A (T·B, G), the gradient of LN(U x; γ_x, ·); ``ix`` is the
    position of U among the Function's inputs (γ_x two after it)."""
    T, B, I = xs.shape
    need_x, need_W, need_g = (ctx.needs_input_grad[k] for k in (0, ix, ix + 2))
    d_g = (dA * z_hat).sum(0) if need_g else None
    d_xs = d_W = None
    if need_x or need_W:
        dZ = ln_backward(dA * g_xh * rho, z_hat)            # (T·B, G)
        d_xs = (dZ @ W_xh).view(T, B, I) if need_x else None
        d_W = dZ.t() @ xs.reshape(T * B, I) if need_W else None
    return d_xs, d_W, d_g


def _ifog(w: Tensor | None, H: int) -> Tensor | None:
    """torch.nn's gate rows i, f, g, o -> the kernel's i, f, o, g (as :mod:`.lstm`)."""
    if w is None:
        return None
    return torch.cat([w[:2 * H], w[3 * H:], w[2 * H:3 * H]], dim=0)


def _chunks(T: int, reverse: bool, rows: int):
    """The backward loop's steps with their successors, in chunks of consecutive steps
    (about CHUNK_ELEMENTS / rows each): [(lo, hi, [(t, nxt), ...]), ...]."""
    order = backward_steps(T, reverse)
    K = max(1, min(T, CHUNK_ELEMENTS // max(rows, 1)))
    out = []
    for k in range(0, T, K):
        part = order[k:k + K]
        ts = [t for t, _ in part]
        out.append((min(ts), max(ts) + 1, part))
    return out, K


def _enter(dh, dy_t, m, t: int, dH_t):
    """With a mask: (∇h + ∂L/∂y(t)) ⊙ m enters step t (kept in dH_t[t]) and ∇h ⊙ (1 - m)
    passes on to t-1 unchanged (the frozen rows)."""
    return (torch.add(dh, dy_t[t], out=dH_t[t]).mul_(m),
            torch.addcmul(dh, dh, m, value=-1.0))


class LNLSTMSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xs, h0, c0, W_xh, W_hh, g_xh, g_hh, bias, g_c, b_c, mask,
                reverse: bool, eps: float):
        T, B, _ = xs.shape
        H = c0.shape[1]
        two = torch.ones(4 * H, dtype=xs.dtype, device=xs.device)
        two[3 * H:] = 2.0                                              # g rows: σ(2 a_g)
        X_hat, rho_x = _input_layer_norm(xs, W_xh, eps)               # (T·B, 4H), (T·B, 1)
        G = (torch.addcmul(bias * two, X_hat, g_xh * two) if bias is not None
             else X_hat * (g_xh * two)).view(T, B, 4 * H)              # A; activated in place
        g_h2, g_c2 = g_hh * two, g_c * 2.0
        b_c2 = None if b_c is None else b_c * 2.0
        W_hhT = W_hh.t().contiguous()                                  # (H, 4H)
        R, Y, C = xs.new_empty(T, B, 4 * H), xs.new_empty(T, B, H), xs.new_empty(T, B, H)
        G_t, R_t, Y_t, C_t = G.unbind(0), R.unbind(0), Y.unbind(0), C.unbind(0)
        i_t, f_t, o_t, s_t_ = (G[..., k * H:(k + 1) * H].unbind(0) for k in range(4))
        mu_h, rho_h, mu_c, rho_c = ([None] * T for _ in range(4))
        states, s_t, m_t = frozen_states(Y, mask)
        nln, mm, mul, lerp, neg = (torch.native_layer_norm, torch.mm, torch.mul, torch.lerp,
                                   torch.neg)
        h, c = h0, c0
        for t in steps(T, reverse):
            r = mm(h, W_hhT, out=R_t[t])                               # R = W h(t-1)
            q, mu_h[t], rho_h[t] = nln(r, (4 * H,), g_h2, None, eps)
            G_t[t].add_(q).sigmoid_()                                  # i, f, o, σ(2 a_g)
            i = i_t[t]                                                 # c = f c + i (2σ - 1)
            c_new = mul(f_t[t], c, out=C_t[t]).addcmul_(i, s_t_[t], value=2.0).sub_(i)
            k, mu_c[t], rho_c[t] = nln(c_new, (H,), g_c2, b_c2, eps)   # 2 LN(c)
            o = o_t[t]
            h_new = lerp(neg(o), o, k.sigmoid_(), out=Y_t[t])          # o ⊙ tanh(LN(c))
            c = c_new if m_t is None else torch.where(m_t[t], c_new, c, out=C_t[t])
            h = leave_step(h_new, h, m_t, s_t, t)
        ctx.save_for_backward(xs, h0, c0, W_xh, W_hh, g_xh, g_hh, g_c, b_c, X_hat, rho_x, G,
                              R, torch.stack(mu_h), torch.stack(rho_h), Y, C,
                              torch.stack(mu_c), torch.stack(rho_c), states, mask)
        ctx.reverse, ctx.has_bias = reverse, bias is not None
        return Y, h.clone(), c.clone()

    @staticmethod
    def backward(ctx, d_ys, d_hT, d_cT):
        (xs, h0, c0, W_xh, W_hh, g_xh, g_hh, g_c, b_c, X_hat, rho_x, G, R, mu_h, rho_h, Y,
         C, mu_c, rho_c, states, mask) = ctx.saved_tensors
        T, B, _ = xs.shape
        H = c0.shape[1]
        H4 = 4 * H
        d_ys = zeros_if_none(d_ys, Y)
        dh = zeros_if_none(d_hT, h0)
        dc = zeros_if_none(d_cT, c0)
        c_prev = previous_states(C, c0, ctx.reverse)
        dG, dR = torch.empty_like(G), torch.empty_like(R)
        dC, dH = torch.empty_like(C), torch.empty_like(C)    # ∇c after LN(c), ∇h entering
        dy_t, dC_t, dH_t, dR_t = d_ys.unbind(0), dC.unbind(0), dH.unbind(0), dR.unbind(0)
        f_t = G[..., H:2 * H].unbind(0)
        m_t = mask.to(G.dtype).unbind(0) if mask is not None else None
        chunks, K = _chunks(T, ctx.reverse, B * H4)
        # chunk buffers: V = ∂a/∂(∇c or ∇h) per gate, Vρ = V γ_h ρ_h, R̂, ĉ, o(1 - k²) γ_c ρ_c
        V, Vr, Rh = (G.new_empty(K, B, H4) for _ in range(3))
        Ch, Oc, Lf = (G.new_empty(K, B, H) for _ in range(3))
        Vr4_t, Vro_t = Vr.view(K, B, 4, H).unbind(0), Vr[..., 2 * H:3 * H].unbind(0)
        Rh_t, Ch_t, Oc_t = Rh.unbind(0), Ch.unbind(0), Oc.unbind(0)
        D = G.new_empty(B, H4)                                # ∇a γ_h ρ_h of one step
        D4, Do = D.view(B, 4, H), D[:, 2 * H:3 * H]
        d_ghh, d_gc = G.new_zeros(H4), G.new_zeros(H)
        d_bc = G.new_zeros(H) if b_c is not None else None
        mul, add, addmm = torch.mul, torch.add, torch.addmm
        first = chunks[0][2][0][0]
        if m_t is None:
            dh = add(dh, dy_t[first], out=dH_t[first])
        for lo, hi, part in chunks:
            n = hi - lo
            Gc = G[lo:hi]
            i, f, o, s = (Gc[..., k * H:(k + 1) * H] for k in range(4))
            g = s * 2.0 - 1.0                                          # tanh(a_g)
            sd = torch.addcmul(Gc[..., :3 * H], Gc[..., :3 * H], Gc[..., :3 * H], value=-1.0)
            ch = torch.sub(C[lo:hi], mu_c[lo:hi], out=Ch[:n]).mul_(rho_c[lo:hi])
            k = tanh(torch.addcmul(b_c, ch, g_c) if b_c is not None else ch * g_c)
            v = V[:n]
            mul(g, sd[..., :H], out=v[..., :H])                        # g σ'(i)
            mul(c_prev[lo:hi], sd[..., H:2 * H], out=v[..., H:2 * H])  # c(t-1) σ'(f)
            mul(k, sd[..., 2 * H:], out=v[..., 2 * H:3 * H])           # k σ'(o)
            torch.addcmul(i, i, g * g, value=-1.0, out=v[..., 3 * H:])  # i (1 - g²)
            torch.mul(v, g_hh, out=Vr[:n]).mul_(rho_h[lo:hi])
            lf = torch.addcmul(o, o, k * k, value=-1.0, out=Lf[:n])   # o (1 - k²)
            torch.mul(lf, g_c, out=Oc[:n]).mul_(rho_c[lo:hi])
            torch.sub(R[lo:hi], mu_h[lo:hi], out=Rh[:n]).mul_(rho_h[lo:hi])
            for t, nxt in part:
                j = t - lo
                if m_t is None:
                    dh_t, dc_t, carry = dh, dc, None
                    passed_on = None if nxt is None else dy_t[nxt]
                else:
                    m = m_t[t]
                    dh_t, passed_on = _enter(dh, dy_t, m, t, dH_t)
                    dc_t, carry = dc * m, torch.addcmul(dc, dc, m, value=-1.0)
                # ∇c += LN(c) backward
                dct = ln_backward(mul(dh_t, Oc_t[j]), Ch_t[j], out=dC_t[t]).add_(dc_t)
                # ∇a γ_h ρ_h = (∇c, ∇c, ∇h, ∇c) ⊙ V γ_h ρ_h
                mul(dct.unsqueeze(1), Vr4_t[j], out=D4)
                mul(dh_t, Vro_t[j], out=Do)
                dr = ln_backward(D, Rh_t[j], out=dR_t[t])              # ∇R
                out = dH_t[nxt] if m_t is None and nxt is not None else None
                dh = (torch.mm(dr, W_hh, out=out) if passed_on is None
                      else addmm(passed_on, dr, W_hh, out=out))        # ∇h(t-1) = Wᵀ ∇R
                dc = dct * f_t[t] if carry is None else carry.addcmul_(dct, f_t[t])
            # the chunk's ∇a = (∇c, ∇c, ∇h, ∇c) ⊙ V, and its share of ∇γ_h, ∇γ_c, ∇b_c
            dGc = dG[lo:hi]
            mul(dC[lo:hi].unsqueeze(2), v.view(n, B, 4, H), out=dGc.view(n, B, 4, H))
            mul(dH[lo:hi], v[..., 2 * H:3 * H], out=dGc[..., 2 * H:3 * H])
            d_ghh += (dGc * Rh[:n]).sum((0, 1))
            dl = dH[lo:hi] * lf                                        # ∇ℓ = ∇h ⊙ o (1 - k²)
            d_gc += (dl * ch).sum((0, 1))
            if d_bc is not None:
                d_bc += dl.sum((0, 1))
        need = ctx.needs_input_grad
        dG2 = dG.view(T * B, H4)
        d_xs, d_Wxh, d_gxh = _input_backward(ctx, dG2, xs, W_xh, g_xh, X_hat, rho_x, 3)
        d_Whh = None
        if need[4]:
            h_prev = previous_states(Y if states is None else states, h0, ctx.reverse)
            d_Whh = dR.view(T * B, H4).t() @ h_prev.view(T * B, H)
        d_b = dG2.sum(0) if ctx.has_bias and need[7] else None
        return (d_xs, dh, dc, d_Wxh, d_Whh, d_gxh, d_ghh if need[6] else None, d_b,
                d_gc if need[8] else None, d_bc if need[9] else None, None, None, None)


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
        nln, split = torch.native_layer_norm, (2 * H, H)
        h = h0
        for t in steps(T, reverse):
            r = torch.mm(h, W_hhT, out=R_t[t])                         # R = W h(t-1)
            q, mu_h[t], rho_h[t] = nln(r, (3 * H,), g_hh, b_hh, eps)
            q_rz, q_n = q.split(split, 1)                              # Q = γ_h ⊙ R̂ + b_h
            rz_t[t].add_(q_rz).sigmoid_()                              # r, z
            n = tanh_(n_t[t].addcmul_(r_t[t], q_n))                    # n = tanh(X_n + r ⊙ Q_n)
            h_new = torch.lerp(n, h, z_t[t], out=Y_t[t])               # n + z ⊙ (h - n)
            h = leave_step(h_new, h, m_t, s_t, t)
        ctx.save_for_backward(xs, h0, W_xh, W_hh, g_xh, g_hh, b_hh, X_hat, rho_x, X, R,
                              torch.stack(mu_h), torch.stack(rho_h), Y, states, mask)
        ctx.reverse, ctx.has_bias = reverse, b_xh is not None
        return Y, h.clone()

    @staticmethod
    def backward(ctx, d_ys, d_hT):
        (xs, h0, W_xh, W_hh, g_xh, g_hh, b_hh, X_hat, rho_x, X, R, mu_h, rho_h, Y, states,
         mask) = ctx.saved_tensors
        T, B, _ = xs.shape
        H = h0.shape[1]
        H3 = 3 * H
        d_ys = zeros_if_none(d_ys, Y)
        dh = zeros_if_none(d_hT, h0)
        h_prev = previous_states(Y if states is None else states, h0, ctx.reverse)
        dX, dR, dH = torch.empty_like(X), torch.empty_like(R), torch.empty_like(Y)
        dy_t, dH_t, dR_t, z_t = (d_ys.unbind(0), dH.unbind(0), dR.unbind(0),
                                 X[..., H:2 * H].unbind(0))
        m_t = mask.to(X.dtype).unbind(0) if mask is not None else None
        chunks, K = _chunks(T, ctx.reverse, B * H3)
        # chunk buffers: V = ∂(X_r, X_z, X_n)/∂(∇h), Vρ = ∂Q/∂(∇h) γ_h ρ_h, R̂
        V, Vr, Rh = (X.new_empty(K, B, H3) for _ in range(3))
        Vr3_t, Rh_t = Vr.view(K, B, 3, H).unbind(0), Rh.unbind(0)
        D = X.new_empty(B, H3)
        D3 = D.view(B, 3, H)
        d_ghh = X.new_zeros(H3)
        d_bhh = X.new_zeros(H3) if b_hh is not None else None
        mul, addmm, addcmul = torch.mul, torch.addmm, torch.addcmul
        first = chunks[0][2][0][0]
        if m_t is None:
            dh = torch.add(dh, dy_t[first], out=dH_t[first])
        for lo, hi, part in chunks:
            n_ = hi - lo
            Xc = X[lo:hi]
            r, z, n = Xc[..., :H], Xc[..., H:2 * H], Xc[..., 2 * H:]
            rh = torch.sub(R[lo:hi], mu_h[lo:hi], out=Rh[:n_]).mul_(rho_h[lo:hi])
            qn = rh[..., 2 * H:] * g_hh[2 * H:]                       # Q_n
            if b_hh is not None:
                qn += b_hh[2 * H:]
            v = V[:n_]
            vn = mul(1.0 - z, addcmul(torch.ones_like(n), n, n, value=-1.0),
                     out=v[..., 2 * H:])                               # (1 - z)(1 - n²)
            mul(vn * qn, addcmul(r, r, r, value=-1.0), out=v[..., :H])  # ... Q_n r(1 - r)
            mul(h_prev[lo:hi] - n, addcmul(z, z, z, value=-1.0),
                out=v[..., H:2 * H])                                   # (h(t-1) - n) z(1 - z)
            vr = Vr[:n_]
            mul(v[..., :2 * H], g_hh[:2 * H], out=vr[..., :2 * H])
            mul(vn * r, g_hh[2 * H:], out=vr[..., 2 * H:])             # (1 - z)(1 - n²) r γ
            vr.mul_(rho_h[lo:hi])
            for t, nxt in part:
                j = t - lo
                if m_t is None:
                    dh_t, passed_on = dh, (None if nxt is None else dy_t[nxt])
                else:
                    dh_t, passed_on = _enter(dh, dy_t, m_t[t], t, dH_t)
                mul(dh_t.unsqueeze(1), Vr3_t[j], out=D3)               # ∇Q γ_h ρ_h
                dr = ln_backward(D, Rh_t[j], out=dR_t[t])              # ∇R
                direct = dh_t * z_t[t] if passed_on is None else addcmul(passed_on, dh_t, z_t[t])
                out = dH_t[nxt] if m_t is None and nxt is not None else None
                dh = addmm(direct, dr, W_hh, out=out)                  # ∇h(t-1)
            # the chunk's ∇X and its share of ∇γ_h, ∇b_h (∇Q = ∇X except ∇Q_n = ∇X_n ⊙ r)
            dXc = dX[lo:hi]
            mul(dH[lo:hi].unsqueeze(2), v.view(n_, B, 3, H), out=dXc.view(n_, B, 3, H))
            dqn = dXc[..., 2 * H:] * r
            d_ghh[:2 * H] += (dXc[..., :2 * H] * rh[..., :2 * H]).sum((0, 1))
            d_ghh[2 * H:] += (dqn * rh[..., 2 * H:]).sum((0, 1))
            if d_bhh is not None:
                d_bhh[:2 * H] += dXc[..., :2 * H].sum((0, 1))
                d_bhh[2 * H:] += dqn.sum((0, 1))
        need = ctx.needs_input_grad
        dX2 = dX.view(T * B, H3)
        d_xs, d_Wxh, d_gxh = _input_backward(ctx, dX2, xs, W_xh, g_xh, X_hat, rho_x, 2)
        d_Whh = dR.view(T * B, H3).t() @ h_prev.view(T * B, H) if need[3] else None
        d_bxh = dX2.sum(0) if ctx.has_bias and need[6] else None
        return (d_xs, dh, d_Wxh, d_Whh, d_gxh, d_ghh if need[5] else None, d_bxh,
                d_bhh if need[7] else None, None, None, None)


def ln_gru_kernel(cell, xs: Tensor, h0: Tensor, mask: Tensor | None, reverse: bool):
    """Fused sequence for :class:`rnnlab.LayerNormGRUCell`: (T, B, I) -> ((T, B, H), h)."""
    return LNGRUSequence.apply(xs, h0, cell.W_xh, cell.W_hh, cell.g_xh, cell.g_hh, cell.b_xh,
                               cell.b_hh, mask, reverse, cell.eps)
