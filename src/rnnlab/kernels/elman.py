"""Fused Elman RNN (tanh or relu) with hand-derived BPTT, book eqs. 10.8 and 10.16-10.22.

Forward, for t = 1..τ (or τ..1 in reverse):

    a(t) = b + W h(t-1) + U x(t)        U x(t) + b for all t is one GEMM before the loop
    h(t) = tanh(a(t))                    (or relu)

On CPU torch's tanh costs several times its sigmoid, so the tanh loop runs on
s(t) = σ(2a(t)), with h(t) = tanh(a(t)) = 2 s(t) - 1. Then W h(t-1) = 2W(2 s(t-1) - 1) and

    2a(t) = 2(U x(t) + b - W 1) + 4W s(t-1),     s(0) = (h(0) + 1) / 2

so each step is one GEMM into the precomputed 2(U x(t) + b - W 1) and one sigmoid; all
h(t) = 2 s(t) - 1 are taken in one pass after the loop. (float32: |Δh| ~ 1e-6 against
float64, about twice the error of tanh itself and the same as nn.RNN's; float64: ~1e-15.)
The map h = 2s - 1 is affine, so a zoneout lerp carries over to s unchanged, and a
recurrent dropout mask d (B, H), fixed over the sequence, reads W(d ⊙ h) = 2W(d ⊙ s) - W d:
4W (d ⊙ s(t-1)) per step, with the constant -2W d added to every step's 2a(t) up front.

Backward (with ∂L/∂h(t) arriving from the outputs and from the future):

    ∇_h(t) L = ∂L/∂y(t) + Wᵀ ∇_a(t+1) L                         (10.20 / 10.21)
    ∇_a(t) L = diag(1 - h(t)²) ∇_h(t) L                          (tanh'; relu: 1[h > 0])
    ∇_W L = Σ_t ∇_a(t) L h(t-1)ᵀ,  ∇_U L = Σ_t ∇_a(t) L x(t)ᵀ,  ∇_b L = Σ_t ∇_a(t) L   (10.22)

Per step: ∇_a(t) is one op (ATen's tanh/threshold backward) into the (T, B, H) buffer of
all ∇_a, and ∇_h(t-1) one GEMM with ∂L/∂y(t-1) in its bias slot. The three sums are one
GEMM (or reduction) each over all T·B rows, after the loop; ∇_W reads h(t-1) straight from
the saved states (two GEMMs' worth of rows, :func:`._common.outer_previous`), so the
backward's only (T, B, H) temporary is ∇_a.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..cells import ElmanCell
from ._common import (
    Kernel,
    Options,
    Walk,
    dropped,
    frozen_states,
    grads,
    input_grads,
    leave_step,
    outer_previous,
    recurrent_grad,
    relu_grad,
    run_zoned,
    save,
    states_after,
    steps,
    sum_bias,
    tanh_grad,
    unpack,
    unrolled,
)


class _Saved(NamedTuple):
    xs: Tensor
    h0: Tensor
    W_xh: Tensor
    W_hh: Tensor
    ys: Tensor                  # h(t) (zoned)
    states: Tensor | None       # the frozen state after each step, with ragged lengths
    mask: Tensor | None
    drop: Tensor | None
    zone: Tensor | None
    cand: Tensor | None         # h̃(t) before zoneout, with zoneout


class ElmanSequence(Kernel):
    name = "elman"
    schema = ("Tensor xs, Tensor h0, Tensor W_xh, Tensor W_hh, Tensor? bias, Tensor? mask, "
              "bool reverse, bool relu, Tensor? drop=None, Tensor? zone=None")
    Saved = _Saved
    from_outputs = {"ys": 0}

    @staticmethod
    def fake(xs, h0, W_xh, W_hh, bias, mask, reverse, relu, drop=None, zone=None):
        ys = xs.new_empty(xs.shape[0], xs.shape[1], W_hh.shape[0])
        return (ys, h0.new_empty(h0.shape)), {"states": None if mask is None else
                                              torch.empty_like(ys),
                                              "cand": None if zone is None else
                                              torch.empty_like(ys)}

    @staticmethod
    def reference(xs, h0, W_xh, W_hh, bias, mask, reverse, relu, drop=None, zone=None):
        cell = ElmanCell(W_xh.shape[1], W_hh.shape[0], "relu" if relu else "tanh",
                         device="meta")
        return unrolled(cell, {"W_xh": W_xh, "W_hh": W_hh, "b_xh": bias}, xs, h0, mask,
                        reverse, drop, None if zone is None else (zone,))

    @staticmethod
    def forward(ctx, xs, h0, W_xh, W_hh, bias, mask, reverse: bool, relu: bool,
                drop=None, zone=None):
        # drop (B, H): recurrent dropout; zone (T, B, H): zoneout, lengths folded in
        T, B, I = xs.shape
        H = W_hh.shape[0]
        if relu:                                 # a(t) = U x(t) + b + W h(t-1), h = relu(a)
            scale, carry_W, h = 1.0, W_hh, h0
            shift = bias
        else:                                    # 2a(t) = 2(U x + b - W 1) + 4W s(t-1)
            scale, carry_W, h = 2.0, W_hh * 4.0, (h0 + 1.0) * 0.5
            shift = bias
            if drop is None:                     # (with dropout -W d, per sequence, below)
                shift = -W_hh.sum(1) if bias is None else bias - W_hh.sum(1)
        flat = xs.reshape(T * B, I)
        A = (torch.addmm(shift, flat, W_xh.t(), beta=scale, alpha=scale) if shift is not None
             else (flat @ W_xh.t()).mul_(scale)).view(T, B, H)   # becomes s(t), then h(t)
        if drop is not None and not relu:
            A.sub_(drop @ W_hh.t(), alpha=2.0)   # 2W(d ⊙ h) = 4W(d ⊙ s) - 2W d
        W_T = carry_W.t().contiguous()           # h (B, H) @ Wᵀ: contiguous is faster per step
        act_ = torch.relu_ if relu else torch.sigmoid_
        Y = A if zone is None else torch.empty_like(A)     # zoned states; A keeps h̃(t)
        a_t, y_t = A.unbind(0), Y.unbind(0)
        z_t = zone.unbind(0) if zone is not None else None
        states, s_t, m_t = frozen_states(A, mask)                  # ragged lengths only
        with torch.inference_mode():             # in place into A: no autograd bookkeeping
            for t in steps(T, reverse):
                new = act_(a_t[t].addmm_(dropped(h, drop), W_T))  # s(t) = σ(2a(t))
                if z_t is not None:                                # zoneout (affine in s)
                    h = torch.lerp(new, h, z_t[t], out=y_t[t])
                else:
                    h = leave_step(new, h, m_t, s_t, t)            # frozen past its length
        if not relu:                                               # h(t) = 2 s(t) - 1
            minus_one = A.new_full((), -1.0)
            for S in (A, states, None if zone is None else Y):
                if S is not None:
                    torch.add(minus_one, S, alpha=2.0, out=S)
            if mask is not None:
                A.mul_(mask)                                       # outputs 0 past lengths
        ys = Y
        save(ctx, _Saved(xs, h0, W_xh, W_hh, ys, states, mask, drop, zone,
                         None if zone is None else A), Options(reverse, relu))
        return ys, h.clone()

    @staticmethod
    def backward(ctx, d_ys, d_hT):
        s, opts, need = unpack(ctx)
        walk = Walk.of(d_ys, s.ys, s.mask, s.zone, opts.reverse)
        dh = walk.start(d_hT, s.h0)                                # ∇_h(τ)
        act_grad = relu_grad if opts.relu else tanh_grad           # ∇_a = h'(a) ⊙ ∇_h
        dA = torch.empty_like(s.ys)
        dA_t = dA.unbind(0)
        y_t = (s.ys if s.cand is None else s.cand).unbind(0)       # h̃(t), before zoneout
        for t, nxt in walk.order:
            dh_t, passed_on = walk.enter(dh, t, nxt)               # (frozen steps, zoneout)
            act_grad(dh_t, y_t[t], dA_t[t])                        # ∇_a(t) = h'(t) ∇_h(t)
            # ∇_h(t-1) = d ⊙ Wᵀ ∇_a(t) (+ ∂L/∂y(t-1), the frozen steps' or zoned units' ∇)
            dh = recurrent_grad(dA_t[t], s.W_hh, passed_on, s.drop)
        # parameter gradients: one GEMM each over all T·B rows (10.22)
        d_xs, d_Wxh, d_b = input_grads(dA, s.xs, s.W_xh, need.xs, need.W_xh, need.bias)
        d_Whh = None
        if need.W_hh:                                              # Σ ∇_a (d ⊙ h(t-1))ᵀ
            d_Whh = outer_previous(dA, dropped(states_after(s.ys, s.states), s.drop),
                                   dropped(s.h0, s.drop), opts.reverse)
        return grads(need, xs=d_xs, h0=dh, W_xh=d_Wxh, W_hh=d_Whh, bias=d_b)


def elman_kernel(cell, xs: Tensor, h0: Tensor, mask: Tensor | None, reverse: bool,
                 drop: Tensor | None = None, zone=None):
    """Fused sequence for :class:`rnnlab.ElmanCell`: (T, B, I) -> ((T, B, H), h (B, H)).
    ``drop`` (B, H): recurrent dropout mask; ``zone`` (z (T, B, H),): zoneout weights."""
    bias = sum_bias(cell.b_xh, cell.b_hh)
    relu = cell.nonlinearity == "relu"
    return run_zoned(lambda m, z: ElmanSequence.apply(
        xs, h0, cell.W_xh, cell.W_hh, bias, m, reverse, relu, drop, *(z or ())), mask, zone)


