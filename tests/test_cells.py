"""Cells, the reference time loop and the layers: equations, ragged lengths, reverse,
gradcheck through every reference step, a user's custom cell, and bad input."""

import itertools
from typing import NamedTuple

import pytest
import torch
from torch import nn

import rnnlab
from rnnlab.unroll import map_state

T, B, I, H = 6, 3, 3, 4
D64 = {"dtype": torch.float64}

ALL_CELLS = {
    "tanh": lambda: rnnlab.ElmanCell(I, H, **D64),
    "relu": lambda: rnnlab.ElmanCell(I, H, "relu", **D64),
    "lstm": lambda: rnnlab.cells.LSTMCell(I, H, **D64),
    "lstm-proj": lambda: rnnlab.cells.LSTMCell(I, H, proj_size=2, **D64),
    "gru": lambda: rnnlab.cells.GRUCell(I, H, **D64),
    "gru-before": lambda: rnnlab.cells.GRUCell(I, H, reset="before", **D64),
    "mgu": lambda: rnnlab.MGUCell(I, H, **D64),
    "leaky": lambda: rnnlab.LeakyCell(rnnlab.ElmanCell(I, H, **D64), 0.7, learn_alpha=True),
    "leaky-lstm": lambda: rnnlab.LeakyCell(rnnlab.cells.LSTMCell(I, H, **D64), 0.3),
    "feedback": lambda: rnnlab.OutputFeedbackCell(I, H, 2, feedback="softmax", **D64),
}


def _flat(state):
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("name,reverse", list(itertools.product(ALL_CELLS, [False, True])))
def test_reference_step_gradcheck_ragged(name, reverse):
    torch.manual_seed(0)
    cell = ALL_CELLS[name]()
    xs = torch.randn(4, 3, I, **D64, requires_grad=True)
    lengths = torch.tensor([4, 0, 2])
    layer = rnnlab.Recurrent(cell, reverse=reverse, use_kernel=False)
    names = [n for n, _ in layer.named_parameters()]

    def f(xs, *params):
        ys, state = torch.func.functional_call(layer, dict(zip(names, params)),
                                               (xs,), {"lengths": lengths})
        return (ys, *_flat(state))

    assert torch.autograd.gradcheck(f, (xs, *layer.parameters()))


@pytest.mark.parametrize("name,reverse", list(itertools.product(ALL_CELLS, [False, True])))
def test_ragged_batch_equals_each_sequence_alone(name, reverse):
    """Past its length a sequence's state is frozen and its outputs are zero; in reverse
    only the valid part is read, backwards from its own end; a length of 0 is legal."""
    torch.manual_seed(1)
    cell = ALL_CELLS[name]()
    lengths = [6, 1, 0]
    xs = torch.randn(T, B, I, **D64)
    ys, state = rnnlab.Recurrent(cell, reverse=reverse)(xs, lengths=torch.tensor(lengths))
    for b, n in enumerate(lengths):
        init = cell.init_state(1)
        if n == 0:
            assert torch.all(ys[:, b] == 0)
            for s, s0 in zip(_flat(state), _flat(init)):
                torch.testing.assert_close(s[b:b + 1], s0)
            continue
        ys_b, state_b = rnnlab.unroll(cell, xs[:n, b:b + 1], reverse=reverse)
        torch.testing.assert_close(ys[:n, b:b + 1], ys_b)
        assert torch.all(ys[n:, b] == 0)
        for s, sb in zip(_flat(state), _flat(state_b)):
            torch.testing.assert_close(s[b:b + 1], sb)


def test_reverse_reads_valid_part_backwards():
    """Reverse over the valid part == forward over the flipped valid part, flipped back."""
    torch.manual_seed(2)
    cell = rnnlab.cells.GRUCell(I, H, **D64)
    xs = torch.randn(T, 1, I, **D64)
    ys_rev, h_rev = rnnlab.unroll(cell, xs, lengths=torch.tensor([4]), reverse=True)
    ys_fwd, h_fwd = rnnlab.unroll(cell, xs[:4].flip(0))
    torch.testing.assert_close(ys_rev[:4], ys_fwd.flip(0))
    torch.testing.assert_close(h_rev, h_fwd)


def test_elman_equation():
    torch.manual_seed(3)
    cell = rnnlab.ElmanCell(I, H, **D64)
    h, x = torch.randn(B, H, **D64), torch.randn(B, I, **D64)
    new, y = cell(h, x)
    a = cell.b_xh + cell.b_hh + x @ cell.W_xh.T + h @ cell.W_hh.T    # eq. 10.8
    torch.testing.assert_close(new, torch.tanh(a))
    assert y is new


def test_lstm_forget_bias_starts_at_one():
    cell = rnnlab.cells.LSTMCell(I, H)
    total = (cell.b_xh + cell.b_hh).detach()
    assert torch.all(total[H:2 * H] == 1.0)


def test_lstm_cell_matches_torch_lstmcell():
    torch.manual_seed(4)
    cell = rnnlab.cells.LSTMCell(I, H, **D64)
    ref = nn.LSTMCell(I, H, **D64)
    ref.load_state_dict({"weight_ih": cell.W_xh, "weight_hh": cell.W_hh,
                         "bias_ih": cell.b_xh, "bias_hh": cell.b_hh})
    x, h, c = (torch.randn(B, n, **D64) for n in (I, H, H))
    (h1, c1), _ = cell(rnnlab.LSTMState(h, c), x)
    h2, c2 = ref(x, (h, c))
    torch.testing.assert_close(h1, h2)
    torch.testing.assert_close(c1, c2)


def test_gru_reset_placements_differ_and_after_matches_torch():
    torch.manual_seed(5)
    after = rnnlab.cells.GRUCell(I, H, **D64)
    before = rnnlab.cells.GRUCell(I, H, reset="before", **D64)
    before.load_state_dict(after.state_dict())
    ref = nn.GRUCell(I, H, **D64)
    ref.load_state_dict({"weight_ih": after.W_xh, "weight_hh": after.W_hh,
                         "bias_ih": after.b_xh, "bias_hh": after.b_hh})
    h, x = torch.randn(B, H, **D64), torch.randn(B, I, **D64)
    torch.testing.assert_close(after(h, x)[0], ref(x, h))
    assert not torch.allclose(after(h, x)[0], before(h, x)[0])


def test_mgu_equation():
    torch.manual_seed(6)
    cell = rnnlab.MGUCell(I, H, **D64)
    h, x = torch.randn(B, H, **D64), torch.randn(B, I, **D64)
    W, U, b = cell.W_xh, cell.W_hh, cell.b_xh + cell.b_hh
    f = torch.sigmoid(x @ W[:H].T + h @ U[:H].T + b[:H])
    n = torch.tanh(x @ W[H:].T + (f * h) @ U[H:].T + b[H:])
    torch.testing.assert_close(cell(h, x)[0], (1 - f) * h + f * n)


def test_leaky_unit_is_running_average():
    torch.manual_seed(7)
    inner = rnnlab.ElmanCell(I, H, **D64)
    cell = rnnlab.LeakyCell(inner, alpha=0.9, learn_alpha=True)
    h, x = torch.randn(B, H, **D64), torch.randn(B, I, **D64)
    new, y = cell(h, x)
    torch.testing.assert_close(new, 0.9 * h + 0.1 * inner(h, x)[0])
    new.sum().backward()
    assert cell.rho.grad is not None and cell.rho.grad.shape == (H,)
    fixed = rnnlab.LeakyCell(rnnlab.ElmanCell(I, H), alpha=0.9)
    assert "rho" not in dict(fixed.named_parameters())


def test_output_feedback_teacher_forcing_and_free_running():
    torch.manual_seed(8)
    O = 2
    cell = rnnlab.OutputFeedbackCell(I, H, O, **D64)
    xs = torch.randn(T, B, I, **D64)
    targets = torch.randn(T, B, O, **D64)
    forced = cell.teacher_forced(xs, targets)                  # all steps at once
    prev = torch.zeros(B, O, **D64)
    for t in range(T):                                         # one step at a time
        torch.testing.assert_close(forced[t], cell(prev, xs[t])[1])
        prev = targets[t]
    # free-running: the model's own output is fed back (identity feedback)
    ys, last = rnnlab.unroll(cell, xs)
    torch.testing.assert_close(last, ys[-1])
    torch.testing.assert_close(ys[1], cell(ys[0], xs[1])[1])
    with pytest.raises(ValueError, match=r"targets must have shape \(T, B, 2\)"):
        cell.teacher_forced(xs, targets[..., :1])


class PeepholeFreeMinimal(NamedTuple):
    h: torch.Tensor
    m: torch.Tensor


class CustomCell(rnnlab.Cell):
    """A user's cell with a structured state, written only against the cell contract."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.lin = nn.Linear(input_size + hidden_size, 2 * hidden_size)

    def init_state(self, batch_size, device=None, dtype=None):
        z = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return PeepholeFreeMinimal(z, z)

    def forward(self, state, x):
        a, b = self.lin(torch.cat([x, state.h], -1)).chunk(2, -1)
        m = 0.5 * state.m + torch.tanh(a)
        h = torch.sigmoid(b) * torch.tanh(m)
        return PeepholeFreeMinimal(h, m), h


def test_custom_cell_trains_bidirectional_stacked_ragged():
    torch.manual_seed(9)
    model = rnnlab.Stack([
        rnnlab.Bidirectional(rnnlab.Recurrent(CustomCell(2, 8)),
                             rnnlab.Recurrent(CustomCell(2, 8), reverse=True)),
        rnnlab.Recurrent(CustomCell(16, 8)),
    ], dropout=0.1)
    head = nn.Linear(8, 1)
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-2)
    xs = torch.randn(7, 16, 2)
    lengths = torch.randint(0, 8, (16,))
    target = xs[..., 0].clamp(min=0).sum(0, keepdim=True).T       # (B, 1)
    losses = []
    for _ in range(60):
        ys, states = model(xs, lengths=lengths)
        loss = ((head(states[-1].h) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    ys, states = model.eval()(xs, lengths=lengths)
    assert ys.shape == (7, 16, 8) and len(states) == 2 and isinstance(states[0], tuple)
    past = torch.arange(7)[:, None] >= lengths[None, :]
    assert torch.all(ys[past] == 0)


def test_stack_build_every_named_cell():
    for name in rnnlab.CELL_NAMES:
        stack = rnnlab.Stack.build(name, 3, 5, num_layers=2, bidirectional=True)
        ys, states = stack(torch.randn(4, 2, 3), lengths=[4, 1])
        assert ys.shape == (4, 2, 10) and len(states) == 2
    with pytest.raises(ValueError, match="unknown cell 'lstn'; valid cells: rnn, relu"):
        rnnlab.Stack.build("lstn", 3, 5)


def test_carried_state_equals_one_long_run():
    torch.manual_seed(10)
    layer = rnnlab.Recurrent(rnnlab.cells.LSTMCell(I, H))
    xs = torch.randn(10, B, I)
    ys, _ = layer(xs)
    y1, s = layer(xs[:4])
    y2, _ = layer(xs[4:], s)
    torch.testing.assert_close(torch.cat([y1, y2]), ys)


@pytest.mark.parametrize("use_kernel", [True, False])
def test_bad_input_errors(use_kernel):
    layer = rnnlab.Recurrent(rnnlab.cells.LSTMCell(3, 4), use_kernel=use_kernel)
    x = torch.randn(5, 2, 3)
    cases = [
        ((torch.randn(5, 3),), {}, r"expected input of shape \(T, B, 3\).*2-D tensor"),
        ((torch.randn(5, 2, 7),), {}, r"expected 3 input features.*\(5, 2, 7\)"),
        ((torch.randn(5, 0, 3),), {}, r"empty batch"),
        ((torch.randn(0, 2, 3),), {}, r"empty sequence"),
        ((x,), {"lengths": torch.tensor([6, 1])}, r"must lie in \[0, T\] = \[0, 5\]; got 6"),
        ((x,), {"lengths": torch.tensor([-1, 1])}, r"got -1"),
        ((x,), {"lengths": torch.tensor([1, 1, 1])}, r"lengths must have shape \(2,\)"),
    ]
    for args, kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg):
            layer(*args, **kwargs)
    with pytest.raises(TypeError, match="lengths must be integers"):
        layer(x, lengths=torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="floating-point input"):
        layer(torch.ones(5, 2, 3, dtype=torch.long))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        rnnlab.cells.LSTMCell(3, 0)
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        rnnlab.ElmanCell(3, 4, "sigmoid")
    with pytest.raises(ValueError, match="reset must be 'after' or 'before'"):
        rnnlab.cells.GRUCell(3, 4, reset="middle")
    with pytest.raises(ValueError, match="alpha must lie in"):
        rnnlab.LeakyCell(rnnlab.ElmanCell(3, 4), alpha=1.0)
    with pytest.raises(ValueError, match="layer sizes do not chain"):
        rnnlab.Stack([rnnlab.Recurrent(rnnlab.cells.GRUCell(3, 4)),
                      rnnlab.Recurrent(rnnlab.cells.GRUCell(5, 4))])


def test_state_map_over_namedtuple():
    s = rnnlab.LSTMState(torch.ones(1), torch.zeros(1))
    out = map_state(lambda a: a + 1, s)
    assert isinstance(out, rnnlab.LSTMState) and out.c.item() == 1.0
