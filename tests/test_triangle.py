"""The gradient triangle of every fused kernel, from one table: for each kernel family and
option (a row of ``ROWS``), with bias on and off, ragged lengths (including 0) or none, in
both directions, from a random initial state,

* fused kernel == autograd through the reference step (:func:`rnnlab.unroll`), float64 to
  rounding (``F64``) and float32 to ``F32`` (tests/tolerances.py);
* fused kernel == ``torch.autograd.gradcheck`` (float64, finite differences) w.r.t. the
  input, the initial state and every parameter: over the whole product in fast mode (a
  random projection of the Jacobian, analytical against numerical), and the full Jacobian
  at a smaller size with every option on and with every option off;

and, at a size whose blocks take the kernels' σ-based tanh (B·H >= 1024), fused ==
reference in float64 and float32. Kernel-specific checks (dispatch, recompute chunks,
memory, teacher forcing, the scan functions) stay in the kernel's own test file."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from cases import flag, product
from tolerances import F32, F64
from triangle import assert_fused_gradcheck, assert_fused_matches_reference, random_state

import rnnlab
from rnnlab.kernels import lnorm, scan
from rnnlab.unroll import map_state

T, B, I, H = 5, 4, 3, 4
RAGGED = torch.tensor([5, 2, 0, 3])
O = 3                                        # output size of the feedback cells


@dataclass
class Row:
    """One kernel family / option: ``make(input, hidden, bias, dtype)`` -> cell; ``setup``
    (monkeypatch, batch, hidden) forces a kernel-internal choice; ``allow_none``: a
    gradient may be None on both paths (an unused parameter)."""

    make: Callable
    setup: Callable | None = None
    allow_none: bool = False


def _leaky(act, learn):
    def make(i, h, bias, dtype):
        leaky = rnnlab.LeakyCell(rnnlab.ElmanCell(i, h, act, bias=bias, dtype=dtype),
                                 alpha=0.5, learn_alpha=learn)
        with torch.no_grad():            # α spread over (0, 1) per unit: each ∇ρ differs
            leaky.rho.copy_(torch.linspace(-2.0, 2.0, h, dtype=dtype))
        return leaky
    return make


def _named(name, **kw):
    return lambda i, h, bias, dtype: rnnlab.make_cell(name, i, h, bias=bias, dtype=dtype, **kw)


def _feedback(feedback, act):
    return Row(lambda i, h, bias, dtype: rnnlab.OutputFeedbackCell(
        i, h, O, nonlinearity=act, feedback=feedback, bias=bias, dtype=dtype), allow_none=True)


def _many_chunks(monkeypatch, b, h):
    """The LN kernels' backward in chunks of 1-2 steps (recomputing the forward)."""
    monkeypatch.setattr(lnorm, "CHUNK_ELEMENTS", 2 * b * 4 * h - 1)


def _scan_method(method):
    def setup(monkeypatch, b, h):
        monkeypatch.setattr(scan, "choose_method", lambda steps, channels: method)
    return setup


ROWS = {
    "elman-tanh": Row(lambda i, h, bias, dtype: rnnlab.ElmanCell(i, h, "tanh", bias=bias,
                                                                 dtype=dtype)),
    "elman-relu": Row(lambda i, h, bias, dtype: rnnlab.ElmanCell(i, h, "relu", bias=bias,
                                                                 dtype=dtype)),
    "lstm": Row(lambda i, h, bias, dtype: rnnlab.cells.LSTMCell(i, h, bias=bias, dtype=dtype)),
    "lstm-proj": Row(lambda i, h, bias, dtype: rnnlab.cells.LSTMCell(
        i, h, bias=bias, proj_size=3 * h // 4, dtype=dtype)),
    "gru-after": Row(lambda i, h, bias, dtype: rnnlab.cells.GRUCell(i, h, bias=bias, dtype=dtype)),
    "gru-before": Row(lambda i, h, bias, dtype: rnnlab.cells.GRUCell(
        i, h, bias=bias, reset="before", dtype=dtype)),
    "mgu": Row(lambda i, h, bias, dtype: rnnlab.MGUCell(i, h, bias=bias, dtype=dtype)),
    "leaky-tanh": Row(_leaky("tanh", learn=True)),
    "leaky-relu": Row(_leaky("relu", learn=True)),
    "leaky-fixed": Row(_leaky("tanh", learn=False)),
    "ln-lstm": Row(_named("ln-lstm")),
    "ln-lstm-chunked": Row(_named("ln-lstm"), setup=_many_chunks),
    "ln-gru": Row(_named("ln-gru")),
    "ln-gru-chunked": Row(_named("ln-gru"), setup=_many_chunks),
    **{f"feedback-{fb}-{act}": _feedback(fb, act)
       for fb in ("identity", "sigmoid", "softmax") for act in ("tanh", "relu")},
    **{f"{name}-{method}": Row(_named(name), setup=_scan_method(method))
       for name in ("min-gru", "min-lstm") for method in ("sequential", "chunked")},
}


def test_the_table_covers_every_kernel():
    """Every kernel that find_kernel can return has a row."""
    covered = {rnnlab.find_kernel(row.make(I, H, True, torch.float64)) for row in ROWS.values()}
    assert None not in covered
    assert covered == {getattr(rnnlab.kernels, k) for k in rnnlab.kernels.__all__
                       if k.endswith("_kernel") and k != "find_kernel"}


def _cell(row, i, h, bias, seed=0):
    """The row's float64 cell with every parameter moved off its initial value (so gains
    of 1 and biases of 0 matter), by 0.6/sqrt(h): 0.3 at the tiny size, and a recurrence
    that stays out of the chaotic regime at h = 128 (where float32 rounding would grow
    without bound and no tolerance would do)."""
    torch.manual_seed(seed)
    cell = row.make(i, h, bias, torch.float64)
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.6 / math.sqrt(h) * torch.randn_like(p))
    assert rnnlab.Recurrent(cell).path == "fused"
    return cell


def _inputs(cell, t, b, i, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(t, b, i, generator=g, dtype=torch.float64)
    state = random_state(cell, b, g)
    return (xs.to(dtype).requires_grad_(True),
            map_state(lambda s: s.to(dtype).requires_grad_(True), state))


def _both_precisions(row, cell, xs, state, lengths, reverse):
    assert_fused_matches_reference(cell, xs, state, lengths, reverse, **F64,
                                   allow_none=row.allow_none)
    cell32 = copy.deepcopy(cell).float()
    xs32 = xs.detach().float().requires_grad_(True)
    state32 = map_state(lambda s: s.detach().float().requires_grad_(True), state)
    assert_fused_matches_reference(cell32, xs32, state32, lengths, reverse, **F32,
                                   allow_none=row.allow_none)


@pytest.mark.parametrize("name,bias,ragged,reverse",
                         product({k: k for k in ROWS}, flag("bias", off="nobias"),
                                 flag("ragged"), flag("reverse")))
def test_triangle(name, bias, ragged, reverse, monkeypatch):
    row = ROWS[name]
    if row.setup:
        row.setup(monkeypatch, B, H)
    cell = _cell(row, I, H, bias)
    xs, state = _inputs(cell, T, B, I, seed=1)
    lengths = RAGGED if ragged else None
    _both_precisions(row, cell, xs, state, lengths, reverse)
    assert_fused_gradcheck(cell, xs, state, lengths, reverse, fast_mode=True)


@pytest.mark.parametrize("name,corner", product(
    {k: k for k in ROWS}, {"bias-ragged-reverse": (True, True, True),
                           "nobias": (False, False, False)}))
def test_full_gradcheck(name, corner, monkeypatch):
    """The whole Jacobian, at T, B, I, H = 4, 3, 2, 3 (lengths 4, 1, 0 when ragged)."""
    bias, ragged, reverse = corner
    row = ROWS[name]
    if row.setup:
        row.setup(monkeypatch, 3, 3)
    cell = _cell(row, 2, 3, bias)
    xs, state = _inputs(cell, 4, 3, 2, seed=3)
    assert_fused_gradcheck(cell, xs, state, torch.tensor([4, 1, 0]) if ragged else None,
                           reverse)


@pytest.mark.parametrize("name,bias", product({k: k for k in ROWS}, flag("bias", off="nobias")))
def test_at_size_using_sigmoid_tanh(name, bias, monkeypatch):
    """B·H = 16·128 >= 1024: the kernels take tanh(x) = 2σ(2x) - 1 (the 2s folded into the
    weights); ragged lengths, both directions."""
    row = ROWS[name]
    if row.setup:
        row.setup(monkeypatch, 16, 128)
    cell = _cell(row, 6, 128, bias, seed=11)
    xs, state = _inputs(cell, 4, 16, 6, seed=2)
    lengths = torch.tensor([4, 3, 0, 1] * 4)
    for reverse in (False, True):
        _both_precisions(row, cell, xs, state, lengths, reverse)
