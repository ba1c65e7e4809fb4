"""The gradient triangle for every fused kernel: fused == autograd through the reference
step == float64 gradcheck, with ragged lengths (including 0) and in both directions."""

import itertools

import pytest
import torch
from triangle import flat, random_state, run_layer

import rnnlab
from rnnlab.kernels.elman import ElmanSequence
from rnnlab.kernels.gru import GRUSequence
from rnnlab.kernels.lstm import LSTMSequence
from rnnlab.unroll import length_mask, map_state

T, B, I, H = 5, 4, 3, 4
RAGGED = torch.tensor([5, 2, 0, 3])

KERNEL_CELLS = {
    "tanh": lambda: rnnlab.ElmanCell(I, H, "tanh", dtype=torch.float64),
    "relu": lambda: rnnlab.ElmanCell(I, H, "relu", dtype=torch.float64),
    "tanh-nobias": lambda: rnnlab.ElmanCell(I, H, "tanh", bias=False, dtype=torch.float64),
    "lstm": lambda: rnnlab.LSTMCell(I, H, dtype=torch.float64),
    "lstm-nobias": lambda: rnnlab.LSTMCell(I, H, bias=False, dtype=torch.float64),
    "gru": lambda: rnnlab.GRUCell(I, H, dtype=torch.float64),
    "gru-nobias": lambda: rnnlab.GRUCell(I, H, bias=False, dtype=torch.float64),
}


@pytest.mark.parametrize("name,ragged,reverse",
                         list(itertools.product(KERNEL_CELLS, [False, True], [False, True])))
def test_fused_matches_reference_step(name, ragged, reverse):
    torch.manual_seed(0)
    cell = KERNEL_CELLS[name]()
    assert rnnlab.find_kernel(cell) is not None
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(T, B, I, dtype=torch.float64, generator=g, requires_grad=True)
    state = random_state(cell, B, g)
    for s in flat(state):
        s.requires_grad_(True)
    lengths = RAGGED if ragged else None
    ys_k, st_k, gr_k = run_layer(cell, xs, state, lengths, reverse, use_kernel=True)
    ys_r, st_r, gr_r = run_layer(cell, xs, state, lengths, reverse, use_kernel=False)
    torch.testing.assert_close(ys_k, ys_r, rtol=1e-12, atol=1e-12)
    for a, b in zip(st_k, st_r):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for a, b in zip(gr_k, gr_r):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _mask(ragged):
    return length_mask(RAGGED, T, B) if ragged else None


def _rand(*shape, g):
    return torch.randn(*shape, dtype=torch.float64, generator=g, requires_grad=True)


@pytest.mark.parametrize("relu,ragged,reverse",
                         list(itertools.product([False, True], [False, True], [False, True])))
def test_elman_gradcheck(relu, ragged, reverse):
    g = torch.Generator().manual_seed(2)
    args = (_rand(T, B, I, g=g), _rand(B, H, g=g), _rand(H, I, g=g), _rand(H, H, g=g) * 0.5,
            _rand(H, g=g))
    mask = _mask(ragged)
    assert torch.autograd.gradcheck(
        lambda *a: ElmanSequence.apply(*a, mask, reverse, relu), args)


@pytest.mark.parametrize("ragged,reverse", list(itertools.product([False, True], [False, True])))
def test_lstm_gradcheck(ragged, reverse):
    g = torch.Generator().manual_seed(3)
    args = (_rand(T, B, I, g=g), _rand(B, H, g=g), _rand(B, H, g=g), _rand(4 * H, I, g=g),
            _rand(4 * H, H, g=g), _rand(4 * H, g=g))
    mask = _mask(ragged)
    assert torch.autograd.gradcheck(lambda *a: LSTMSequence.apply(*a, mask, reverse), args)


@pytest.mark.parametrize("ragged,reverse", list(itertools.product([False, True], [False, True])))
def test_gru_gradcheck(ragged, reverse):
    g = torch.Generator().manual_seed(4)
    args = (_rand(T, B, I, g=g), _rand(B, H, g=g), _rand(3 * H, I, g=g), _rand(3 * H, H, g=g),
            _rand(3 * H, g=g), _rand(H, g=g))
    mask = _mask(ragged)
    assert torch.autograd.gradcheck(lambda *a: GRUSequence.apply(*a, mask, reverse), args)


def test_kernel_skips_unneeded_input_gradient():
    cell = rnnlab.LSTMCell(I, H)
    xs = torch.randn(T, B, I)                      # no requires_grad: no d_xs GEMM
    ys, _ = rnnlab.Recurrent(cell)(xs)
    ys.sum().backward()
    assert cell.W_xh.grad is not None and xs.grad is None


def test_kernel_dispatch_by_options():
    assert rnnlab.find_kernel(rnnlab.LSTMCell(I, H, proj_size=2)) is not None
    assert rnnlab.find_kernel(rnnlab.GRUCell(I, H, reset="before")) is not None
    assert rnnlab.find_kernel(rnnlab.MGUCell(I, H)) is not None
    assert rnnlab.find_kernel(rnnlab.GRUCell(I, H)) is not None


def test_float32_kernel_close_to_reference():
    torch.manual_seed(0)
    cell = rnnlab.LSTMCell(8, 16)
    xs = torch.randn(20, 3, 8)
    a, _ = rnnlab.Recurrent(cell)(xs, lengths=torch.tensor([20, 7, 1]))
    b, _ = rnnlab.Recurrent(cell, use_kernel=False)(xs, lengths=torch.tensor([20, 7, 1]))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["tanh", "lstm", "gru"])
def test_fused_matches_reference_at_size_using_sigmoid_tanh(name):
    """Blocks of >= 1024 elements take tanh(x) = 2σ(2x) - 1 inside the kernels."""
    torch.manual_seed(11)
    make = {"tanh": rnnlab.ElmanCell, "lstm": rnnlab.LSTMCell, "gru": rnnlab.GRUCell}[name]
    cell = make(6, 128, dtype=torch.float64)
    xs = torch.randn(4, 16, 6, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 3, 0, 1] * 4)
    state = map_state(lambda s: s.requires_grad_(True), cell.init_state(16))
    for reverse in (False, True):
        ys_k, st_k, gr_k = run_layer(cell, xs, state, lengths, reverse, use_kernel=True)
        ys_r, st_r, gr_r = run_layer(cell, xs, state, lengths, reverse, use_kernel=False)
        torch.testing.assert_close(ys_k, ys_r, rtol=1e-10, atol=1e-12)
        for a, b in zip([*st_k, *gr_k], [*st_r, *gr_r]):
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
