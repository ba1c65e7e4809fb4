"""The linear recurrence h(t) = a(t) ⊙ h(t-1) + b(t) over (T, B, H), sequential and
parallel over time, with hand-written backward; and the kernel of the cells built on it
(minGRU, minLSTM: Feng et al. 2024, arXiv 2410.01201, section 3.3 on the parallel scan).

Forward, t = 1..T (reverse: h(t) = a(t) ⊙ h(t+1) + b(t), t = T..1, h(T+1) = h0):

    h(t) = a(t) ⊙ h(t-1) + b(t)              h(0) = h0

Backward is the same recurrence run the other way, with a shifted by one step:

    ∇h(t) = ∂L/∂h(t) + a(t+1) ⊙ ∇h(t+1)      ∇h(T+1) = 0
    ∇b(t) = ∇h(t)
    ∇a(t) = ∇h(t) ⊙ h(t-1)
    ∇h(0) = a(1) ⊙ ∇h(1)

Two ways to run it:

- sequential: one in-place ``addcmul`` per step into a preallocated buffer; T ops, each
  over the B·H channels;
- chunked (a two-level parallel scan): split the T steps into n chunks of L; (1) scan every
  chunk at once from a zero state, keeping only its end value e(k), and take the product
  p(k) of its a's; (2) carry the state across chunks, c(k+1) = p(k) ⊙ c(k) + e(k) (n steps);
  (3) rescan every chunk at once from its true initial state c(k). About 2L + n ops, each
  over n·B·H elements, instead of T ops over B·H: with L ≈ √(T/2) that is 2√(2T) ops.
  Step (3) rescans rather than fixing up h with cumulative products of a, which would need
  another (T, B, H) buffer and more memory traffic. The steps past n·L run sequentially.

A Hillis–Steele doubling scan (log2 T rounds, each over all T·B·H elements) does
log2 T ≈ 12 times the work at T = 4096; on 1-2 CPU cores the work, not the op count, then
sets the time, so the chunked scan is the parallel method here.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ._common import Kernel, Options, grads, save, steps, unpack

__all__ = ["linear_scan", "linear_kernel", "SequentialScan", "ChunkedScan"]


def _sequential(a: Tensor, b: Tensor, h0: Tensor, reverse: bool, out: Tensor | None = None):
    """h(t) = a(t) ⊙ h(t∓1) + b(t) one step at a time, into ``out`` (T, B, H)."""
    out = torch.empty_like(b) if out is None else out
    a_t, b_t, h_t = a.unbind(0), b.unbind(0), out.unbind(0)   # views made once
    h = h0
    for t in steps(a.shape[0], reverse):
        h = torch.addcmul(b_t[t], a_t[t], h, out=h_t[t])       # h(t) = a(t) ⊙ h(t-1) + b(t)
    return out


def chunk_length(T: int) -> int:
    """L ≈ √(T/2) minimises the op count 2L + T/L of the chunked scan."""
    return max(1, round(math.sqrt(T / 2)))


def _chunked(a: Tensor, b: Tensor, h0: Tensor, reverse: bool, chunk: int | None = None):
    """The chunked parallel scan (module docstring), same result as :func:`_sequential`."""
    T = a.shape[0]
    L = chunk or chunk_length(T)
    n = T // L
    if n < 2:
        return _sequential(a, b, h0, reverse)
    hs = torch.empty_like(b)
    m = n * L                                        # steps in whole chunks; the rest run last
    main = slice(T - m, T) if reverse else slice(0, m)
    A, Bc, O = (x[main].view(n, L, *x.shape[1:]) for x in (a, b, hs))   # (n, L, B, H)
    order = list(steps(L, reverse))                  # positions within a chunk, in scan order
    first, rest = order[0], order[1:]
    # (1) every chunk from a zero state at once: its end value e (n, B, H) and Π a
    e = Bc[:, first].clone()
    for l in rest:
        torch.addcmul(Bc[:, l], A[:, l], e, out=e)   # e = a(l) ⊙ e + b(l)
    p = A.prod(dim=1)
    # (2) the state entering each chunk: c(k+1) = p(k) ⊙ c(k) + e(k)
    c = torch.empty_like(e)
    c_k, p_k, e_k = c.unbind(0), p.unbind(0), e.unbind(0)
    chunks = list(steps(n, reverse))
    c_k[chunks[0]].copy_(h0)
    for k, k_next in zip(chunks, chunks[1:]):
        torch.addcmul(e_k[k], p_k[k], c_k[k], out=c_k[k_next])
    # (3) rescan every chunk at once from its initial state
    torch.addcmul(Bc[:, first], A[:, first], c, out=O[:, first])
    prev = first
    for l in rest:
        torch.addcmul(Bc[:, l], A[:, l], O[:, prev], out=O[:, l])
        prev = l
    if m < T:                                        # the steps past the whole chunks
        tail = slice(0, T - m) if reverse else slice(m, T)
        _sequential(a[tail], b[tail], hs[T - m] if reverse else hs[m - 1], reverse, hs[tail])
    return hs


def _next_a(a: Tensor, reverse: bool) -> Tensor:
    """a(t+1) at t (a(t-1) in reverse), 0 past the end: the coefficient of the backward."""
    shifted = torch.zeros_like(a)
    if reverse:
        shifted[1:] = a[:-1]
    else:
        shifted[:-1] = a[1:]
    return shifted


class _Saved(NamedTuple):
    a: Tensor
    h0: Tensor
    hs: Tensor                  # h(t)


def _parameter_grads(need, reverse: bool, a: Tensor, h0: Tensor, hs: Tensor, dh: Tensor):
    """The gradients by name (:func:`._common.grads`): ∇a, ∇b, ∇h0 from ∇h (T, B, H) of
    every step."""
    d_a = None
    if need.a:
        d_a = torch.empty_like(dh)                            # ∇a(t) = ∇h(t) ⊙ h(t-1)
        if reverse:
            torch.mul(dh[:-1], hs[1:], out=d_a[:-1])
            torch.mul(dh[-1], h0, out=d_a[-1])
        else:
            torch.mul(dh[1:], hs[:-1], out=d_a[1:])
            torch.mul(dh[0], h0, out=d_a[0])
    first = -1 if reverse else 0
    d_h0 = a[first] * dh[first] if need.h0 else None            # ∇h(0) = a(1) ⊙ ∇h(1)
    return grads(need, a=d_a, b=dh, h0=d_h0)                    # ∇b(t) = ∇h(t)


def _reference(a: Tensor, b: Tensor, h0: Tensor, reverse: bool, chunk=None) -> Tensor:
    """The scan in plain differentiable ops, one step at a time (double backward)."""
    hs: list = [None] * a.shape[0]
    h = h0
    for t in steps(a.shape[0], reverse):
        h = hs[t] = a[t] * h + b[t]
    return torch.stack(hs)


def _fake(a: Tensor, b: Tensor, h0: Tensor, reverse: bool, chunk=None):
    return b.new_empty(b.shape), {}


class SequentialScan(Kernel):
    """hs = scan(a, b, h0) one step at a time: (T, B, H) x2, (B, H) -> (T, B, H)."""

    name = "scan"
    schema = "Tensor a, Tensor b, Tensor h0, bool reverse"
    Saved = _Saved
    outputs = 1
    from_outputs = {"hs": 0}
    fake = staticmethod(_fake)
    reference = staticmethod(_reference)

    @staticmethod
    def forward(ctx, a, b, h0, reverse: bool):
        hs = _sequential(a, b, h0, reverse)
        save(ctx, _Saved(a, h0, hs), Options(reverse))
        return hs

    @staticmethod
    def backward(ctx, d_hs):
        (a, h0, hs), opts, need = unpack(ctx)
        dh = d_hs.contiguous().clone()                        # ∇h(t), accumulated in place
        dh_t, a_t = dh.unbind(0), a.unbind(0)
        order = list(steps(a.shape[0], not opts.reverse))
        for t_next, t in zip(order, order[1:]):
            dh_t[t].addcmul_(a_t[t_next], dh_t[t_next])      # ∇h(t) += a(t+1) ⊙ ∇h(t+1)
        return _parameter_grads(need, opts.reverse, a, h0, hs, dh)


class ChunkedScan(Kernel):
    """hs = scan(a, b, h0) by the chunked parallel scan; ``chunk`` = L (None: √(T/2))."""

    name = "chunked_scan"
    schema = "Tensor a, Tensor b, Tensor h0, bool reverse, int? chunk=None"
    Saved = _Saved
    outputs = 1
    from_outputs = {"hs": 0}
    fake = staticmethod(_fake)
    reference = staticmethod(_reference)

    @staticmethod
    def forward(ctx, a, b, h0, reverse: bool, chunk: int | None = None):
        hs = _chunked(a, b, h0, reverse, chunk)
        save(ctx, _Saved(a, h0, hs), Options(reverse, chunk=chunk))
        return hs

    @staticmethod
    def backward(ctx, d_hs):
        (a, h0, hs), opts, need = unpack(ctx)
        # ∇h(t) = ∂L/∂h(t) + a(t+1) ⊙ ∇h(t+1): the same scan, the other way, from 0
        dh = _chunked(_next_a(a, opts.reverse), d_hs.contiguous(), torch.zeros_like(h0),
                      not opts.reverse, opts.chunk)
        return _parameter_grads(need, opts.reverse, a, h0, hs, dh)


# When the chunked scan wins, measured with benchmarks/scan.py (1 thread, float32, a loaded
# 2-core AMD EPYC machine, torch 2.13; benchmarks/RESULTS-scan.md). The scan alone at
# T = 4096, sequential / chunked time, forward and training, in two runs:
#   channels (B·H)   256: 6.1×, 5.0× / 4.3×, 3.6×     1024: 2.2×, 2.1× / 1.7×, 1.6×
#                   2048: 1.4×, 0.84× / 1.2×, 0.71×   4096: 1.05×, 0.44× / 0.86×, 0.87×
# and at T = 256 and 1024 the chunked scan wins at 64-1024 channels (1.5-4.8×). The
# crossover lies between 1024 and 2048 channels, where the two runs disagree: chunked up to
# 1024, the loop above. Below 64 steps the chunked scan saves few ops (2√(2T) against T).
CHUNKED_MAX_CHANNELS = 1024
CHUNKED_MIN_STEPS = 64

METHODS = ("auto", "sequential", "chunked")


def choose_method(T: int, channels: int) -> str:
    """The faster scan for T steps over ``channels`` = B·H elements per step."""
    if T >= CHUNKED_MIN_STEPS and channels <= CHUNKED_MAX_CHANNELS:
        return "chunked"
    return "sequential"


def linear_scan(a: Tensor, b: Tensor, h0: Tensor, reverse: bool = False,
                method: str = "auto") -> Tensor:
    """Every state of h(t) = a(t) ⊙ h(t-1) + b(t), h(0) = h0, differentiable in a, b, h0.

    **Arguments:**
    - ``a``, ``b``: (T, B, H) (any trailing shape, the same for both).
    - ``h0``: (B, H), the state before the first step.
    - ``reverse``: run t = T..1 with h(t) = a(t) ⊙ h(t+1) + b(t) and h(T+1) = h0.
    - ``method``: ``"sequential"``, ``"chunked"`` (parallel over time) or ``"auto"``
      (:func:`choose_method`, by T and B·H).

    **Returns:** hs (T, B, H), h(t) for every t; the final state is ``hs[-1]`` (``hs[0]`` in
    reverse).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if a.shape != b.shape or a.dim() < 1 or a.shape[0] == 0:
        raise ValueError(f"a and b must have the same shape (T, B, H) with T >= 1; got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    if h0.shape != a.shape[1:]:
        raise ValueError(f"h0 must have shape {tuple(a.shape[1:])} (a's without T); got "
                         f"{tuple(h0.shape)}")
    if method == "auto":              # (a compiled or exported graph does not branch on T, B)
        method = ("chunked" if torch.compiler.is_compiling() else
                  choose_method(a.shape[0], a[0].numel()))
    a, b, h0 = a.contiguous(), b.contiguous(), h0.contiguous()
    if method == "sequential":
        return SequentialScan.apply(a, b, h0, reverse)
    return ChunkedScan.apply(a, b, h0, reverse)


def linear_kernel(cell, xs: Tensor, h0: Tensor, mask: Tensor | None, reverse: bool):
    """Kernel for :class:`rnnlab.MinGRUCell` and :class:`rnnlab.MinLSTMCell`:
    xs (T, B, I) -> (ys (T, B, H), h (B, H)).

    Coefficients for all steps from one GEMM, then :func:`linear_scan`. Past a sequence's
    length a = 1 and b = 0, so its state is frozen there, and its outputs are zeroed; in
    reverse the scan starts at T-1, crosses the padding unchanged and reads each sequence's
    valid part backwards from its own last step.
    """
    a, b = cell.coefficients(xs)
    if mask is not None:
        a = a.masked_fill(~mask, 1.0)
        b = b.masked_fill(~mask, 0.0)
    hs = linear_scan(a, b, h0, reverse)
    final = hs[0] if reverse else hs[-1]
    ys = hs if mask is None else hs.masked_fill(~mask, 0.0)
    return ys, final
