"""Layer-normalised LSTM / GRU (rnnlab.cells.norm) and their fused kernels
(rnnlab.kernels.lnorm): names and parameters, the reference step against the equations, a
bidirectional Stack, per-row statistics, training through the CLI. The gradient triangle
(bias on/off, ragged, both directions, one and several backward chunks, float32 at size)
is in tests/test_triangle.py."""

import json

import pytest
import torch
from tolerances import F64

import rnnlab
from rnnlab.cli import main
from rnnlab.kernels import lnorm

T, B, I, H = 5, 4, 3, 4
DOUBLE = {"dtype": torch.float64}
CELLS = {"ln-lstm": rnnlab.LayerNormLSTMCell, "ln-gru": rnnlab.LayerNormGRUCell}


def _cell(name, input_size, hidden, bias=True, dtype=torch.float64, seed=0):
    """A cell with every gain and shift moved off its initial value, so each matters."""
    torch.manual_seed(seed)
    cell = rnnlab.make_cell(name, input_size, hidden, bias=bias, dtype=dtype)
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return cell


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
    x, h, c = (torch.randn(B, n, **DOUBLE) for n in (I, H, H))

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


@pytest.mark.parametrize("name", list(CELLS))
def test_bidirectional_stack_fused_equals_reference(name):
    torch.manual_seed(6)
    fused = rnnlab.Stack.build(name, 3, 5, num_layers=2, bidirectional=True, **DOUBLE)
    ref = rnnlab.Stack.build(name, 3, 5, num_layers=2, bidirectional=True, use_kernel=False,
                             **DOUBLE)
    ref.load_state_dict(fused.state_dict())
    xs = torch.randn(6, 4, 3, **DOUBLE)
    lengths = torch.tensor([6, 3, 1, 0])
    outs = []
    for model in (fused, ref):
        x = xs.clone().requires_grad_(True)
        ys, _ = model(x, lengths=lengths)
        (ys * torch.linspace(-1, 1, ys.numel(), **DOUBLE).view_as(ys)).sum().backward()
        outs.append((ys.detach(), x.grad, [p.grad for p in model.parameters()]))
    torch.testing.assert_close(outs[0][0], outs[1][0], **F64)
    torch.testing.assert_close(outs[0][1], outs[1][1], **F64)
    for a, b in zip(outs[0][2], outs[1][2]):
        torch.testing.assert_close(a, b, **F64)


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("use_kernel", [True, False], ids=["fused", "reference"])
def test_statistics_are_per_row(name, use_kernel):
    """A batch row's outputs and gradients do not depend on the other rows: LN normalises
    each row over its features, never over the batch."""
    cell = _cell(name, I, 6)
    layer = rnnlab.Recurrent(cell, use_kernel=use_kernel)
    xs = torch.randn(T, 3, I, **DOUBLE)
    other = xs.clone()
    other[:, 1:] = 10 * torch.randn(T, 2, I, **DOUBLE)          # rows 1, 2 changed, far off
    x_alone = xs[:, :1].clone().requires_grad_(True)
    ys_alone, _ = layer(x_alone)
    ys_alone.sum().backward()
    for batch in (xs, other):
        x = batch.clone().requires_grad_(True)
        ys, _ = layer(x)
        ys[:, 0].sum().backward()
        torch.testing.assert_close(ys[:, :1].detach(), ys_alone.detach(), **F64)
        torch.testing.assert_close(x.grad[:, :1], x_alone.grad, **F64)
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
