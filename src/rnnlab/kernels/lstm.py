"""Fused LSTM with hand-derived BPTT (book section 10.10.1; Hochreiter & Schmidhuber 1997).

Inside the kernel the gates are ordered i, f, o, g: :func:`lstm_kernel` permutes torch.nn's
i, f, g, o rows on the way in, and autograd permutes the gradients back. The forward's
copies of U, W and b have the g block doubled, so that one sigmoid over the whole
contiguous (B, 4H) row of a step gives σ(G_i), σ(G_f), σ(G_o) and σ(2 G_g), and
g = tanh(G_g) = 2σ(2 G_g) - 1 takes one more op (on CPU torch's tanh costs several times
its sigmoid; the backward works with the undoubled G and the caller's weights).

Forward per step:

    G = U x(t) + b + W h(t-1)            (U x + b for all t: one GEMM before the loop)
    i, f, o = σ(G_i, G_f, G_o);  g = tanh(G_g)
    c(t) = f ⊙ c(t-1) + i ⊙ g
    m(t) = o ⊙ tanh(c(t))
    h(t) = m(t)                          (or h(t) = W_hr m(t), Sak et al. 2014: h is (B, P))

Backward per step, with ∇h and ∇c arriving from the output and from step t+1:

    ∇m      = ∇h                         (with projection: ∇m = W_hrᵀ ∇h, one more GEMM)
    ∇o      = ∇m ⊙ tanh(c(t))
    ∇c     += ∇m ⊙ o ⊙ (1 - tanh²(c(t)))
    ∇i      = ∇c ⊙ g,  ∇f = ∇c ⊙ c(t-1),  ∇g = ∇c ⊙ i
    ∇c(t-1) = ∇c ⊙ f
    ∇G      = (∇i, ∇f, ∇o) ⊙ σ(1 - σ),  ∇g ⊙ (1 - g²)
    ∇h(t-1) = Wᵀ ∇G
    ∇W = Σ_t ∇G(t) h(t-1)ᵀ,  ∇U = Σ_t ∇G(t) x(t)ᵀ,  ∇b = Σ_t ∇G(t)       (after the loop)
    ∇W_hr = Σ_t ∇h(t) m(t)ᵀ                                              (after the loop)

The backward reads c(t-1) and h(t-1) as views of the stored states (no shifted copies);
tanh(c(t)) is kept from the forward for small (B, H) blocks and recomputed in the loop for
large ones; σ' and tanh' come from the stored activations inside the loop (aten's
sigmoid_backward / tanh_backward, one op each).

Recurrent dropout (Gal & Ghahramani 2016): one mask d (B, P) per sequence multiplies h(t-1)
where W reads it, G = U x + b + W (d ⊙ h(t-1)); then ∇h(t-1) = d ⊙ Wᵀ ∇G and
∇W = Σ_t ∇G(t) (d ⊙ h(t-1))ᵀ. Zoneout (Krueger et al. 2017): the step computes c̃(t) and
h̃(t) as above from the zoned c(t-1), h(t-1), and keeps each unit's previous value where
its mask is 1, c(t) = z_c ⊙ c(t-1) + (1 - z_c) ⊙ c̃(t) (same for h, y(t) = h(t)); in the
backward ∇ ⊙ (1 - z) enters the step and ∇ ⊙ z passes straight to t-1.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..cells import LSTMCell
from ..cells.base import LSTMState
from ._common import (
    Kernel,
    Options,
    Walk,
    dropped,
    frozen_states,
    grads,
    ifog,
    input_grads,
    input_projection,
    leave_step,
    outer_previous,
    previous_states,
    recurrent_grad,
    run_zoned,
    save,
    sigmoid_grad,
    states_after,
    steps,
    sum_bias,
    tanh_grad,
    tanh_into,
    unpack,
    unrolled,
    zeros_if_none,
    zoned,
)

# tanh(c(t)) is kept from the forward for (B, H) blocks below this size, where the step is
# dispatch-bound and recomputing it costs the backward 1-3 ops per step (~3 % of a training
# step at B 16, H 64); from here on the step is GEMM-bound, the recompute costs < 1 % (B 64,
# H 256) and not keeping it saves a (T, B, H) buffer (peak RSS growth 155 -> 142 MB there,
# torch.nn.LSTM 194 MB).
_KEEP_TANH_C_MAX = 8192


class _Saved(NamedTuple):
    xs: Tensor
    h0: Tensor
    c0: Tensor
    W_xh: Tensor
    W_hh: Tensor
    W_hr: Tensor | None
    G: Tensor                   # i, f, o, g of every step (σ(2 G_g) -> g in place)
    Y: Tensor                   # h(t)
    M: Tensor | None            # m(t) = o ⊙ tanh(c(t)), with a projection
    C: Tensor                   # c(t)
    states: Tensor | None       # the frozen h after each step, with ragged lengths
    mask: Tensor | None
    drop: Tensor | None
    zh: Tensor | None
    zc: Tensor | None
    Ct: Tensor | None           # c̃(t) before zoneout, with zoneout where TC is not kept
    TC: Tensor | None           # tanh(c̃(t)), for small blocks


def _doubled_g(w: Tensor | None, H: int, rows_last: bool = False) -> Tensor | None:
    """A copy of an i, f, o, g weight (rows, or columns with ``rows_last``) or bias whose g
    block is doubled: the forward's G_g is then 2 G_g, and one sigmoid over the whole row
    gives σ(2 G_g), from which g = tanh(G_g) = 2σ(2 G_g) - 1 takes one more op."""
    if w is None:
        return None
    w = w.clone() if not rows_last else w.t().clone(memory_format=torch.contiguous_format)
    (w[..., 3 * H:] if rows_last else w[3 * H:]).mul_(2.0)
    return w


class LSTMSequence(Kernel):
    name = "lstm"
    schema = ("Tensor xs, Tensor h0, Tensor c0, Tensor W_xh, Tensor W_hh, Tensor? bias, "
              "Tensor? mask, bool reverse, Tensor? W_hr=None, Tensor? drop=None, "
              "Tensor? zh=None, Tensor? zc=None, bool keep=True, bool? keep_tanh_c=None")
    Saved = _Saved
    outputs = 3                                    # ys, h, c
    from_outputs = {"Y": 0}

    @staticmethod
    def fake(xs, h0, c0, W_xh, W_hh, bias, mask, reverse, W_hr=None, drop=None, zh=None,
             zc=None, keep=True, keep_tanh_c=None):
        T, B, P, H = xs.shape[0], xs.shape[1], h0.shape[1], c0.shape[1]
        Y = xs.new_empty(T, B, P)
        outs = (Y, h0.new_empty(h0.shape), c0.new_empty(c0.shape))
        if not keep:
            return outs, {}
        keep_tc = _keeps_tanh_c(B, H, keep_tanh_c)
        per_step = xs.new_empty(T, B, H)
        return outs, {"G": xs.new_empty(T, B, 4 * H),
                      "M": None if W_hr is None else torch.empty_like(per_step),
                      "C": per_step,
                      "states": None if mask is None else torch.empty_like(Y),
                      "Ct": torch.empty_like(per_step) if zc is not None and not keep_tc
                      else None,
                      "TC": torch.empty_like(per_step) if keep_tc else None}

    @staticmethod
    def reference(xs, h0, c0, W_xh, W_hh, bias, mask, reverse, W_hr=None, drop=None, zh=None,
                  zc=None, keep=True, keep_tanh_c=None):
        H = c0.shape[1]
        P = h0.shape[1] if W_hr is not None else 0
        cell = LSTMCell(xs.shape[2], H, proj_size=P, device="meta")
        ys, (h, c) = unrolled(cell, {"W_xh": ifog(W_xh, H), "W_hh": ifog(W_hh, H),
                                     "b_xh": ifog(bias, H), "W_hr": W_hr}, xs,
                              LSTMState(h0, c0), mask, reverse, drop,
                              None if zc is None else (zh, zc))
        return ys, h, c

    @staticmethod
    def forward(ctx, xs, h0, c0, W_xh, W_hh, bias, mask, reverse: bool, W_hr=None,
                drop=None, zh=None, zc=None, keep: bool = True, keep_tanh_c=None):
        # W_hr (P, H) and the regularisers' masks come last so that plain calls keep their
        # signature; drop (B, P) recurrent dropout, zh (T, B, P) / zc (T, B, H) zoneout
        # (with zoneout the lengths are folded into zh, zc and mask is None); keep=False
        # (inference): nothing is kept for a backward; keep_tanh_c: whether tanh(c(t)) is kept
        # (None: by the block size, _KEEP_TANH_C_MAX)
        T, B, _ = xs.shape
        P, H = h0.shape[1], c0.shape[1]            # P = H without a projection
        # G = U x + b for all t, g block doubled (σ(2a) gives tanh(a)); activated in place
        G = input_projection(xs, _doubled_g(W_xh, H), _doubled_g(bias, H))   # (T, B, 4H)
        W_hhT = _doubled_g(W_hh, H, rows_last=True)                          # (P, 4H)
        Y, C = xs.new_empty(T, B, P), xs.new_empty(T, B, H)
        M, W_hrT = Y, None                         # m(t) = o ⊙ tanh(c(t)) is h(t) ...
        if W_hr is not None:                       # ... or projected: h(t) = W_hr m(t)
            M, W_hrT = xs.new_empty(T, B, H), W_hr.t().contiguous()
        neg_ones = xs.new_full((B, H), -1.0)
        G_t, g_t = G.unbind(0), G[..., 3 * H:].unbind(0)
        i_t, f_t, o_t = (G[..., k * H:(k + 1) * H].unbind(0) for k in range(3))
        Ct = C if zc is None else xs.new_empty(T, B, H)   # c̃(t), before zoneout
        keep_tc = keep and _keeps_tanh_c(B, H, keep_tanh_c)
        TC = xs.new_empty(T, B, H) if keep_tc else None   # tanh(c̃(t)) for the backward
        tmp = xs.new_empty(B, H)
        Y_t, C_t = Y.unbind(0), C.unbind(0)      # views made once (each costs ~1 µs)
        M_t = Y_t if M is Y else M.unbind(0)
        Ct_t = C_t if Ct is C else Ct.unbind(0)
        TC_t = TC.unbind(0) if keep_tc else [tmp] * T
        zh_t, zc_t = (None, None) if zc is None else (zh.unbind(0), zc.unbind(0))
        states, s_t, m_t = frozen_states(Y, mask)  # h state after each step, if ragged
        h, c = h0, c0
        for t in steps(T, reverse):
            Gt, gt = G_t[t], g_t[t]
            Gt.addmm_(dropped(h, drop), W_hhT)
            Gt.sigmoid_()                                          # i, f, o, σ(2 G_g)
            torch.add(neg_ones, gt, alpha=2.0, out=gt)             # g = 2σ(2 G_g) - 1
            c_new = torch.mul(f_t[t], c, out=Ct_t[t]).addcmul_(i_t[t], gt)
            tc = tanh_into(c_new, TC_t[t], neg_ones)
            h_new = torch.mul(o_t[t], tc, out=M_t[t])              # m = o ⊙ tanh(c)
            if W_hr is not None:
                h_new = torch.mm(h_new, W_hrT, out=Y_t[t])         # h = W_hr m
            if zc_t is not None:                                   # zoneout
                c = zoned(c_new, c, zc_t, t, C_t[t])
                h = zoned(h_new, h, zh_t, t, Y_t[t])
                continue
            # frozen past its length (c in place in C, h in the state buffer)
            c = c_new if m_t is None else torch.where(m_t[t], c_new, c, out=C_t[t])
            h = leave_step(h_new, h, m_t, s_t, t)
        save(ctx, _Saved(xs, h0, c0, W_xh, W_hh, W_hr, G, Y, None if W_hr is None else M, C,
                         states, mask, drop, zh, zc,
                         Ct if zc is not None and not keep_tc else None, TC) if keep else None,
             Options(reverse))
        return Y, h.clone(), c.clone()

    @staticmethod
    def backward(ctx, d_ys, d_hT, d_cT):
        s, opts, need = unpack(ctx)
        G, W_hr, zc = s.G, s.W_hr, s.zc
        T, B, _ = s.xs.shape
        P, H = s.h0.shape[1], s.c0.shape[1]
        walk = Walk.of(d_ys, s.Y, s.mask, s.zh, opts.reverse)
        dh = walk.start(d_hT, s.h0)
        dc = zeros_if_none(d_cT, s.c0).clone()
        tmp, tc_buf = torch.empty_like(s.c0), torch.empty_like(s.c0)
        neg_ones = torch.full_like(s.c0, -1.0)
        if W_hr is not None:
            dHp = torch.empty_like(s.Y)                # ∇h(t) for every t, for ∇W_hr
            dHp_t = dHp.unbind(0)
        C_t = list(s.C.unbind(0))
        cp_t = C_t[1:] + [s.c0] if opts.reverse else [s.c0] + C_t[:-1]   # c(t-1), views
        dG = torch.empty_like(G)
        dG_t, dsig_t = dG.unbind(0), dG[..., :3 * H].unbind(0)
        di_t, df_t, do_t, dg_t = (dG[..., k * H:(k + 1) * H].unbind(0) for k in range(4))
        sig_t, g_t = G[..., :3 * H].unbind(0), G[..., 3 * H:].unbind(0)
        i_t, f_t, o_t = (G[..., k * H:(k + 1) * H].unbind(0) for k in range(3))
        tc_t = s.TC.unbind(0) if s.TC is not None else None
        Ct_t = None if s.TC is not None else C_t if s.Ct is None else s.Ct.unbind(0)  # c̃(t)
        zc_t = None if zc is None else zc.unbind(0)
        for t, nxt in walk.order:
            dh_t, passed_on = walk.enter(dh, t, nxt)               # (frozen steps, zoneout)
            dc_t, carry_c = walk.enter_cell(dc, t, nxt, zc_t)
            dm = dh_t                                              # ∇m = ∇h
            if W_hr is not None:
                dHp_t[t].copy_(dh_t)
                dm = dh_t @ W_hr                                   # ∇m = W_hrᵀ ∇h
            tc = tc_t[t] if tc_t is not None else tanh_into(Ct_t[t], tc_buf, neg_ones)
            torch.mul(dm, tc, out=do_t[t])                         # ∇o = ∇m ⊙ tanh(c)
            tanh_grad(dm, tc, tmp)                                 # ∇m ⊙ tanh'(c)
            dc_t.addcmul_(tmp, o_t[t])                             # ∇c += ∇m ⊙ o ⊙ tanh'(c)
            torch.mul(dc_t, g_t[t], out=di_t[t])                   # ∇i = ∇c ⊙ g
            torch.mul(dc_t, cp_t[t], out=df_t[t])                  # ∇f = ∇c ⊙ c(t-1)
            torch.mul(dc_t, i_t[t], out=dg_t[t])                   # ∇g = ∇c ⊙ i
            dc = dc_t.mul_(f_t[t])                                 # ∇c(t-1) = ∇c ⊙ f
            sigmoid_grad(dsig_t[t], sig_t[t], dsig_t[t])           # ∇i,f,o ⊙ σ(1 - σ)
            tanh_grad(dg_t[t], g_t[t], dg_t[t])                    # ∇g ⊙ (1 - g²)
            # ∇h(t-1) = d ⊙ Wᵀ ∇G (+ ∂L/∂y(t-1), the frozen steps' or the zoned units' ∇)
            dh = recurrent_grad(dG_t[t], s.W_hh, passed_on, s.drop)
            if carry_c is not None:
                dc = dc.add_(carry_c)
        d_xs, d_Wxh, d_b = input_grads(dG, s.xs, s.W_xh, need.xs, need.W_xh, need.bias)
        d_Whh = None
        if need.W_hh:                                  # Σ_t ∇G(t) (d ⊙ h(t-1))ᵀ
            hs = states_after(s.Y, s.states)
            if s.drop is None:
                d_Whh = outer_previous(dG, hs, s.h0, opts.reverse)
            else:                                      # what W read: d ⊙ h(t-1)
                h_prev = previous_states(hs, s.h0, opts.reverse).mul_(s.drop)
                d_Whh = dG.view(T * B, 4 * H).t() @ h_prev.view(T * B, P)
        d_Whr = None
        if W_hr is not None and need.W_hr:             # ∇W_hr = Σ_t ∇h m(t)ᵀ
            d_Whr = dHp.view(T * B, P).t() @ s.M.view(T * B, H)
        return grads(need, xs=d_xs, h0=dh, c0=dc, W_xh=d_Wxh, W_hh=d_Whh, bias=d_b,
                     W_hr=d_Whr)


def _keeps_tanh_c(B, H: int, keep_tanh_c: bool | None) -> bool:
    """Whether the forward keeps tanh(c(t)) for the backward: for small (B, H) blocks, unless
    the caller decided (a compiled or exported graph does not branch on B)."""
    return B * H < _KEEP_TANH_C_MAX if keep_tanh_c is None else keep_tanh_c


def _needs_grad(*tensors) -> bool:
    """Whether autograd will want a backward through the kernel (else: nothing is kept)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def lstm_kernel(cell, xs: Tensor, state: LSTMState, mask: Tensor | None, reverse: bool,
                drop: Tensor | None = None, zone=None):
    """Fused sequence for :class:`rnnlab.cells.LSTMCell`, with or without projection:
    (T, B, I) -> ((T, B, P or H), LSTMState(h (B, P or H), c (B, H))). ``drop`` (B, P):
    recurrent dropout mask; ``zone``: zoneout weights (z_h (T, B, P), z_c (T, B, H))."""
    H = cell.hidden_size
    bias = ifog(sum_bias(cell.b_xh, cell.b_hh), H)
    keep = _needs_grad(xs, *state, *cell.parameters())
    ys, h, c = run_zoned(lambda m, z: LSTMSequence.apply(
        xs, state[0], state[1], ifog(cell.W_xh, H), ifog(cell.W_hh, H), bias, m, reverse,
        cell.W_hr, drop, *(z or (None, None)), keep,
        False if torch.compiler.is_compiling() else None), mask, zone)
    return ys, LSTMState(h, c)


