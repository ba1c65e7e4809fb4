"""Layer-normalised LSTM / GRU (rnnlab.cells.norm) and their fused kernels
(rnnlab.kernels.lnorm): the gradient triangle (fused == autograd through the reference step
== float64 gradcheck) with bias on/off, ragged lengths (including 0), both directions, one
and several backward chunks, a bidirectional Stack; per-row statistics; training through
the CLI."""

import itertools
import json

import pytest
import torch
from triangle import assert_fused_matches_reference, random_state

import rnnlab
from rnnlab.cli import main
from rnnlab.kernels import lnorm
from rnnlab.kernels.lnorm import LNGRUSequence, LNLSTMSequence
from rnnlab.unroll import length_mask, map_state

T, B, I, H = 5, 4, 3, 4
RAGGED = torch.tensor([5, 2, 0, 3])
F64 = {"dtype": torch.float64}
CELLS = {"ln-lstm": rnnlab.LayerNormLSTMCell, "ln-gru": rnnlab.LayerNormGRUCell}


def _cell(name, input_size, hidden, bias=True, dtype=torch.float64, seed=0):
    """A cell with every gain and shift moved off its initial value, so each matters."""
    torch.manual_seed(seed)
    cell = rnnlab.make_cell(name, input_size, hidden, bias=bias, dtype=dtype)
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return cell


def _assert_same(cell, xs, state, lengths, reverse, rtol, atol):
    assert_fused_matches_reference(cell, xs, state, lengths, reverse, rtol, atol)


def test_names_kernels_and_parameters():
    lstm, gru = rnnlab.make_cell("ln-lstm", 3, 4), rnnlab.make_cell("ln-gru", 3, 4)
    assert {"ln-lstm", "ln-gru"} <= set(rnnlab.CELL_NAMES)
    assert isinstance(lstm, rnnlab.LayerNormLSTMCell) and isinstance(gru, rnnlab.LayerNormGRUCell)
    assert rnnlab.find_kernel(lstm) is lnorm.ln_lstm_kernel
    assert rnnlab.find_kernel(gru) is lnorm.ln_gru_kernel
    assert dict(lstm.named_parameters()).keys() == {"W_xh", "W_hh", "b_xh", "b_hh", "g_xh",
                                                    "g_hh", "g_c", "b_c"}
    assert dict(gru.named_parameters()).keys() == {"W_xh", "W_hh", "b_xh", "b_hh", "g_xh",
                                                   "g_hh"}
    assert lstm.W_xh.shape == (16, 3) and gru.W_hh.shape == (12, 4)
    assert torch.all(lstm.b_xh[4:8] == 1) and torch.all(lstm.g_c == 1)    # forget bias
    no_bias = rnnlab.LayerNormLSTMCell(3, 4, bias=False, eps=1e-3)
    assert no_bias.b_xh is None and no_bias.b_c is None and no_bias.eps == 1e-3
    for bad in (0, -1e-5, "1e-5", True):
        with pytest.raises(ValueError, match="eps must be a positive number"):
            rnnlab.LayerNormGRUCell(3, 4, eps=bad)


@pytest.mark.parametrize("name", list(CELLS))
def test_reference_step_follows_the_equations(name):
    """The reference step against the LN formulas written out with mean and variance."""
    cell = _cell(name, I, H)
    x, h, c = (torch.randn(B, n, **F64) for n in (I, H, H))

    def ln(z, g, b):
        mu, var = z.mean(-1, keepdim=True), z.var(-1, unbiased=False, keepdim=True)
        return g * (z - mu) / torch.sqrt(var + cell.eps) + b

    ax, ah = ln(x @ cell.W_xh.T, cell.g_xh, cell.b_xh), ln(h @ cell.W_hh.T, cell.g_hh, cell.b_hh)
    with torch.no_grad():
        if name == "ln-lstm":
            i, f, g, o = (ax + ah).chunk(4, -1)
            c_new = f.sigmoid() * c + i.sigmoid() * g.tanh()
            h_new = o.sigmoid() * ln(c_new, cell.g_c, cell.b_c).tanh()
            (h_out, c_out), y = cell(rnnlab.LSTMState(h, c), x)
            torch.testing.assert_close(c_out, c_new)
        else:
            (xr, xz, xn), (hr, hz, hn) = ax.chunk(3, -1), ah.chunk(3, -1)
            r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
            h_new = (1 - z) * (xn + r * hn).tanh() + z * h
            h_out, y = cell(h, x)
    torch.testing.assert_close(h_out, h_new)
    torch.testing.assert_close(y, h_new)


@pytest.mark.parametrize("name,bias,ragged,reverse,chunk",
                         list(itertools.product(CELLS, [True, False], [False, True],
                                                [False, True], ["one", "many"])))
def test_fused_matches_reference_step(name, bias, ragged, reverse, chunk, monkeypatch):
    """Float64, tiny: equal to rounding. "many": the backward runs in chunks of 1-2 steps."""
    if chunk == "many":
        monkeypatch.setattr(lnorm, "CHUNK_ELEMENTS", 2 * B * 4 * H - 1)
    cell = _cell(name, I, H, bias)
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(T, B, I, generator=g, requires_grad=True, **F64)
    state = map_state(lambda s: s.requires_grad_(True), random_state(cell, B, g))
    _assert_same(cell, xs, state, RAGGED if ragged else None, reverse, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", list(CELLS))
def test_fused_matches_reference_float32_at_size(name):
    """Float32, B·H = 16·64 (the kernels' σ-based tanh paths), ragged lengths and both
    directions. A random initial state: at h(0) = 0 the recurrent LN sees a zero-variance
    row, ρ = 1/sqrt(eps) amplifies float32 rounding in ∇h(0) ~300-fold in either path."""
    cell = _cell(name, 8, 64, dtype=torch.float32, seed=3)
    xs = torch.randn(12, 16, 8, requires_grad=True)
    lengths = torch.tensor([12, 7, 0, 1] * 4)
    for reverse, lens in ((False, None), (True, None), (False, lengths), (True, lengths)):
        state = map_state(lambda s: s.requires_grad_(True),
                          random_state(cell, 16, torch.Generator().manual_seed(2)))
        _assert_same(cell, xs, state, lens, reverse, rtol=2e-4, atol=2e-5)


def _rand(*shape, g, scale=1.0):
    return (torch.randn(*shape, generator=g, **F64) * scale).requires_grad_(True)


GRID = list(itertools.product([True, False], [False, True], [False, True]))


@pytest.mark.parametrize("bias,ragged,reverse", GRID)
def test_ln_lstm_gradcheck(bias, ragged, reverse):
    g = torch.Generator().manual_seed(4)
    args = (_rand(T, B, I, g=g), _rand(B, H, g=g), _rand(B, H, g=g), _rand(4 * H, I, g=g),
            _rand(4 * H, H, g=g), 1 + _rand(4 * H, g=g, scale=0.3),
            1 + _rand(4 * H, g=g, scale=0.3), _rand(4 * H, g=g) if bias else None,
            1 + _rand(H, g=g, scale=0.3), _rand(H, g=g) if bias else None)
    mask = length_mask(RAGGED, T, B) if ragged else None
    assert torch.autograd.gradcheck(
        lambda *a: LNLSTMSequence.apply(*a, mask, reverse, 1e-5), args)


@pytest.mark.parametrize("bias,ragged,reverse", GRID)
def test_ln_gru_gradcheck(bias, ragged, reverse):
    g = torch.Generator().manual_seed(5)
    args = (_rand(T, B, I, g=g), _rand(B, H, g=g), _rand(3 * H, I, g=g), _rand(3 * H, H, g=g),
            1 + _rand(3 * H, g=g, scale=0.3), 1 + _rand(3 * H, g=g, scale=0.3),
            _rand(3 * H, g=g) if bias else None, _rand(3 * H, g=g) if bias else None)
    mask = length_mask(RAGGED, T, B) if ragged else None
    assert torch.autograd.gradcheck(
        lambda *a: LNGRUSequence.apply(*a, mask, reverse, 1e-5), args)


@pytest.mark.parametrize("name", list(CELLS))
def test_bidirectional_stack_fused_equals_reference(name):
    torch.manual_seed(6)
    fused = rnnlab.Stack.build(name, 3, 5, num_layers=2, bidirectional=True, **F64)
    ref = rnnlab.Stack.build(name, 3, 5, num_layers=2, bidirectional=True, use_kernel=False,
                             **F64)
    ref.load_state_dict(fused.state_dict())
    xs = torch.randn(6, 4, 3, **F64)
    lengths = torch.tensor([6, 3, 1, 0])
    outs = []
    for model in (fused, ref):
        x = xs.clone().requires_grad_(True)
        ys, _ = model(x, lengths=lengths)
        (ys * torch.linspace(-1, 1, ys.numel(), **F64).view_as(ys)).sum().backward()
        outs.append((ys.detach(), x.grad, [p.grad for p in model.parameters()]))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-10, atol=1e-12)
    for a, b in zip(outs[0][2], outs[1][2]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("use_kernel", [True, False])
def test_statistics_are_per_row(name, use_kernel):
    """A batch row's outputs and gradients do not depend on the other rows: LN normalises
    each row over its features, never over the batch."""
    cell = _cell(name, I, 6)
    layer = rnnlab.Recurrent(cell, use_kernel=use_kernel)
    xs = torch.randn(T, 3, I, **F64)
    other = xs.clone()
    other[:, 1:] = 10 * torch.randn(T, 2, I, **F64)          # rows 1, 2 changed, far off
    x_alone = xs[:, :1].clone().requires_grad_(True)
    ys_alone, _ = layer(x_alone)
    ys_alone.sum().backward()
    for batch in (xs, other):
        x = batch.clone().requires_grad_(True)
        ys, _ = layer(x)
        ys[:, 0].sum().backward()
        torch.testing.assert_close(ys[:, :1].detach(), ys_alone.detach(), rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(x.grad[:, :1], x_alone.grad, rtol=1e-12, atol=1e-13)
        assert torch.all(x.grad[:, 1:] == 0)


@pytest.mark.parametrize("cell", ["ln-lstm", "ln-gru"])
def test_train_char_lm_through_cli(cell, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 20, encoding="utf-8")
    code = main(["train", "char-lm", "--data", str(text), "--out", str(tmp_path / "run"),
                 "--json", "--set", "train.threads=1", "train.device=cpu", f"model.cell={cell}",
                 "train.steps=3", "model.hidden=16", "model.embed=8", "data.seq_len=16",
                 "train.eval_every=3"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 < result["valid_bpc"] < 10 and 0 < result["test_bpc"] < 10
