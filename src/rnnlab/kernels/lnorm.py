"""Fused layer-normalised LSTM and GRU (:mod:`rnnlab.cells.norm`; Ba, Kiros & Hinton 2016)
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

Recurrent dropout (Gal & Ghahramani 2016): one mask d (B, H) per sequence multiplies h(t-1)
where W reads it, R = W (d ⊙ h(t-1)), so the recurrent LN normalises the projection of the
dropped state; its backward is unchanged (R̂, ρ_h are those of that projection) up to
∇h(t-1) = d ⊙ Wᵀ ∇R and ∇W = Σ_t ∇R(t) (d ⊙ h(t-1))ᵀ. The other uses of h(t-1) (the GRU's
z ⊙ h(t-1)) read the undropped state. Zoneout (Krueger et al. 2017): the step computes
c̃(t), h̃(t) as above from the zoned c(t-1), h(t-1) and keeps each unit's previous value
where its mask is 1, h(t) = z_h ⊙ h(t-1) + (1 - z_h) ⊙ h̃(t) (and c likewise), y(t) = h(t).
The LSTM keeps c̃(t) in an extra buffer (its LN statistics and ĉ are those of c̃); in the
backward (∇h + ∂L/∂y(t)) ⊙ (1 - z) enters the step and the rest passes straight to t-1.
With zoneout, ragged lengths become z = 1 past a length (``fold_lengths``) and the
wrapper zeroes the outputs there.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..cells import LayerNormGRUCell, LayerNormLSTMCell
from ..cells.base import LSTMState
from ._common import (
    Kernel,
    Options,
    Walk,
    backward_steps,
    dropped,
    frozen_states,
    grads,
    ifog,
    input_projection,
    leave_step,
    previous_chunk,
    recurrent_grad,
    run_zoned,
    save,
    states_after,
    steps,
    sum_bias,
    tanh,
    tanh_,
    unpack,
    unrolled,
    zeros_if_none,
    zoned,
)

__all__ = ["ln_lstm_kernel", "ln_gru_kernel", "LNLSTMSequence", "LNGRUSequence",
           "ln_backward"]

CHUNK_ELEMENTS = 1 << 16      # backward factors are computed for chunks of about this size


def ln_backward(d: Tensor, z_hat: Tensor, out: Tensor | None = None,
                tmp: Tensor | None = None) -> Tensor:
    """∇z of a layer norm per row, from d' = ρ γ ⊙ ∇LN (..., N) and ẑ (..., N):
    d' - mean(d') - ẑ ⊙ mean(d' ⊙ ẑ), into ``out`` (``tmp``: scratch of d's shape)."""
    N = d.shape[-1]
    s1 = d.sum(-1, keepdim=True)                            # N mean(d')
    s2 = torch.mul(d, z_hat, out=tmp).sum(-1, keepdim=True)  # N mean(d' ⊙ ẑ)
    return torch.sub(d, s1, alpha=1.0 / N, out=out).addcmul_(z_hat, s2, value=-1.0 / N)


def _input_layer_norm(xs: Tensor, W_xh: Tensor, gain: Tensor, shift: Tensor | None,
                      eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """LN(U x(t); γ, β) for all T·B rows at once: Z = U x (T, B, G) (saved for backward),
    the LN (T, B, G), and μ, ρ (T, B, 1)."""
    Z = input_projection(xs, W_xh, None)                    # (T, B, G)
    T, B, G = Z.shape
    A, mu, rho = torch.native_layer_norm(Z, (G,), gain, shift, eps)
    return Z, A, mu, rho


class _InputGrads:
    """The input side's gradients, accumulated chunk by chunk: from ∇A of steps lo..hi-1
    (∇ of LN(U x; γ_x, β_x)), ∇β_x, ∇γ_x, then ∇(U x) by the LN backward, ∇x(t) and ∇U
    (GEMMs over the chunk's rows)."""

    def __init__(self, xs, W_xh, g_xh, Z, mu, rho, need_xs: bool, need_W: bool,
                 need_shift: bool):
        self.xs, self.W_xh, self.g_xh, self.Z, self.mu, self.rho = xs, W_xh, g_xh, Z, mu, rho
        T, B, I = xs.shape
        G = W_xh.shape[0]
        self.d_xs = xs.new_empty(T, B, I) if need_xs else None
        self.d_W = W_xh.new_zeros(G, I) if need_W else None
        self.d_g = g_xh.new_zeros(G)
        self.d_b = g_xh.new_zeros(G) if need_shift else None

    def add(self, dA: Tensor, lo: int, hi: int, scratch: tuple[Tensor, Tensor]) -> None:
        """dA (n, B, G) for steps lo..hi-1, overwritten with ∇(U x); ``scratch``: two
        buffers of at least dA's size (no large temporaries: each would be fresh pages)."""
        n, B, G = dA.shape
        z_hat = torch.sub(self.Z[lo:hi], self.mu[lo:hi], out=scratch[0][:n])
        z_hat.mul_(self.rho[lo:hi])
        tmp = scratch[1][:n]
        self.d_g += torch.mul(dA, z_hat, out=tmp).sum((0, 1))
        if self.d_b is not None:
            self.d_b += dA.sum((0, 1))
        if self.d_xs is None and self.d_W is None:
            return
        dA.mul_(self.g_xh).mul_(self.rho[lo:hi])
        dZ = ln_backward(dA, z_hat, out=dA, tmp=tmp).view(n * B, G)
        if self.d_xs is not None:
            torch.mm(dZ, self.W_xh, out=self.d_xs[lo:hi].view(n * B, -1))
        if self.d_W is not None:
            self.d_W.addmm_(dZ.t(), self.xs[lo:hi].reshape(n * B, -1))


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


class _LSTMSaved(NamedTuple):
    xs: Tensor
    h0: Tensor
    c0: Tensor
    W_xh: Tensor
    W_hh: Tensor
    g_xh: Tensor
    g_hh: Tensor
    g_c: Tensor
    b_c: Tensor | None
    Z: Tensor                   # U x(t), and its LN's μ, ρ
    mu_x: Tensor
    rho_x: Tensor
    G: Tensor                   # the activated gates
    R: Tensor                   # W (d ⊙ h(t-1)), and its LN's μ, ρ
    mu_h: Tensor
    rho_h: Tensor
    Y: Tensor                   # h(t)
    C: Tensor                   # c(t)
    mu_c: Tensor                # μ, ρ of LN(c̃(t))
    rho_c: Tensor
    states: Tensor | None       # the frozen h after each step, with ragged lengths
    mask: Tensor | None
    drop: Tensor | None
    zh: Tensor | None
    zc: Tensor | None
    Ct: Tensor | None           # c̃(t) before zoneout, with zoneout


class _GRUSaved(NamedTuple):
    xs: Tensor
    h0: Tensor
    W_xh: Tensor
    W_hh: Tensor
    g_xh: Tensor
    g_hh: Tensor
    b_hh: Tensor | None
    Z: Tensor                   # U x(t), and its LN's μ, ρ
    mu_x: Tensor
    rho_x: Tensor
    X: Tensor                   # r, z, n of every step
    R: Tensor                   # W (d ⊙ h(t-1)), and its LN's μ, ρ
    mu_h: Tensor
    rho_h: Tensor
    Y: Tensor                   # h(t)
    states: Tensor | None       # the frozen state after each step, with ragged lengths
    mask: Tensor | None
    drop: Tensor | None
    zone: Tensor | None


def _fake_stats(xs: Tensor, gates: int, H: int) -> dict:
    """The shapes of the LN statistics and projections both LN kernels keep."""
    T, B = xs.shape[0], xs.shape[1]
    stat = xs.new_empty(T, B, 1)
    return {"Z": xs.new_empty(T, B, gates * H), "R": xs.new_empty(T, B, gates * H),
            "mu_x": stat, "rho_x": torch.empty_like(stat), "mu_h": torch.empty_like(stat),
            "rho_h": torch.empty_like(stat)}


class LNLSTMSequence(Kernel):
    name = "ln_lstm"
    schema = ("Tensor xs, Tensor h0, Tensor c0, Tensor W_xh, Tensor W_hh, Tensor g_xh, "
              "Tensor g_hh, Tensor? bias, Tensor g_c, Tensor? b_c, Tensor? mask, bool reverse, "
              "float eps, Tensor? drop=None, Tensor? zh=None, Tensor? zc=None")
    Saved = _LSTMSaved
    outputs = 3                                    # ys, h, c
    from_outputs = {"Y": 0}

    @staticmethod
    def fake(xs, h0, c0, W_xh, W_hh, g_xh, g_hh, bias, g_c, b_c, mask, reverse, eps,
             drop=None, zh=None, zc=None):
        T, B, H = xs.shape[0], xs.shape[1], c0.shape[1]
        Y = xs.new_empty(T, B, H)
        extras = _fake_stats(xs, 4, H)
        stat = extras["mu_x"]
        extras.update(G=xs.new_empty(T, B, 4 * H), C=torch.empty_like(Y),
                      mu_c=torch.empty_like(stat), rho_c=torch.empty_like(stat),
                      states=None if mask is None else torch.empty_like(Y),
                      Ct=None if zc is None else torch.empty_like(Y))
        return (Y, h0.new_empty(h0.shape), c0.new_empty(c0.shape)), extras

    @staticmethod
    def reference(xs, h0, c0, W_xh, W_hh, g_xh, g_hh, bias, g_c, b_c, mask, reverse, eps,
                  drop=None, zh=None, zc=None):
        H = c0.shape[1]
        cell = LayerNormLSTMCell(xs.shape[2], H, eps=eps, device="meta")
        ys, (h, c) = unrolled(cell, {"W_xh": ifog(W_xh, H), "W_hh": ifog(W_hh, H),
                                     "g_xh": ifog(g_xh, H), "g_hh": ifog(g_hh, H),
                                     "b_xh": ifog(bias, H), "g_c": g_c, "b_c": b_c}, xs,
                              LSTMState(h0, c0), mask, reverse, drop,
                              None if zc is None else (zh, zc))
        return ys, h, c

    @staticmethod
    def forward(ctx, xs, h0, c0, W_xh, W_hh, g_xh, g_hh, bias, g_c, b_c, mask,
                reverse: bool, eps: float, drop=None, zh=None, zc=None):
        # drop (B, H): recurrent dropout; zh, zc (T, B, H): zoneout with the lengths folded
        # in (mask None then)
        T, B, _ = xs.shape
        H = c0.shape[1]
        two = torch.ones(4 * H, dtype=xs.dtype, device=xs.device)
        two[3 * H:] = 2.0                                              # g rows: σ(2 a_g)
        Z, G, mu_x, rho_x = _input_layer_norm(xs, W_xh, g_xh * two,
                                              None if bias is None else bias * two, eps)
        g_h2, g_c2 = g_hh * two, g_c * 2.0                             # G: A, then the gates
        b_c2 = None if b_c is None else b_c * 2.0
        W_hhT = W_hh.t().contiguous()                                  # (H, 4H)
        R, Y, C = xs.new_empty(T, B, 4 * H), xs.new_empty(T, B, H), xs.new_empty(T, B, H)
        G_t, R_t, Y_t, C_t = G.unbind(0), R.unbind(0), Y.unbind(0), C.unbind(0)
        i_t, f_t, o_t, sg_t = (G[..., k * H:(k + 1) * H].unbind(0) for k in range(4))
        mu_h, rho_h, mu_c, rho_c = ([None] * T for _ in range(4))
        Ct = C if zc is None else xs.new_empty(T, B, H)                # c̃(t), before zoneout
        Ct_t = Ct.unbind(0)
        zh_t, zc_t = (None, None) if zc is None else (zh.unbind(0), zc.unbind(0))
        states, s_t, m_t = frozen_states(Y, mask)
        nln, mm, mul, lerp, neg = (torch.native_layer_norm, torch.mm, torch.mul, torch.lerp,
                                   torch.neg)
        h, c = h0, c0
        for t in steps(T, reverse):
            r = mm(dropped(h, drop), W_hhT, out=R_t[t])                # R = W (d ⊙ h(t-1))
            q, mu_h[t], rho_h[t] = nln(r, (4 * H,), g_h2, None, eps)
            G_t[t].add_(q).sigmoid_()                                  # i, f, o, σ(2 a_g)
            i = i_t[t]                                                 # c = f c + i (2σ - 1)
            c_new = mul(f_t[t], c, out=Ct_t[t]).addcmul_(i, sg_t[t], value=2.0).sub_(i)
            k, mu_c[t], rho_c[t] = nln(c_new, (H,), g_c2, b_c2, eps)   # 2 LN(c)
            o = o_t[t]
            h_new = lerp(neg(o), o, k.sigmoid_(), out=Y_t[t])          # o ⊙ tanh(LN(c))
            if zc_t is not None:                                       # zoneout
                c = zoned(c_new, c, zc_t, t, C_t[t])
                h = zoned(h_new, h, zh_t, t, Y_t[t])
                continue
            c = c_new if m_t is None else torch.where(m_t[t], c_new, c, out=C_t[t])
            h = leave_step(h_new, h, m_t, s_t, t)
        save(ctx, _LSTMSaved(xs, h0, c0, W_xh, W_hh, g_xh, g_hh, g_c, b_c, Z, mu_x, rho_x, G, R,
                             torch.stack(mu_h), torch.stack(rho_h), Y, C, torch.stack(mu_c),
                             torch.stack(rho_c), states, mask, drop, zh, zc,
                             None if zc is None else Ct), Options(reverse))
        return Y, h.clone(), c.clone()

    @staticmethod
    def backward(ctx, d_ys, d_hT, d_cT):
        s, opts, need = unpack(ctx)
        (xs, h0, c0, W_xh, W_hh, g_xh, g_hh, g_c, b_c, Z, mu_x, rho_x, G, R, mu_h, rho_h, Y,
         C, mu_c, rho_c, states, mask, drop, zh, zc, Ct) = s
        reverse = opts.reverse
        T, B, _ = xs.shape
        H = c0.shape[1]
        H4 = 4 * H
        walk = Walk.of(d_ys, Y, mask, zh, reverse)
        dh = zeros_if_none(d_hT, h0)
        dc = zeros_if_none(d_cT, c0)
        dy_t, m_t, f_t = walk.dy_t, walk.m_t, G[..., H:2 * H].unbind(0)
        zc_t = None if zc is None else zc.unbind(0)
        Ct = C if Ct is None else Ct                                   # c̃(t), before zoneout
        H_all = states_after(Y, states)                                # h(t) for every t
        inputs = _InputGrads(xs, W_xh, g_xh, Z, mu_x, rho_x, need.xs, need.W_xh, need.bias)
        d_Whh = W_hh.new_zeros(H4, H) if need.W_hh else None
        d_ghh, d_gc = G.new_zeros(H4), G.new_zeros(H)
        d_bc = G.new_zeros(H) if b_c is not None else None
        chunks, K = _chunks(T, reverse, B * H4)
        # per chunk, for its steps j: V = ∂a/∂(∇c or ∇h) per gate, Vr = V γ_h ρ_h, R̂, ĉ,
        # Oc = o (1 - k²) γ_c ρ_c, Lf = o (1 - k²); ∇a, ∇R, ∇c after LN(c), ∇h entering
        V, Vr, Rh, dG, dR, S1, S2 = (G.new_empty(K, B, H4) for _ in range(7))
        Ch, Oc, Lf, dC, dH = (G.new_empty(K, B, H) for _ in range(5))
        Vr4_j, Vro_j = Vr.view(K, B, 4, H).unbind(0), Vr[..., 2 * H:3 * H].unbind(0)
        Rh_j, Ch_j, Oc_j = Rh.unbind(0), Ch.unbind(0), Oc.unbind(0)
        dR_j, dC_j, dH_j = dR.unbind(0), dC.unbind(0), dH.unbind(0)
        D = G.new_empty(B, H4)                                # ∇a γ_h ρ_h of one step
        D4, Do = D.view(B, 4, H), D[:, 2 * H:3 * H]
        mul, addcmul = torch.mul, torch.addcmul
        for ci, (lo, hi, part) in enumerate(chunks):
            n = hi - lo
            Gc = G[lo:hi]
            i, o, s = Gc[..., :H], Gc[..., 2 * H:3 * H], Gc[..., 3 * H:]
            g = s * 2.0 - 1.0                                          # tanh(a_g)
            sd = addcmul(Gc[..., :3 * H], Gc[..., :3 * H], Gc[..., :3 * H], value=-1.0,
                         out=S1[:n, :, :3 * H])                        # σ(1 - σ)
            ch = torch.sub(Ct[lo:hi], mu_c[lo:hi], out=Ch[:n]).mul_(rho_c[lo:hi])
            k = tanh(addcmul(b_c, ch, g_c) if b_c is not None else ch * g_c)
            v = V[:n]
            mul(g, sd[..., :H], out=v[..., :H])                        # g σ'(i)
            mul(previous_chunk(C, c0, lo, hi, reverse), sd[..., H:2 * H],
                out=v[..., H:2 * H])                                   # c(t-1) σ'(f)
            mul(k, sd[..., 2 * H:], out=v[..., 2 * H:3 * H])           # k σ'(o)
            addcmul(i, i, g * g, value=-1.0, out=v[..., 3 * H:])       # i (1 - g²)
            mul(v, g_hh, out=Vr[:n]).mul_(rho_h[lo:hi])
            lf = addcmul(o, o, k * k, value=-1.0, out=Lf[:n])          # o (1 - k²)
            mul(lf, g_c, out=Oc[:n]).mul_(rho_c[lo:hi])
            rh = torch.sub(R[lo:hi], mu_h[lo:hi], out=Rh[:n]).mul_(rho_h[lo:hi])
            for t, nxt in part:
                j = t - lo
                if m_t is None and zc_t is None:
                    if ci == 0 and t == part[0][0]:                    # ∇h(T) + ∂L/∂y(T)
                        dh = torch.add(dh, dy_t[t], out=dH_j[j])
                    elif t == part[0][0]:
                        dh = dH_j[j].copy_(dh)
                    dh_t, dc_t, carry = dh, dc, None
                    passed_on = None if nxt is None else dy_t[nxt]
                else:                                                  # frozen rows, zoneout
                    dh_t, passed_on = walk.enter(dh, t, nxt, out=dH_j[j])
                    dc_t, carry = walk.enter_cell(dc, t, nxt, zc_t)
                # ∇c += LN(c) backward (ρ_c γ_c in Oc)
                dl = mul(dh_t, Oc_j[j])
                chj = Ch_j[j]
                s1 = dl.sum(1, keepdim=True)
                s2 = mul(dl, chj).sum(1, keepdim=True)
                dct = torch.sub(dl, s1, alpha=1.0 / H, out=dC_j[j])
                dct.addcmul_(chj, s2, value=-1.0 / H).add_(dc_t)
                # ∇a γ_h ρ_h = (∇c, ∇c, ∇h, ∇c) ⊙ V γ_h ρ_h, then the LN backward: ∇R
                mul(dct.unsqueeze(1), Vr4_j[j], out=D4)
                mul(dh_t, Vro_j[j], out=Do)
                rhj = Rh_j[j]
                s1 = D.sum(1, keepdim=True)
                s2 = mul(D, rhj).sum(1, keepdim=True)
                dr = torch.sub(D, s1, alpha=1.0 / H4, out=dR_j[j])
                dr.addcmul_(rhj, s2, value=-1.0 / H4)
                out = (dH_j[nxt - lo] if m_t is None and zc_t is None and nxt is not None
                       and lo <= nxt < hi else None)
                dh = recurrent_grad(dr, W_hh, passed_on, drop, out, addcmul=True)  # ∇h(t-1)
                dc = dct * f_t[t] if carry is None else carry.addcmul_(dct, f_t[t])
            # the chunk's ∇a = (∇c, ∇c, ∇h, ∇c) ⊙ V and its parameter gradients
            dGc, dHc = dG[:n], dH[:n]
            mul(dC[:n].unsqueeze(2), v.view(n, B, 4, H), out=dGc.view(n, B, 4, H))
            mul(dHc, v[..., 2 * H:3 * H], out=dGc[..., 2 * H:3 * H])
            d_ghh += mul(dGc, rh, out=S1[:n]).sum((0, 1))
            dl = dHc * lf                                              # ∇ℓ = ∇h ⊙ o (1 - k²)
            d_gc += (dl * ch).sum((0, 1))
            if d_bc is not None:
                d_bc += dl.sum((0, 1))
            if d_Whh is not None:                                      # ∇W += ∇R h(t-1)ᵀ
                hp = dropped(previous_chunk(H_all, h0, lo, hi, reverse), drop)  # what W read
                d_Whh.addmm_(dR[:n].view(n * B, H4).t(), hp.reshape(n * B, H))
            inputs.add(dGc, lo, hi, (S1, S2))                          # ∇b, ∇γ_x, ∇U, ∇x
        return grads(need, xs=inputs.d_xs, h0=dh, c0=dc, W_xh=inputs.d_W, W_hh=d_Whh,
                     g_xh=inputs.d_g, g_hh=d_ghh, bias=inputs.d_b, g_c=d_gc, b_c=d_bc)


def ln_lstm_kernel(cell, xs: Tensor, state: LSTMState, mask: Tensor | None, reverse: bool,
                   drop: Tensor | None = None, zone=None):
    """Fused sequence for :class:`rnnlab.LayerNormLSTMCell`:
    (T, B, I) -> ((T, B, H), LSTMState(h (B, H), c (B, H))). ``drop`` (B, H): recurrent
    dropout mask; ``zone``: zoneout weights (z_h (T, B, H), z_c (T, B, H))."""
    H = cell.hidden_size
    ys, h, c = run_zoned(lambda m, z: LNLSTMSequence.apply(
        xs, state[0], state[1], ifog(cell.W_xh, H), ifog(cell.W_hh, H), ifog(cell.g_xh, H),
        ifog(cell.g_hh, H), ifog(sum_bias(cell.b_xh, cell.b_hh), H), cell.g_c, cell.b_c,
        m, reverse, cell.eps, drop, *(z or (None, None))), mask, zone)
    return ys, LSTMState(h, c)




class LNGRUSequence(Kernel):
    name = "ln_gru"
    schema = ("Tensor xs, Tensor h0, Tensor W_xh, Tensor W_hh, Tensor g_xh, Tensor g_hh, "
              "Tensor? b_xh, Tensor? b_hh, Tensor? mask, bool reverse, float eps, "
              "Tensor? drop=None, Tensor? zone=None")
    Saved = _GRUSaved
    from_outputs = {"Y": 0}

    @staticmethod
    def fake(xs, h0, W_xh, W_hh, g_xh, g_hh, b_xh, b_hh, mask, reverse, eps, drop=None,
             zone=None):
        T, B, H = xs.shape[0], xs.shape[1], h0.shape[1]
        Y = xs.new_empty(T, B, H)
        extras = _fake_stats(xs, 3, H)
        extras.update(X=xs.new_empty(T, B, 3 * H),
                      states=None if mask is None else torch.empty_like(Y))
        return (Y, h0.new_empty(h0.shape)), extras

    @staticmethod
    def reference(xs, h0, W_xh, W_hh, g_xh, g_hh, b_xh, b_hh, mask, reverse, eps, drop=None,
                  zone=None):
        cell = LayerNormGRUCell(xs.shape[2], h0.shape[1], eps=eps, device="meta")
        return unrolled(cell, {"W_xh": W_xh, "W_hh": W_hh, "g_xh": g_xh, "g_hh": g_hh,
                               "b_xh": b_xh, "b_hh": b_hh}, xs, h0, mask, reverse, drop,
                        None if zone is None else (zone,))

    @staticmethod
    def forward(ctx, xs, h0, W_xh, W_hh, g_xh, g_hh, b_xh, b_hh, mask, reverse: bool,
                eps: float, drop=None, zone=None):
        # drop (B, H): recurrent dropout; zone (T, B, H): zoneout, lengths folded in
        T, B, _ = xs.shape
        H = h0.shape[1]
        Z, X, mu_x, rho_x = _input_layer_norm(xs, W_xh, g_xh, b_xh, eps)  # X becomes r, z, n
        W_hhT = W_hh.t().contiguous()                                  # (H, 3H)
        R, Y = xs.new_empty(T, B, 3 * H), xs.new_empty(T, B, H)
        rz_t, r_t, z_t, n_t = (X[..., a:b].unbind(0) for a, b in
                               ((0, 2 * H), (0, H), (H, 2 * H), (2 * H, 3 * H)))
        R_t, Y_t = R.unbind(0), Y.unbind(0)
        mu_h, rho_h = [None] * T, [None] * T
        states, s_t, m_t = frozen_states(Y, mask)
        zh_t = zone.unbind(0) if zone is not None else None
        nln, split = torch.native_layer_norm, (2 * H, H)
        h = h0
        for t in steps(T, reverse):
            r = torch.mm(dropped(h, drop), W_hhT, out=R_t[t])          # R = W (d ⊙ h(t-1))
            q, mu_h[t], rho_h[t] = nln(r, (3 * H,), g_hh, b_hh, eps)
            q_rz, q_n = q.split(split, 1)                              # Q = γ_h ⊙ R̂ + b_h
            rz_t[t].add_(q_rz).sigmoid_()                              # r, z
            n = tanh_(n_t[t].addcmul_(r_t[t], q_n))                    # n = tanh(X_n + r ⊙ Q_n)
            h_new = torch.lerp(n, h, z_t[t], out=Y_t[t])               # n + z ⊙ (h - n)
            if zh_t is not None:
                h = zoned(h_new, h, zh_t, t, Y_t[t])                   # zoneout
            else:
                h = leave_step(h_new, h, m_t, s_t, t)
        save(ctx, _GRUSaved(xs, h0, W_xh, W_hh, g_xh, g_hh, b_hh, Z, mu_x, rho_x, X, R,
                            torch.stack(mu_h), torch.stack(rho_h), Y, states, mask, drop, zone),
             Options(reverse))
        return Y, h.clone()

    @staticmethod
    def backward(ctx, d_ys, d_hT):
        s, opts, need = unpack(ctx)
        (xs, h0, W_xh, W_hh, g_xh, g_hh, b_hh, Z, mu_x, rho_x, X, R, mu_h, rho_h, Y, states,
         mask, drop, zone) = s
        reverse = opts.reverse
        T, B, _ = xs.shape
        H = h0.shape[1]
        H3 = 3 * H
        walk = Walk.of(d_ys, Y, mask, zone, reverse)
        dh = zeros_if_none(d_hT, h0)
        dy_t, m_t, zh_t, z_t = walk.dy_t, walk.m_t, walk.z_t, X[..., H:2 * H].unbind(0)
        H_all = states_after(Y, states)                                # h(t) for every t
        inputs = _InputGrads(xs, W_xh, g_xh, Z, mu_x, rho_x, need.xs, need.W_xh, need.b_xh)
        d_Whh = W_hh.new_zeros(H3, H) if need.W_hh else None
        d_ghh = X.new_zeros(H3)
        d_bhh = X.new_zeros(H3) if b_hh is not None else None
        chunks, K = _chunks(T, reverse, B * H3)
        # per chunk: V = ∂(X_r, X_z, X_n)/∂(∇h), Vr = ∂Q/∂(∇h) γ_h ρ_h, R̂; ∇X, ∇R, ∇h entering
        V, Vr, Rh, dX, dR, S1, S2 = (X.new_empty(K, B, H3) for _ in range(7))
        dH = X.new_empty(K, B, H)
        Vr3_j, Rh_j, dR_j, dH_j = Vr.view(K, B, 3, H).unbind(0), Rh.unbind(0), dR.unbind(0), \
            dH.unbind(0)
        D = X.new_empty(B, H3)
        D3 = D.view(B, 3, H)
        mul, addcmul = torch.mul, torch.addcmul
        for ci, (lo, hi, part) in enumerate(chunks):
            n_ = hi - lo
            Xc = X[lo:hi]
            r, z, n = Xc[..., :H], Xc[..., H:2 * H], Xc[..., 2 * H:]
            hp = previous_chunk(H_all, h0, lo, hi, reverse)
            rh = torch.sub(R[lo:hi], mu_h[lo:hi], out=Rh[:n_]).mul_(rho_h[lo:hi])
            qn = rh[..., 2 * H:] * g_hh[2 * H:]                       # Q_n
            if b_hh is not None:
                qn += b_hh[2 * H:]
            v = V[:n_]
            vn = mul(1.0 - z, addcmul(torch.ones_like(n), n, n, value=-1.0),
                     out=v[..., 2 * H:])                               # (1 - z)(1 - n²)
            mul(vn * qn, addcmul(r, r, r, value=-1.0), out=v[..., :H])  # ... Q_n r(1 - r)
            mul(hp - n, addcmul(z, z, z, value=-1.0), out=v[..., H:2 * H])  # (h - n) z(1 - z)
            vr = Vr[:n_]
            mul(v[..., :2 * H], g_hh[:2 * H], out=vr[..., :2 * H])
            mul(vn * r, g_hh[2 * H:], out=vr[..., 2 * H:])             # (1 - z)(1 - n²) r γ
            vr.mul_(rho_h[lo:hi])
            for t, nxt in part:
                j = t - lo
                if m_t is None and zh_t is None:
                    if ci == 0 and t == part[0][0]:                    # ∇h(T) + ∂L/∂y(T)
                        dh = torch.add(dh, dy_t[t], out=dH_j[j])
                    elif t == part[0][0]:
                        dh = dH_j[j].copy_(dh)
                    dh_t, passed_on = dh, (None if nxt is None else dy_t[nxt])
                else:                                                  # frozen rows, zoneout
                    dh_t, passed_on = walk.enter(dh, t, nxt, out=dH_j[j])
                mul(dh_t.unsqueeze(1), Vr3_j[j], out=D3)               # ∇Q γ_h ρ_h
                rhj = Rh_j[j]
                s1 = D.sum(1, keepdim=True)
                s2 = mul(D, rhj).sum(1, keepdim=True)
                dr = torch.sub(D, s1, alpha=1.0 / H3, out=dR_j[j])     # ∇R
                dr.addcmul_(rhj, s2, value=-1.0 / H3)
                direct = dh_t * z_t[t] if passed_on is None else addcmul(passed_on, dh_t, z_t[t])
                out = (dH_j[nxt - lo] if m_t is None and zh_t is None and nxt is not None
                       and lo <= nxt < hi else None)
                dh = recurrent_grad(dr, W_hh, direct, drop, out, addcmul=True)  # ∇h(t-1)
            # the chunk's ∇X and parameter gradients (∇Q = ∇X except ∇Q_n = ∇X_n ⊙ r)
            dXc = dX[:n_]
            mul(dH[:n_].unsqueeze(2), v.view(n_, B, 3, H), out=dXc.view(n_, B, 3, H))
            dqn = dXc[..., 2 * H:] * r
            prod = S1[:n_]
            mul(dXc[..., :2 * H], rh[..., :2 * H], out=prod[..., :2 * H])
            mul(dqn, rh[..., 2 * H:], out=prod[..., 2 * H:])
            d_ghh += prod.sum((0, 1))
            if d_bhh is not None:
                d_bhh[:2 * H] += dXc[..., :2 * H].sum((0, 1))
                d_bhh[2 * H:] += dqn.sum((0, 1))
            if d_Whh is not None:                                      # ∇W += ∇R h(t-1)ᵀ
                d_Whh.addmm_(dR[:n_].view(n_ * B, H3).t(),
                             dropped(hp, drop).reshape(n_ * B, H))     # what W read
            inputs.add(dXc, lo, hi, (S1, S2))                          # ∇b_x, ∇γ_x, ∇U, ∇x
        return grads(need, xs=inputs.d_xs, h0=dh, W_xh=inputs.d_W, W_hh=d_Whh,
                     g_xh=inputs.d_g, g_hh=d_ghh, b_xh=inputs.d_b, b_hh=d_bhh)


def ln_gru_kernel(cell, xs: Tensor, h0: Tensor, mask: Tensor | None, reverse: bool,
                  drop: Tensor | None = None, zone=None):
    """Fused sequence for :class:`rnnlab.LayerNormGRUCell`: (T, B, I) -> ((T, B, H), h).
    ``drop`` (B, H): recurrent dropout mask; ``zone`` (z (T, B, H),): zoneout weights."""
    args = (xs, h0, cell.W_xh, cell.W_hh, cell.g_xh, cell.g_hh, cell.b_xh, cell.b_hh)
    return run_zoned(lambda m, z: LNGRUSequence.apply(*args, m, reverse, cell.eps, drop,
                                                      *(z or ())), mask, zone)


