"""The gradient triangle for the second set of fused kernels (MGU, GRU with the reset gate
before the product, LSTM with projection, leaky Elman): fused == autograd through the
reference step == float64 gradcheck, with ragged lengths (including 0), both directions,
a given initial state, and bias on and off."""

import itertools

import pytest
import torch
from triangle import random_state, run_layer

import rnnlab
from rnnlab.kernels.gru import GRUBeforeSequence
from rnnlab.kernels.leaky import LeakySequence
from rnnlab.kernels.lstm import LSTMSequence
from rnnlab.kernels.mgu import MGUSequence
from rnnlab.unroll import length_mask, map_state

T, B, I, H, P = 5, 4, 3, 4, 3
RAGGED = torch.tensor([5, 2, 0, 3])
F64 = {"dtype": torch.float64}

def _leaky(cell, learn):
    """A LeakyCell with α spread over (0, 1) per unit, so each unit's ∇ρ differs."""
    leaky = rnnlab.LeakyCell(cell, alpha=0.5, learn_alpha=learn)
    with torch.no_grad():
        leaky.rho.copy_(torch.linspace(-2.0, 2.0, cell.hidden_size, dtype=leaky.rho.dtype))
    return leaky


KERNEL_CELLS = {
    "mgu": lambda bias: rnnlab.MGUCell(I, H, bias=bias, **F64),
    "gru-before": lambda bias: rnnlab.GRUCell(I, H, bias=bias, reset="before", **F64),
    "lstm-proj": lambda bias: rnnlab.LSTMCell(I, H, bias=bias, proj_size=P, **F64),
    "leaky": lambda bias: _leaky(rnnlab.ElmanCell(I, H, bias=bias, **F64), learn=True),
    "leaky-relu": lambda bias: _leaky(rnnlab.ElmanCell(I, H, "relu", bias=bias, **F64),
                                      learn=True),
    "leaky-fixed": lambda bias: _leaky(rnnlab.ElmanCell(I, H, bias=bias, **F64), learn=False),
}


def _assert_same(cell, xs, state, lengths, reverse, rtol=1e-10, atol=1e-12):
    ys_k, st_k, gr_k = run_layer(cell, xs, state, lengths, reverse, use_kernel=True)
    ys_r, st_r, gr_r = run_layer(cell, xs, state, lengths, reverse, use_kernel=False)
    torch.testing.assert_close(ys_k, ys_r, rtol=rtol, atol=atol)
    for a, b in zip(st_k, st_r):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    for a, b in zip(gr_k, gr_r):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name,bias,ragged,reverse",
                         list(itertools.product(KERNEL_CELLS, [True, False], [False, True],
                                                [False, True])))
def test_fused_matches_reference_step(name, bias, ragged, reverse):
    torch.manual_seed(0)
    cell = KERNEL_CELLS[name](bias)
    assert rnnlab.find_kernel(cell) is not None
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(T, B, I, generator=g, requires_grad=True, **F64)
    state = map_state(lambda s: s.requires_grad_(True), random_state(cell, B, g))
    _assert_same(cell, xs, state, RAGGED if ragged else None, reverse)


@pytest.mark.parametrize("name", list(KERNEL_CELLS))
def test_fused_matches_reference_at_size_using_sigmoid_tanh(name):
    """B·H = 16·128 >= 1024: the kernels take tanh(x) = 2σ(2x) - 1."""
    torch.manual_seed(11)
    cell = {"mgu": lambda: rnnlab.MGUCell(6, 128, **F64),
            "gru-before": lambda: rnnlab.GRUCell(6, 128, reset="before", **F64),
            "lstm-proj": lambda: rnnlab.LSTMCell(6, 128, proj_size=64, **F64),
            "leaky": lambda: _leaky(rnnlab.ElmanCell(6, 128, **F64), learn=True),
            "leaky-relu": lambda: _leaky(rnnlab.ElmanCell(6, 128, "relu", **F64), learn=True),
            "leaky-fixed": lambda: _leaky(rnnlab.ElmanCell(6, 128, **F64), learn=False),
            }[name]()
    xs = torch.randn(4, 16, 6, requires_grad=True, **F64)
    lengths = torch.tensor([4, 3, 0, 1] * 4)
    state = map_state(lambda s: s.requires_grad_(True), cell.init_state(16))
    for reverse in (False, True):
        _assert_same(cell, xs, state, lengths, reverse, rtol=1e-9, atol=1e-11)


def _mask(ragged):
    return length_mask(RAGGED, T, B) if ragged else None


def _rand(*shape, g, scale=1.0):
    return (torch.randn(*shape, generator=g, **F64) * scale).requires_grad_(True)


GRID = list(itertools.product([True, False], [False, True], [False, True]))


@pytest.mark.parametrize("bias,ragged,reverse", GRID)
def test_mgu_gradcheck(bias, ragged, reverse):
    g = torch.Generator().manual_seed(2)
    args = (_rand(T, B, I, g=g), _rand(B, H, g=g), _rand(2 * H, I, g=g),
            _rand(2 * H, H, g=g, scale=0.5), _rand(2 * H, g=g) if bias else None)
    mask = _mask(ragged)
    assert torch.autograd.gradcheck(lambda *a: MGUSequence.apply(*a, mask, reverse), args)


@pytest.mark.parametrize("bias,ragged,reverse", GRID)
def test_gru_before_gradcheck(bias, ragged, reverse):
    g = torch.Generator().manual_seed(3)
    args = (_rand(T, B, I, g=g), _rand(B, H, g=g), _rand(3 * H, I, g=g),
            _rand(3 * H, H, g=g, scale=0.5), _rand(3 * H, g=g) if bias else None)
    mask = _mask(ragged)
    assert torch.autograd.gradcheck(lambda *a: GRUBeforeSequence.apply(*a, mask, reverse), args)


@pytest.mark.parametrize("bias,ragged,reverse", GRID)
def test_lstm_proj_gradcheck(bias, ragged, reverse):
    g = torch.Generator().manual_seed(4)
    args = (_rand(T, B, I, g=g), _rand(B, P, g=g), _rand(B, H, g=g), _rand(4 * H, I, g=g),
            _rand(4 * H, P, g=g, scale=0.5), _rand(4 * H, g=g) if bias else None)
    W_hr = _rand(P, H, g=g)
    mask = _mask(ragged)
    assert torch.autograd.gradcheck(
        lambda *a: LSTMSequence.apply(*a[:-1], mask, reverse, a[-1]), (*args, W_hr))


@pytest.mark.parametrize("bias,ragged,reverse,relu",
                         [(*c, relu) for c in GRID for relu in (False, True)])
def test_leaky_gradcheck(bias, ragged, reverse, relu):
    g = torch.Generator().manual_seed(5)
    args = (_rand(T, B, I, g=g), _rand(B, H, g=g), _rand(H, I, g=g),
            _rand(H, H, g=g, scale=0.5), _rand(H, g=g) if bias else None, _rand(H, g=g))
    mask = _mask(ragged)
    assert torch.autograd.gradcheck(
        lambda *a: LeakySequence.apply(*a, mask, reverse, relu), args)


def test_leaky_kernel_only_around_elman():
    assert rnnlab.find_kernel(rnnlab.LeakyCell(rnnlab.ElmanCell(I, H))) is not None
    assert rnnlab.find_kernel(rnnlab.LeakyCell(rnnlab.GRUCell(I, H))) is None
    assert rnnlab.find_kernel(rnnlab.LeakyCell(rnnlab.LSTMCell(I, H))) is None
