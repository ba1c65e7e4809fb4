"""Fused output-to-hidden recurrence with hand-derived BPTT, book Fig. 10.4 (Jordan 1986).

The only recurrence of :class:`rnnlab.OutputFeedbackCell` runs through its output: the
state is the fed-back prediction ŷ (B, O). Free-running forward, for t = 1..τ (or τ..1):

    a(t) = b_h + W_xh x(t) + W_yh ŷ(t-1)   W_xh x(t) + b_h for all t: one GEMM before the loop
    h(t) = tanh(a(t))                       (or relu)
    o(t) = b_y + W_hy h(t)                  the output y(t) of the layer
    ŷ(t) = f(o(t))                          f = identity | softmax | sigmoid: the new state

Backward. The loss reaches o(t) from outside (∂L/∂o(t)) and through ŷ(t), which only the
next step reads (and the caller, for the final state). Walking the steps backwards:

    ∇_ŷ(t) L = W_yhᵀ ∇_a(t+1) L                          (∇_ŷ(τ) L = ∂L/∂ŷ(τ), given)
    ∇_o(t) L = J_f(t)ᵀ ∇_ŷ(t) L + ∂L/∂o(t)                feedback Jacobian J_f:
               identity: J_fᵀ g = g
               sigmoid:  J_fᵀ g = ŷ ⊙ (1 - ŷ) ⊙ g
               softmax:  J_fᵀ g = ŷ ⊙ (g - ⟨g, ŷ⟩)         (J = diag(ŷ) - ŷ ŷᵀ, symmetric)
    ∇_h(t) L = W_hyᵀ ∇_o(t) L
    ∇_a(t) L = diag(1 - h(t)²) ∇_h(t) L                   (relu: 1[h(t) > 0])

and the parameters, each one GEMM (or reduction) over all T·B rows after the loop:

    ∇W_xh = Σ_t ∇_a(t) x(t)ᵀ     ∇W_yh = Σ_t ∇_a(t) ŷ(t-1)ᵀ     ∇b_h = Σ_t ∇_a(t)
    ∇W_hy = Σ_t ∇_o(t) h(t)ᵀ     ∇b_y = Σ_t ∇_o(t)
    ∇x(t) = W_xhᵀ ∇_a(t),        ∇ŷ(0) = W_yhᵀ ∇_a(1)

Ragged lengths: past its length a sequence's state ŷ is frozen and its output o is zero,
as in :func:`rnnlab.unroll`; with the mask m(t) (B, 1) ∈ {0, 1} the state after step t is
m ŷ(t) + (1 - m) ŷ(t-1), so ∇_o(t) L above is multiplied by m and (1 - m) ∇_ŷ(t) L passes
straight on to ŷ(t-1). With identity feedback and no mask, ∇_ŷ(t-1) is added in place onto
∂L/∂o(t-1) by the addmm that makes it (it *is* ∇_o(t-1) then).

Per step the forward is two addmm (W_yh ŷ(t-1) into the precomputed W_xh x + b_h; then o),
the activation and f, in place into preallocated (T, B, ·) buffers. Where tanh runs through
the sigmoid (B·H >= 1024 on CPU, :func:`._common.sigmoid_tanh`), tanh(a) = 2σ(2a) - 1 has
its inner 2 folded into W_xh, b_h, W_yh and its outer 2s - 1 into o = 2 W_hy s + b_y - W_hy 1,
so a step takes one σ; h = 2s - 1 is formed after the loop in one pass. The backward is two
GEMMs and one (identity) to four (softmax) pointwise ops, two more with a mask. ∇_a is
built in place on act'(a) and ∇_o on a copy of ∂L/∂o, both formed for all steps at once
before the backward loop (so no step writes a fresh page or copies a bias).

Teacher forcing (book section 10.2.1, :meth:`rnnlab.OutputFeedbackCell.teacher_forced`)
feeds the ground truth instead of ŷ(t-1): no recurrence is left, and the cell computes all
steps at once with three GEMMs over T·B rows under autograd. :func:`teacher_forced_kernel`
is the same computation as a ``torch.autograd.Function`` with the backward written out
(GEMMs into one buffer, tanh in place, no concatenated copy of the targets). It is the
faster of the two, 1.10-1.30x across the small, medium and long configurations
(``benchmarks/feedback.py``), so it is kept; the cell's own method still runs the autograd
version.

Measured (1 thread, 2-core shared machine, torch 2.13 CPU, 2026-11-22; output size O = H,
tanh; ``rnnlab bench --threads 1 --configs small medium long
stream --cells feedback --repeats 5``): training step, autograd loop over the reference
step -> fused kernel (identity feedback)

    small  (B 32, T 100, I 64, H 128)    30.0 ms -> 16.6 ms    1.80x
    medium (B 64, T 200, I 128, H 256)  193.3 ms -> 159.3 ms   1.21x   (GEMM efficiency 90 %)
    long   (B 16, T 1000, I 32, H 64)   177.1 ms -> 48.2 ms    3.67x
    stream (B 1, T 1000, inference)     39.1 -> 18.6 µs/step   2.11x

Medium is GEMM-bound: a training step is 6·T·B·(H·I + 2·H·O) = 12.6 GFLOP, 148 ms at the
~85 GFLOP/s this machine's 1-thread matmul peak gave in the same run, so the loop is within
1.3x of the GEMM floor and no fused kernel can be 1.5x faster than it there. Sigmoid and
softmax feedback: 1.66-1.68x (small), 1.19-1.23x (medium), 2.7-3.6x (long); teacher forcing
against the fused free run: 1.14-1.28x (small), 0.99-1.14x (medium), 1.9-2.8x (long), the
gap the book's section 10.2.1 speaks of, which at these sizes is mostly per-step overhead
(see ``benchmarks/feedback.py`` for the table).

Shapes: xs (T, B, I), ŷ (B, O), os (T, B, O); W_xh (H, I), W_yh (H, O), W_hy (O, H).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..cells import OutputFeedbackCell
from ._common import (
    Kernel,
    Options,
    backward_steps,
    frozen_states,
    grads,
    input_grads,
    input_projection,
    save,
    sigmoid_tanh,
    states_after,
    steps,
    tanh_,
    unpack,
    unrolled,
    zeros_if_none,
)


class _Saved(NamedTuple):
    xs: Tensor
    y0: Tensor
    W_xh: Tensor
    W_yh: Tensor
    W_hy: Tensor
    Hs: Tensor                  # h(t)
    Os: Tensor                  # o(t), the output
    Y: Tensor | None            # ŷ(t) = f(o(t)), before the mask (None: identity, ŷ is o)
    states: Tensor | None       # the frozen ŷ after each step, with ragged lengths
    mask: Tensor | None


class _TeacherSaved(NamedTuple):
    xs: Tensor
    targets: Tensor
    y0: Tensor
    W_xh: Tensor
    W_yh: Tensor
    W_hy: Tensor
    Hs: Tensor                  # h(t), (T·B, H)

FEEDBACKS = ("identity", "sigmoid", "softmax")


class FeedbackSequence(Kernel):
    name = "feedback"
    schema = ("Tensor xs, Tensor y0, Tensor W_xh, Tensor W_yh, Tensor? b_h, Tensor W_hy, "
              "Tensor? b_y, Tensor? mask, bool reverse, bool relu, str feedback")
    Saved = _Saved
    from_outputs = {"Os": 0}

    @staticmethod
    def fake(xs, y0, W_xh, W_yh, b_h, W_hy, b_y, mask, reverse, relu, feedback):
        T, B = xs.shape[0], xs.shape[1]
        O, H = W_hy.shape
        Os = xs.new_empty(T, B, O)
        return (Os, y0.new_empty(y0.shape)), {
            "Hs": xs.new_empty(T, B, H),
            "Y": None if feedback == "identity" else torch.empty_like(Os),
            "states": None if mask is None else torch.empty_like(Os)}

    @staticmethod
    def reference(xs, y0, W_xh, W_yh, b_h, W_hy, b_y, mask, reverse, relu, feedback):
        O, H = W_hy.shape
        cell = OutputFeedbackCell(xs.shape[2], H, O, "relu" if relu else "tanh", feedback,
                                  device="meta")
        return unrolled(cell, {"W_xh": W_xh, "W_yh": W_yh, "b_h": b_h, "W_hy": W_hy,
                               "b_y": b_y}, xs, y0, mask, reverse)

    @staticmethod
    def forward(ctx, xs, y0, W_xh, W_yh, b_h, W_hy, b_y, mask, reverse: bool, relu: bool,
                feedback: str):
        T, B, _ = xs.shape
        O, H = W_hy.shape
        # tanh through the sigmoid (tanh(a) = 2σ(2a) - 1, where that is faster): the inner 2
        # goes into W_xh, b_h, W_yh and the outer 2s - 1 into W_hy, b_y, so a step runs
        # s(t) = σ(2a(t)) alone and o(t) = 2 W_hy s(t) + b_y - W_hy 1; h = 2s - 1 after the loop
        fold = not relu and sigmoid_tanh(xs.new_empty(B, H))
        k = 2.0 if fold else 1.0
        A = input_projection(xs, W_xh * k if fold else W_xh,     # (T, B, H): W_xh x(t) + b_h
                             b_h * k if fold and b_h is not None else b_h)
        W_yhT = (W_yh.t() * k).contiguous()      # (O, H)
        W_hyT = (W_hy.t() * k).contiguous()      # (H, O)
        if fold:
            b_y = W_hy.sum(1).neg_() if b_y is None else b_y - W_hy.sum(1)
        act_ = torch.sigmoid_ if fold else (torch.relu_ if relu else tanh_)
        Os = xs.new_empty(T, B, O)               # o(t), zero past a sequence's length
        identity = feedback == "identity"
        Y = Os if identity else xs.new_empty(T, B, O)       # ŷ(t) = f(o(t)), before the mask
        a_t, o_t, y_t = A.unbind(0), Os.unbind(0), Y.unbind(0)
        states, s_t, m_t = frozen_states(Os, mask)          # state after each step, if ragged
        y = y0
        for t in steps(T, reverse):
            h = act_(a_t[t].addmm_(y, W_yhT))                       # h(t) (or σ(2a(t)))
            if b_y is None:
                o = torch.mm(h, W_hyT, out=o_t[t])                  # o(t) = W_hy h(t) + b_y
            else:
                o = torch.addmm(b_y, h, W_hyT, out=o_t[t])
            if feedback == "sigmoid":
                torch.sigmoid(o, out=y_t[t])                        # ŷ(t) = f(o(t))
            elif feedback == "softmax":
                torch.softmax(o, -1, out=y_t[t])
            if m_t is None:
                y = y_t[t]
            else:                                                   # frozen past its length
                y = torch.where(m_t[t], y_t[t], y, out=s_t[t])
                o.mul_(m_t[t])                                      # (identity: after ŷ's copy)
        if fold:
            A.mul_(2.0).sub_(1.0)                                   # h = 2s - 1
        save(ctx, _Saved(xs, y0, W_xh, W_yh, W_hy, A, Os, None if identity else Y, states, mask),
             Options(reverse, relu, feedback))
        return Os, y.clone()

    @staticmethod
    def backward(ctx, d_os, d_yT):
        s, opts, need = unpack(ctx)
        y0, W_yh, W_hy, Hs = s.y0, s.W_yh, s.W_hy, s.Hs
        Y = s.Os if s.Y is None else s.Y                            # ŷ(t) (identity: o(t))
        T, B, _ = s.xs.shape
        H, O = W_yh.shape
        feedback = opts.feedback
        # ∇o(t) accumulates in place on a copy of ∂L/∂o(t) (one bulk copy, no per-step bias)
        dO = torch.zeros(T, B, O, dtype=Hs.dtype, device=Hs.device) if d_os is None \
            else d_os.clone(memory_format=torch.contiguous_format)
        # ∇a(t) is built in place on act'(a(t)) for all steps at once (relu: 1[h > 0])
        dA = (Hs > 0).to(Hs.dtype) if opts.relu else torch.addcmul(
            torch.ones_like(Hs[:1]), Hs, Hs, value=-1.0)
        dA_t, dO_t = dA.unbind(0), dO.unbind(0)
        if feedback == "sigmoid":
            s_t = torch.addcmul(Y, Y, Y, value=-1.0).unbind(0)         # ŷ(1 - ŷ)
        if feedback == "softmax":
            yh_t = Y.unbind(0)
        m_t = s.mask.to(Hs.dtype).unbind(0) if s.mask is not None else None
        order = backward_steps(T, opts.reverse)
        gy = zeros_if_none(d_yT, y0)                                # ∇ŷ(τ)
        fold = feedback == "identity" and m_t is None               # ∇ŷ(t-1) += into ∇o(t-1)
        if fold:
            dO_t[order[0][0]].add_(gy)
        for t, nxt in order:
            passed_on = None
            if fold:
                pass                                                # dO_t[t] is ∇o(t) already
            elif feedback == "identity":
                dO_t[t].add_(gy)                                    # ∇o = ∂L/∂o + ∇ŷ
            elif feedback == "sigmoid":
                dO_t[t].addcmul_(gy, s_t[t])                        # ∂L/∂o + ŷ(1-ŷ) ⊙ ∇ŷ
            else:                                                   # ∂L/∂o + ŷ ⊙ (∇ŷ - ⟨∇ŷ, ŷ⟩)
                dot = torch.linalg.vecdot(gy, yh_t[t]).unsqueeze_(-1)
                dO_t[t].addcmul_(yh_t[t], gy - dot)
            if m_t is not None:                                     # frozen steps: m ∇o, and
                dO_t[t].mul_(m_t[t])                                # (1 - m) ∇ŷ passes on
                passed_on = torch.addcmul(gy, gy, m_t[t], value=-1.0)
            dA_t[t].mul_(dO_t[t] @ W_hy)                            # ∇a = act' ⊙ W_hyᵀ ∇o
            if fold and nxt is not None:                            # ∇ŷ(t-1) = W_yhᵀ ∇a
                gy = dO_t[nxt].addmm_(dA_t[t], W_yh)                #   (+ ∂L/∂o(t-1))
            elif passed_on is None:
                gy = dA_t[t] @ W_yh
            else:
                gy = torch.addmm(passed_on, dA_t[t], W_yh)
        # parameter gradients: one GEMM each over all T·B rows
        dO2 = dO.view(T * B, O)
        d_xs, d_Wxh, d_bh = input_grads(dA, s.xs, s.W_xh, need.xs, need.W_xh, need.b_h)
        d_Wyh = None
        if need.W_yh:                  # Σ_t ∇a(t) ŷ(t-1)ᵀ: ŷ(t-1) is y0 at the first step run
            after = states_after(Y, s.states)                       # the state after each step
            first, rest, prev = (T - 1, slice(0, T - 1), slice(1, T)) if opts.reverse else (
                0, slice(1, T), slice(0, T - 1))
            d_Wyh = torch.addmm(dA_t[first].t() @ y0, dA[rest].reshape(-1, H).t(),
                                after[prev].reshape(-1, O))
        d_Why = dO2.t() @ Hs.view(T * B, H) if need.W_hy else None
        d_by = dO2.sum(0) if need.b_y else None
        return grads(need, xs=d_xs, y0=gy, W_xh=d_Wxh, W_yh=d_Wyh, b_h=d_bh, W_hy=d_Why,
                     b_y=d_by)


def feedback_kernel(cell, xs: Tensor, y0: Tensor, mask: Tensor | None, reverse: bool):
    """Fused free-running sequence for :class:`rnnlab.OutputFeedbackCell`:
    (T, B, I) -> (os (T, B, O), ŷ (B, O))."""
    return FeedbackSequence.apply(xs, y0, cell.W_xh, cell.W_yh, cell.b_h, cell.W_hy, cell.b_y,
                                  mask, reverse, cell.nonlinearity == "relu", cell.feedback)


class TeacherForced(Kernel):
    """o(t) for every t at once with y(t-1) given (y0, then the targets): a = W_xh x + b_h
    + W_yh y(t-1) (GEMMs into one buffer, no concatenated copy of the targets), h = act(a)
    in place, o = W_hy h + b_y; the backward written out."""

    name = "teacher_forced"
    schema = ("Tensor xs, Tensor targets, Tensor y0, Tensor W_xh, Tensor W_yh, Tensor? b_h, "
              "Tensor W_hy, Tensor? b_y, bool relu")
    Saved = _TeacherSaved
    outputs = 1

    @staticmethod
    def fake(xs, targets, y0, W_xh, W_yh, b_h, W_hy, b_y, relu):
        T, B = xs.shape[0], xs.shape[1]
        O, H = W_hy.shape
        return xs.new_empty(T, B, O), {"Hs": xs.new_empty(T * B, H)}

    @staticmethod
    def reference(xs, targets, y0, W_xh, W_yh, b_h, W_hy, b_y, relu):
        """:meth:`rnnlab.OutputFeedbackCell.teacher_forced`'s plain ops."""
        prev = torch.cat([y0.unsqueeze(0), targets[:-1]])                  # y(t-1)
        a = nn.functional.linear(xs, W_xh, b_h) + nn.functional.linear(prev, W_yh)
        return nn.functional.linear(torch.relu(a) if relu else torch.tanh(a), W_hy, b_y)

    @staticmethod
    def forward(ctx, xs, targets, y0, W_xh, W_yh, b_h, W_hy, b_y, relu: bool):
        T, B, I = xs.shape
        O, H = W_hy.shape
        A = input_projection(xs, W_xh, b_h)                        # (T, B, H)
        A[0].addmm_(y0, W_yh.t())                                  # y(-1) = y0
        if T > 1:
            A[1:].view(-1, H).addmm_(targets[:-1].reshape(-1, O), W_yh.t())
        Hs = (torch.relu_ if relu else tanh_)(A.view(T * B, H))    # h(t), (T·B, H)
        out = torch.mm(Hs, W_hy.t()) if b_y is None else torch.addmm(b_y, Hs, W_hy.t())
        save(ctx, _TeacherSaved(xs, targets, y0, W_xh, W_yh, W_hy, Hs), Options(relu=relu))
        return out.view(T, B, O)

    @staticmethod
    def backward(ctx, d_o):
        s, opts, need = unpack(ctx)
        xs, targets, y0, W_yh, Hs = s.xs, s.targets, s.y0, s.W_yh, s.Hs
        T, B, _ = xs.shape
        O, H = s.W_hy.shape
        dO = d_o.reshape(T * B, O)
        dA = dO @ s.W_hy                                           # ∇h = W_hyᵀ ∇o
        if opts.relu:
            dA.mul_(Hs > 0)
        else:
            dA.mul_(torch.addcmul(torch.ones_like(Hs[:1]), Hs, Hs, value=-1.0))  # 1 - h²
        dA3 = dA.view(T, B, H)
        d_xs, d_Wxh, d_bh = input_grads(dA3, xs, s.W_xh, need.xs, need.W_xh, need.b_h)
        d_tg = None
        if need.targets:                                                # y(t) feeds step t + 1
            d_tg = torch.zeros_like(targets)
            if T > 1:
                torch.mm(dA3[1:].reshape(-1, H), W_yh, out=d_tg[:-1].view(-1, O))
        d_y0 = dA3[0] @ W_yh if need.y0 else None
        d_Wyh = None
        if need.W_yh:
            d_Wyh = dA3[0].t() @ y0
            if T > 1:
                d_Wyh.addmm_(dA3[1:].reshape(-1, H).t(), targets[:-1].reshape(-1, O))
        d_Why = dO.t() @ Hs if need.W_hy else None
        d_by = dO.sum(0) if need.b_y else None
        return grads(need, xs=d_xs, targets=d_tg, y0=d_y0, W_xh=d_Wxh, W_yh=d_Wyh, b_h=d_bh,
                     W_hy=d_Why, b_y=d_by)


def teacher_forced_kernel(cell, xs: Tensor, targets: Tensor, y0: Tensor | None = None) -> Tensor:
    """:meth:`rnnlab.OutputFeedbackCell.teacher_forced` as one autograd Function:
    xs (T, B, I), targets (T, B, O), y0 (B, O) or zeros -> o (T, B, O)."""
    if y0 is None:
        y0 = targets.new_zeros(targets.shape[1:])
    return TeacherForced.apply(xs, targets, y0, cell.W_xh, cell.W_yh, cell.b_h, cell.W_hy,
                               cell.b_y, cell.nonlinearity == "relu")
