"""The gradient triangle for the output-to-hidden recurrence (book Fig. 10.4,
rnnlab.kernels.feedback): fused == autograd through the reference step (float32 and
float64) == float64 gradcheck, for every feedback function and nonlinearity, bias on and
off, ragged lengths (including 0) and both directions; and teacher forcing (the cell's
autograd version and the kernel's Function) against a loop that feeds the targets."""

import itertools

import pytest
import torch
from triangle import assert_fused_matches_reference, random_state

import rnnlab
from rnnlab.kernels.feedback import (
    FEEDBACKS,
    FeedbackSequence,
    TeacherForced,
    teacher_forced_kernel,
)
from rnnlab.unroll import length_mask, map_state

T, B, I, H, O = 5, 4, 3, 6, 3
RAGGED = torch.tensor([5, 2, 0, 3])
F64 = {"dtype": torch.float64}
ACTS = ("tanh", "relu")


def _cell(feedback, act, bias=True, dtype=torch.float64, sizes=(I, H, O)):
    return rnnlab.OutputFeedbackCell(*sizes, nonlinearity=act, feedback=feedback, bias=bias,
                                     dtype=dtype)


def _assert_same(cell, xs, state, lengths, reverse, rtol, atol):
    assert_fused_matches_reference(cell, xs, state, lengths, reverse, rtol, atol,
                                   allow_none=True)


@pytest.mark.parametrize("feedback,act,bias,ragged,reverse",
                         list(itertools.product(FEEDBACKS, ACTS, [True, False], [False, True],
                                                [False, True])))
def test_fused_matches_reference_step(feedback, act, bias, ragged, reverse):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    for dtype, rtol, atol in ((torch.float32, 1e-5, 1e-6), (torch.float64, 1e-10, 1e-12)):
        cell = _cell(feedback, act, bias, dtype)
        assert rnnlab.find_kernel(cell) is not None
        xs = torch.randn(T, B, I, generator=g, dtype=dtype).requires_grad_(True)
        state = map_state(lambda s: s.requires_grad_(True), random_state(cell, B, g))
        _assert_same(cell, xs, state, RAGGED if ragged else None, reverse, rtol, atol)


@pytest.mark.parametrize("feedback,bias", list(itertools.product(FEEDBACKS, [True, False])))
def test_fused_matches_reference_at_size_using_sigmoid_tanh(feedback, bias):
    """B·H = 16·128 >= 1024: the kernel runs σ(2a) per step, its 2s into the weights."""
    torch.manual_seed(11)
    cell = _cell(feedback, "tanh", bias, sizes=(6, 128, 10))
    xs = torch.randn(4, 16, 6, requires_grad=True, **F64)
    lengths = torch.tensor([4, 3, 0, 1] * 4)
    state = cell.init_state(16).requires_grad_(True)
    for reverse in (False, True):
        _assert_same(cell, xs, state, lengths, reverse, rtol=1e-9, atol=1e-11)


def test_only_outputs_or_only_the_state_reach_the_loss():
    """A missing upstream gradient (outputs unused, or the final state unused) is zero."""
    torch.manual_seed(3)
    for feedback in FEEDBACKS:
        cell = _cell(feedback, "tanh")
        xs = torch.randn(T, B, I, requires_grad=True, **F64)
        for pick in (0, 1):
            got = [rnnlab.Recurrent(cell, use_kernel=k)(xs, lengths=RAGGED)[pick].sum()
                   for k in (True, False)]
            for a, b in zip(*(torch.autograd.grad(v, [xs, *cell.parameters()]) for v in got)):
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _rand(*shape, g, scale=1.0):
    return (torch.randn(*shape, generator=g, **F64) * scale).requires_grad_(True)


# bias, ragged, reverse: each option on and off, and all three together (the full product is
# in the float64 comparison above; gradcheck is the slow corner of the triangle)
CORNERS = [(True, True, False), (False, False, True), (True, True, True)]


@pytest.mark.parametrize("feedback,act,corner", list(itertools.product(FEEDBACKS, ACTS, CORNERS)))
def test_feedback_gradcheck(feedback, act, corner):
    bias, ragged, reverse = corner
    g = torch.Generator().manual_seed(2)
    t, b, i, h, o = 4, 3, 2, 3, 3
    args = (_rand(t, b, i, g=g), _rand(b, o, g=g), _rand(h, i, g=g), _rand(h, o, g=g),
            _rand(h, g=g) if bias else None, _rand(o, h, g=g), _rand(o, g=g) if bias else None)
    mask = length_mask(torch.tensor([4, 1, 0]), t, b) if ragged else None
    assert torch.autograd.gradcheck(
        lambda *a: FeedbackSequence.apply(*a, mask, reverse, act == "relu", feedback), args)


@pytest.mark.parametrize("act,bias", list(itertools.product(ACTS, [True, False])))
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


@pytest.mark.parametrize("feedback,act,bias", list(itertools.product(FEEDBACKS, ACTS,
                                                                      [True, False])))
def test_teacher_forced_equals_a_loop_feeding_the_targets(feedback, act, bias):
    torch.manual_seed(5)
    cell = _cell(feedback, act, bias)
    xs = torch.randn(T, B, I, requires_grad=True, **F64)
    targets = torch.randn(T, B, O, **F64)
    if feedback == "softmax":                                  # one-hot targets
        targets = torch.nn.functional.one_hot(torch.randint(O, (T, B)), O).to(xs.dtype)
    targets.requires_grad_(True)
    y0 = torch.randn(B, O, requires_grad=True, **F64)
    up = torch.randn(T, B, O, **F64)
    inputs = [xs, targets, y0, *cell.parameters()]
    ref = _targets_loop(cell, xs, targets, y0)
    ref_grads = torch.autograd.grad((ref * up).sum(), inputs)
    for forced in (cell.teacher_forced(xs, targets, y0),
                   rnnlab.Recurrent(cell).teacher_forced(xs, targets, y0),
                   teacher_forced_kernel(cell, xs, targets, y0)):
        torch.testing.assert_close(forced, ref, rtol=1e-10, atol=1e-12)
        for a, b in zip(torch.autograd.grad((forced * up).sum(), inputs), ref_grads):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    zero = teacher_forced_kernel(cell, xs, targets)            # y0 = 0 by default
    torch.testing.assert_close(zero, cell.teacher_forced(xs, targets), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("feedback", FEEDBACKS)
def test_teacher_forcing_on_the_models_own_predictions_is_the_free_run(feedback):
    """Fed its own ŷ(t-1) as the targets, teacher forcing reproduces the fused free run."""
    torch.manual_seed(6)
    cell = _cell(feedback, "tanh")
    xs = torch.randn(T, B, I, **F64)
    y0 = torch.randn(B, O, **F64)
    with torch.no_grad():
        os, last = rnnlab.Recurrent(cell)(xs, y0)
        own = {"identity": os, "sigmoid": torch.sigmoid(os), "softmax": os.softmax(-1)}[feedback]
        torch.testing.assert_close(own[-1], last)
        for forced in (cell.teacher_forced(xs, own, y0), teacher_forced_kernel(cell, xs, own, y0)):
            torch.testing.assert_close(forced, os, rtol=1e-10, atol=1e-12)
