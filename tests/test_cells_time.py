"""Deep transitions and multiple time scales: the wrappers' equations, gradients through the
reference loop, and the names tasks use."""

import pytest
import torch
from tolerances import F64
from triangle import assert_fused_matches_reference

from rnnlab import ElmanCell, Stack, make_cell, unroll
from rnnlab.cells import LeakyCell, LSTMCell
from rnnlab.cells.time import ClockworkCell, DeepOutputCell, DeepTransitionCell, SkipCell, SkipState
from rnnlab.cli import main

NAMES = ["clockwork", "dt-rnn", "dts2-lstm", "do-gru", "skip3-rnn", "delay3-lstm",
         "dt-skip2-gru"]


@pytest.mark.parametrize("name", NAMES)
def test_named_cells_gradcheck_with_ragged_lengths_both_directions(name):
    torch.manual_seed(0)
    stack = Stack.build(name, 2, 4, bidirectional=True).double()
    xs = torch.randn(6, 3, 2, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 4, 0])
    ys, _ = stack(xs, lengths=lengths)
    assert ys.shape == (6, 3, 8)
    assert ys[4:, 1].abs().sum() == 0 and ys[:, 2].abs().sum() == 0
    torch.autograd.gradcheck(lambda x: stack(x, lengths=lengths)[0], (xs,))


def test_deep_transition_equations():
    torch.manual_seed(0)
    inner = ElmanCell(2, 4)
    for shortcut in (False, True):
        cell = DeepTransitionCell(inner, depth=2, shortcut=shortcut)
        h0, x = torch.randn(3, 4), torch.randn(3, 2)
        h1, _ = inner(h0, x)
        z = torch.tanh(cell.layers[1](torch.tanh(cell.layers[0](h1))))
        new, y = cell(h0, x)
        torch.testing.assert_close(new, h1 + z if shortcut else z)
        torch.testing.assert_close(y, new)
    lstm = DeepTransitionCell(LSTMCell(2, 4))
    state = lstm.init_state(3)
    new, y = lstm(state, x)
    inner_new, _ = lstm.cell(state, x)
    torch.testing.assert_close(new.c, inner_new.c)             # the memory cell untouched
    do = DeepOutputCell(ElmanCell(2, 4))
    new, y = do(torch.zeros(3, 4), x)
    torch.testing.assert_close(new, do.cell(torch.zeros(3, 4), x)[0])
    torch.testing.assert_close(y, torch.tanh(do.layers[0](new)))


def test_delay_only_cell_is_d_interleaved_chains():
    torch.manual_seed(0)
    inner = LSTMCell(2, 5)
    cell = SkipCell(inner, delay=3, unit=False)
    xs = torch.randn(11, 2, 2)
    ys, _ = unroll(cell, xs)
    for r in range(3):
        chain, _ = unroll(inner, xs[r::3])
        torch.testing.assert_close(ys[r::3], chain)


def test_skip_cell_reads_the_state_d_steps_back():
    torch.manual_seed(0)
    cell = SkipCell.build(lambda i, h: ElmanCell(i, h), 2, 4, delay=2)
    xs = torch.randn(5, 1, 2)
    ys, state = unroll(cell, xs)
    hs = [torch.zeros(1, 4)]                         # h(-1) = h(-2) = 0
    inner = cell.cell
    for t in range(5):
        h_delayed = hs[t - 1] if t >= 2 else torch.zeros(1, 4)   # h(t-2), hs[k] = h(k-1)
        hs.append(inner(hs[-1], torch.cat([xs[t], h_delayed], 1))[0])
    torch.testing.assert_close(ys[:, 0], torch.cat(hs[1:]))
    assert isinstance(state, SkipState) and state.history.shape == (1, 8)
    with pytest.raises(ValueError, match="delay must be at least 2"):
        SkipCell(ElmanCell(6, 4), delay=1)


def test_clockwork_modules_update_on_their_period_and_read_slower_ones():
    torch.manual_seed(0)
    cell = ClockworkCell(2, 8, periods=[1, 2, 4, 8])
    xs = torch.randn(9, 1, 2)
    ys, _ = unroll(cell, xs)
    slowest = ys[:, 0, 6:]                               # period 8: updates at t = 0, 8
    for t in range(1, 8):
        torch.testing.assert_close(slowest[t], slowest[0])
    assert not torch.equal(slowest[8], slowest[7])
    ys.sum().backward()
    W = cell.cell.W_hh
    assert W.grad[6:, :6].abs().sum() == 0              # the slow module never reads fast ones
    assert W.grad[:2, 6:].abs().sum() > 0               # fast modules read the slow one


def test_unknown_wrapped_name_lists_the_forms():
    with pytest.raises(ValueError, match="skipD-CELL"):
        make_cell("skip-rnn", 2, 4)
    with pytest.raises(ValueError, match="unknown cell 'nope'"):
        make_cell("dt-nope", 2, 4)


def test_tasks_train_with_wrapped_cells(tmp_path, capsys):
    for name in ("clockwork", "dts-lstm", "skip4-rnn"):      # clockwork: 8 modules of 1
        assert main(["train", "adding", "--out", str(tmp_path / name), "--json", "--set",
                     "train.threads=1", "train.device=cpu", f"model.cell={name}",
                     "model.hidden=8", "data.length=10", "data.valid_size=8",
                     "data.test_size=8", "train.steps=2"]) == 0


def test_stack_skip_connections_feed_the_input_to_every_layer_and_concat_outputs():
    torch.manual_seed(0)
    stack = Stack.build("gru", 3, 4, num_layers=3, skip=True)
    assert [layer.input_size for layer in stack.layers] == [3, 7, 7]
    assert stack.output_size == 12
    xs = torch.randn(5, 2, 3)
    ys, _ = stack(xs)
    y0, _ = stack.layers[0](xs)
    y1, _ = stack.layers[1](torch.cat([y0, xs], -1))
    y2, _ = stack.layers[2](torch.cat([y1, xs], -1))
    torch.testing.assert_close(ys, torch.cat([y0, y1, y2], -1))


# --- leaky units with one time constant per unit (book 10.9.2) -----------------------------


def test_leaky_unit_with_alpha_near_one_holds_its_value_and_alpha_zero_point_five_forgets():
    torch.manual_seed(0)
    alpha = torch.tensor([0.5, 1 - 1e-7], dtype=torch.float64)
    cell = LeakyCell(ElmanCell(3, 2, dtype=torch.float64), alpha)
    h0 = torch.tensor([[0.8, 0.8]], dtype=torch.float64)
    ys, state = unroll(cell, torch.randn(100, 1, 3, dtype=torch.float64), h0)
    assert abs(state[0, 1] - 0.8) < 1e-4                     # τ = 10^7 steps: held
    assert abs(state[0, 0] - 0.8) > 1e-2                     # τ = 2 steps: replaced


def test_leaky_per_unit_alpha_is_the_running_average_unit_by_unit():
    torch.manual_seed(1)
    inner = ElmanCell(3, 4, dtype=torch.float64)
    alpha = LeakyCell.time_constants(4, 100)
    cell = LeakyCell(inner, alpha, learn_alpha=True)
    torch.testing.assert_close(cell.alpha.detach(), alpha.to(torch.float64), **F64)
    h, x = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    new, _ = cell(h, x)
    torch.testing.assert_close(new, alpha * h + (1 - alpha) * inner(h, x)[0], **F64)


def test_time_constants_are_spread_geometrically_and_checked():
    alpha = LeakyCell.time_constants(5, 10000)
    tau = 1 / (1 - alpha)
    torch.testing.assert_close(tau[[0, -1]], torch.tensor([2.0, 10000.0], dtype=torch.float64))
    ratios = tau[1:] / tau[:-1]
    torch.testing.assert_close(ratios, ratios[:1].expand(4))  # geometric
    with pytest.raises(ValueError, match="1 < shortest <= longest"):
        LeakyCell.time_constants(4, 1)
    with pytest.raises(ValueError, match="one value or one per unit"):
        LeakyCell(ElmanCell(2, 4), [0.5, 0.9])
    with pytest.raises(ValueError, match=r"alpha must lie in \(0, 1\)"):
        LeakyCell(ElmanCell(2, 2), [0.5, 1.0])


@pytest.mark.parametrize("reverse", [False, True])
def test_leaky_per_unit_alpha_fused_kernel_matches_reference(reverse):
    torch.manual_seed(2)
    cell = LeakyCell(ElmanCell(3, 4, dtype=torch.float64),
                     LeakyCell.time_constants(4, 50), learn_alpha=True)
    g = torch.Generator().manual_seed(3)
    xs = torch.randn(7, 3, 3, dtype=torch.float64, generator=g).requires_grad_(True)
    state = torch.randn(3, 4, dtype=torch.float64, generator=g).requires_grad_(True)
    assert_fused_matches_reference(cell, xs, state, torch.tensor([7, 4, 0]), reverse, **F64)


def test_leaky_names_set_time_constants_learned_or_fixed():
    learned, fixed = make_cell("leaky300-rnn", 2, 6), make_cell("leakyfix300-rnn", 2, 6)
    for cell in (learned, fixed):
        assert isinstance(cell, LeakyCell) and isinstance(cell.cell, ElmanCell)
        torch.testing.assert_close(1 / (1 - cell.alpha.detach()[[0, -1]]),
                                   torch.tensor([2.0, 300.0]), rtol=1e-3, atol=0)
    assert "rho" in dict(learned.named_parameters())
    assert "rho" not in dict(fixed.named_parameters())
    assert isinstance(make_cell("leakyfix20-lstm", 2, 4).cell, LSTMCell)
    with pytest.raises(ValueError, match="at least 2 steps"):
        make_cell("leaky1-rnn", 2, 4)
