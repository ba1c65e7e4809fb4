"""Recurrent dropout (Gal & Ghahramani 2016) and zoneout (Krueger et al. 2017): the fused
kernels give the reference loop's values and gradients under the same masks, the masks
come from torch's generator (reproducible from a seed), and evaluation is deterministic."""

import pytest
import torch
from triangle import flat, random_state, run_layer

import rnnlab
from rnnlab.kernels import find_kernel
from rnnlab.layers import Recurrent
from rnnlab.unroll import state_fields

REG_CELLS = ["rnn", "relu", "lstm", "lstm-proj", "gru", "gru-before", "mgu", "leaky-rnn",
             "ln-lstm", "ln-gru"]
SETTINGS = [dict(recurrent_dropout=0.3), dict(zoneout=0.25),
            dict(recurrent_dropout=0.4, zoneout=0.2)]


def make(name, I, H, dtype=torch.float32):
    if name == "lstm-proj":
        return rnnlab.cells.LSTMCell(I, H, proj_size=H // 2).to(dtype)
    return rnnlab.make_cell(name, I, H).to(dtype)


def run(cell, xs, state, lengths, reverse, use_kernel, seed, **reg):
    return run_layer(cell, xs, state, lengths, reverse, use_kernel, seed=seed, **reg)


def close(a, b, tol):
    assert (a is None) == (b is None)
    if a is not None:
        scale = max(1.0, b.abs().max().item())
        assert (a - b).abs().max().item() <= tol * scale


@pytest.mark.parametrize("name", REG_CELLS)
@pytest.mark.parametrize("reg", SETTINGS, ids=["drop", "zone", "both"])
@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_kernel_matches_reference_under_the_same_masks(name, reg, ragged, reverse):
    g = torch.Generator().manual_seed(0)
    T, B, I, H = 7, 4, 5, 6
    cell = make(name, I, H)
    assert cell.regularizable and find_kernel(cell) is not None, f"{name}: no fused path"
    xs = torch.randn(T, B, I, generator=g, requires_grad=True)
    state = random_state(cell, B, g)
    for s in flat(state):
        s.requires_grad_(True)
    lengths = torch.tensor([7, 3, 0, 5]) if ragged else None
    fused = run(cell, xs, state, lengths, reverse, True, 11, **reg)
    ref = run(cell, xs, state, lengths, reverse, False, 11, **reg)
    close(fused[0], ref[0], 1e-5)
    for a, b in zip(fused[1], ref[1]):
        close(a, b, 1e-5)
    for a, b in zip(fused[2], ref[2]):
        close(a, b, 1e-4)
    if ragged:                                             # outputs past a length are 0
        assert fused[0][3:, 1].abs().max() == 0 and fused[0][:, 2].abs().max() == 0


@pytest.mark.parametrize("name", REG_CELLS)
@pytest.mark.parametrize("ragged", [False, True])
def test_kernel_gradcheck_with_fixed_masks(name, ragged):
    """float64 gradcheck of the fused kernel itself with drawn masks held fixed."""
    g = torch.Generator().manual_seed(1)
    T, B, I, H = 4, 3, 3, 4
    cell = make(name, I, H, torch.float64)
    kernel = find_kernel(cell)
    state = random_state(cell, B, g)
    mask = (torch.arange(T)[:, None] < torch.tensor([4, 2, 3])[None, :]).unsqueeze(-1) \
        if ragged else None
    drop = torch.bernoulli(torch.full((B, cell.output_size), 0.7, dtype=torch.float64),
                           generator=g) / 0.7
    zone = tuple(torch.bernoulli(torch.full((T, B, s.shape[-1]), 0.3, dtype=torch.float64),
                                 generator=g) for s in state_fields(state))
    xs = torch.randn(T, B, I, dtype=torch.float64, generator=g)

    def fn(xs, *fields):
        st = type(state)(*fields) if isinstance(state, tuple) else fields[0]
        ys, final = kernel(cell, xs, st, mask, ragged, drop=drop, zone=zone)
        return (ys, *flat(final))

    # w.r.t. the input and the state; the parameters in the triangle test above and below
    inputs = (xs.requires_grad_(True), *[s.clone().requires_grad_(True) for s in flat(state)])
    assert torch.autograd.gradcheck(fn, inputs)


def test_parameter_gradcheck_lstm_with_masks():
    g = torch.Generator().manual_seed(2)
    T, B = 4, 3
    cell = rnnlab.cells.LSTMCell(3, 4).double()
    state = random_state(cell, B, g)
    drop = torch.bernoulli(torch.full((B, 4), 0.6, dtype=torch.float64), generator=g) / 0.6
    zone = tuple(torch.bernoulli(torch.full((T, B, 4), 0.3, dtype=torch.float64), generator=g)
                 for _ in range(2))
    xs = torch.randn(T, B, 3, dtype=torch.float64, generator=g)
    kernel = find_kernel(cell)

    def fn(W_xh, W_hh, b_xh):
        cell.W_xh, cell.W_hh, cell.b_xh = W_xh, W_hh, b_xh
        ys, (h, c) = kernel(cell, xs, state, None, True, drop=drop, zone=zone)
        return ys, h, c

    params = [cell.W_xh.detach().clone().requires_grad_(True),
              cell.W_hh.detach().clone().requires_grad_(True),
              cell.b_xh.detach().clone().requires_grad_(True)]
    del cell.W_xh, cell.W_hh, cell.b_xh
    assert torch.autograd.gradcheck(fn, params)


def test_masks_are_reproducible_from_the_seed_and_differ_across_calls():
    layer = Recurrent(rnnlab.cells.LSTMCell(3, 8), recurrent_dropout=0.5, zoneout=0.3)
    xs = torch.randn(6, 4, 3)
    torch.manual_seed(5)
    a = layer(xs)[0]
    b = layer(xs)[0]
    torch.manual_seed(5)
    c = layer(xs)[0]
    assert torch.equal(a, c) and not torch.equal(a, b)
    torch.manual_seed(5)
    drop, zone = layer.masks(6, 4, layer.cell.init_state(4), xs)
    assert drop.shape == (4, 8) and set(drop.unique().tolist()) <= {0.0, 2.0}
    assert [z.shape for z in zone] == [(6, 4, 8), (6, 4, 8)]
    assert set(torch.cat([z.flatten() for z in zone]).unique().tolist()) <= {0.0, 1.0}


def test_eval_is_deterministic_and_uses_the_zoneout_expectation():
    cell = rnnlab.ElmanCell(3, 5)
    layer = Recurrent(cell, recurrent_dropout=0.5, zoneout=0.25).eval()
    xs = torch.randn(4, 2, 3)
    ys, h = layer(xs)
    assert torch.equal(ys, layer(xs)[0])
    # reference: no dropout; h = 0.25 h(t-1) + 0.75 tanh(...)
    h_ref, outs = torch.zeros(2, 5), []
    for x in xs:
        h_ref = 0.25 * h_ref + 0.75 * cell(h_ref, x)[0]
        outs.append(h_ref)
    torch.testing.assert_close(ys, torch.stack(outs))


def test_zoneout_one_keeps_the_state_and_dropout_zero_is_plain():
    cell = rnnlab.cells.GRUCell(3, 4)
    xs = torch.randn(5, 2, 3)
    plain = Recurrent(cell)(xs)[0]
    torch.testing.assert_close(Recurrent(cell, recurrent_dropout=0.0)(xs)[0], plain)
    layer = Recurrent(cell, zoneout=0.999999)          # nearly always keeps h(t-1)
    torch.manual_seed(0)
    ys, h = layer(xs, torch.ones(2, 4))
    assert (ys - 1).abs().max() < 1e-3 or (ys == 1).float().mean() > 0.99


def test_bad_rates_and_cells_are_refused():
    cell = rnnlab.cells.LSTMCell(3, 4)
    with pytest.raises(ValueError, match=r"recurrent_dropout must be a number in \[0, 1\)"):
        Recurrent(cell, recurrent_dropout=1.0)
    with pytest.raises(ValueError, match="zoneout must be"):
        Recurrent(cell, zoneout=-0.1)
    with pytest.raises(ValueError, match="one per state field"):
        Recurrent(cell, zoneout=(0.1, 0.2, 0.3))
    fb = rnnlab.OutputFeedbackCell(3, 4, 2)
    with pytest.raises(ValueError, match="OutputFeedbackCell is not one"):
        Recurrent(fb, zoneout=0.1)


def test_stack_build_passes_the_regularizers_to_every_layer():
    stack = rnnlab.Stack.build("lstm", 3, 8, num_layers=2, bidirectional=True,
                               recurrent_dropout=0.25, zoneout=0.1)
    layers = [d for layer in stack.layers for d in (layer.fwd, layer.bwd)]
    assert all(r.recurrent_dropout == 0.25 and r.zoneout == (0.1, 0.1) for r in layers)
    ys, _ = stack(torch.randn(5, 2, 3), lengths=torch.tensor([5, 2]))
    assert ys.shape == (5, 2, 16)


def test_char_lm_trains_with_recurrent_dropout_and_zoneout(tmp_path):
    from rnnlab.cli import main

    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    out = tmp_path / "run"
    assert main(["train", "char-lm", "--data", str(text), "--out", str(out), "--set",
                 "model.hidden=16", "model.embed=8", "model.recurrent_dropout=0.25",
                 "model.zoneout=0.1", "train.steps=3", "train.eval_every=3",
                 "data.seq_len=12"]) == 0
    assert main(["evaluate", str(out)]) == 0


@pytest.mark.parametrize("sets, message", [
    (["model.recurrent_dropout=1.5"], r"model.recurrent_dropout=1.5.*must be a number in \[0, 1\)"),
    (["model.zoneout=0.1", "model.cell=dt-lstm"], "need a cell whose output is its state"),
])
def test_word_lm_refuses_bad_regularizers(tmp_path, capsys, sets, message):
    from rnnlab.cli import main

    data = tmp_path / "ptb"
    data.mkdir()
    for split in ("train", "valid", "test"):
        (data / f"ptb.{split}.txt").write_text("a b c d\n b c d a\n" * 5)
    assert main(["train", "word-lm", "--data", str(data), "--out", str(tmp_path / "r"),
                 "--set", *sets, "train.steps=1"]) == 2
    assert __import__("re").search(message, capsys.readouterr().err)


@pytest.mark.parametrize("reg", [{}, dict(recurrent_dropout=0.3, zoneout=0.2)],
                         ids=["plain", "regularized"])
def test_lstm_kernel_where_tanh_c_is_recomputed_in_backward(reg):
    """B·H >= 8192: the LSTM kernel recomputes tanh(c) in backward instead of keeping it."""
    from rnnlab.kernels import lstm

    g = torch.Generator().manual_seed(3)
    T, B, I, H = 3, 32, 4, 256
    assert B * H >= lstm._KEEP_TANH_C_MAX
    cell = rnnlab.cells.LSTMCell(I, H)
    xs = torch.randn(T, B, I, generator=g, requires_grad=True)
    state = random_state(cell, B, g)
    for s in flat(state):
        s.requires_grad_(True)
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    fused = run(cell, xs, state, lengths, False, True, 5, **reg)
    ref = run(cell, xs, state, lengths, False, False, 5, **reg)
    close(fused[0], ref[0], 1e-5)
    for a, b in zip(fused[2], ref[2]):
        close(a, b, 1e-4)


def test_checking_the_regularizers_leaves_the_seed_alone():
    """The config check builds a throwaway layer; the model built after it must get the same
    weights as without the check (same seed, same figures)."""
    from rnnlab.tasks.base import check_regularizers
    from rnnlab.tasks.char_lm import CharLMModel

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    check_regularizers(CharLMModel(recurrent_dropout=0.25, zoneout=0.1))
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)
