"""The output-to-hidden recurrence (book Fig. 10.4, rnnlab.kernels.feedback) beyond the
gradient triangle (that is in tests/test_triangle.py, every feedback function and
nonlinearity): a loss that reads only the outputs or only the final state; teacher forcing
(the cell's autograd version and the kernel's Function) against a loop that feeds the
targets, and gradcheck of its Function."""

import pytest
import torch
from cases import flag, product
from tolerances import F64

import rnnlab
from rnnlab.kernels.feedback import (
    FEEDBACKS,
    TeacherForced,
    teacher_forced_kernel,
)

T, B, I, H, O = 5, 4, 3, 6, 3
RAGGED = torch.tensor([5, 2, 0, 3])
DOUBLE = {"dtype": torch.float64}
ACTS = ("tanh", "relu")


def _cell(feedback, act, bias=True, dtype=torch.float64, sizes=(I, H, O)):
    return rnnlab.OutputFeedbackCell(*sizes, nonlinearity=act, feedback=feedback, bias=bias,
                                     dtype=dtype)


def test_only_outputs_or_only_the_state_reach_the_loss():
    """A missing upstream gradient (outputs unused, or the final state unused) is zero."""
    torch.manual_seed(3)
    for feedback in FEEDBACKS:
        cell = _cell(feedback, "tanh")
        xs = torch.randn(T, B, I, requires_grad=True, **DOUBLE)
        for pick in (0, 1):
            got = [rnnlab.Recurrent(cell, use_kernel=k)(xs, lengths=RAGGED)[pick].sum()
                   for k in (True, False)]
            for a, b in zip(*(torch.autograd.grad(v, [xs, *cell.parameters()]) for v in got)):
                torch.testing.assert_close(a, b, **F64)


def _rand(*shape, g, scale=1.0):
    return (torch.randn(*shape, generator=g, **DOUBLE) * scale).requires_grad_(True)


@pytest.mark.parametrize("act,bias", product({a: a for a in ACTS}, flag("", off="nobias")))
def test_teacher_forced_gradcheck(act, bias):
    g = torch.Generator().manual_seed(4)
    for t in (4, 1):
        args = (_rand(t, 3, 2, g=g), _rand(t, 3, 3, g=g), _rand(3, 3, g=g), _rand(5, 2, g=g),
                _rand(5, 3, g=g), _rand(5, g=g) if bias else None, _rand(3, 5, g=g),
                _rand(3, g=g) if bias else None)
        assert torch.autograd.gradcheck(lambda *a: TeacherForced.apply(*a, act == "relu"), args)


def _targets_loop(cell, xs, targets, y0):
    """The reference for teacher forcing: one step at a time, feeding y(t-1) = target."""
    os, prev = [], y0
    for x, y in zip(xs.unbind(0), targets.unbind(0)):
        os.append(cell(prev, x)[1])
        prev = y
    return torch.stack(os)


@pytest.mark.parametrize("feedback,act,bias", product({f: f for f in FEEDBACKS},
                                                      {a: a for a in ACTS},
                                                      flag("", off="nobias")))
def test_teacher_forced_equals_a_loop_feeding_the_targets(feedback, act, bias):
    torch.manual_seed(5)
    cell = _cell(feedback, act, bias)
    xs = torch.randn(T, B, I, requires_grad=True, **DOUBLE)
    targets = torch.randn(T, B, O, **DOUBLE)
    if feedback == "softmax":                                  # one-hot targets
        targets = torch.nn.functional.one_hot(torch.randint(O, (T, B)), O).to(xs.dtype)
    targets.requires_grad_(True)
    y0 = torch.randn(B, O, requires_grad=True, **DOUBLE)
    up = torch.randn(T, B, O, **DOUBLE)
    inputs = [xs, targets, y0, *cell.parameters()]
    ref = _targets_loop(cell, xs, targets, y0)
    ref_grads = torch.autograd.grad((ref * up).sum(), inputs)
    for forced in (cell.teacher_forced(xs, targets, y0),
                   rnnlab.Recurrent(cell).teacher_forced(xs, targets, y0),
                   teacher_forced_kernel(cell, xs, targets, y0)):
        torch.testing.assert_close(forced, ref, **F64)
        for a, b in zip(torch.autograd.grad((forced * up).sum(), inputs), ref_grads):
            torch.testing.assert_close(a, b, **F64)
    zero = teacher_forced_kernel(cell, xs, targets)            # y0 = 0 by default
    torch.testing.assert_close(zero, cell.teacher_forced(xs, targets), **F64)


@pytest.mark.parametrize("feedback", FEEDBACKS)
def test_teacher_forcing_on_the_models_own_predictions_is_the_free_run(feedback):
    """Fed its own ŷ(t-1) as the targets, teacher forcing reproduces the fused free run."""
    torch.manual_seed(6)
    cell = _cell(feedback, "tanh")
    xs = torch.randn(T, B, I, **DOUBLE)
    y0 = torch.randn(B, O, **DOUBLE)
    with torch.no_grad():
        os, last = rnnlab.Recurrent(cell)(xs, y0)
        own = {"identity": os, "sigmoid": torch.sigmoid(os), "softmax": os.softmax(-1)}[feedback]
        torch.testing.assert_close(own[-1], last)
        for forced in (cell.teacher_forced(xs, own, y0), teacher_forced_kernel(cell, xs, own, y0)):
            torch.testing.assert_close(forced, os, **F64)
