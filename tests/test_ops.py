"""The fused kernels as PyTorch operators (``torch.ops.rnnlab.*``, :mod:`rnnlab.kernels`):
``torch.library.opcheck`` of every operator (schema, fake kernel, registered autograd,
AOT dispatch with dynamic shapes), double backward (``gradgradcheck`` in float64) through
every kernel, and bf16 / fp16 autocast."""

import pytest
import torch
from tolerances import F32

from rnnlab.kernels.elman import ElmanSequence
from rnnlab.kernels.feedback import FeedbackSequence, TeacherForced
from rnnlab.kernels.gru import GRUBeforeSequence, GRUSequence
from rnnlab.kernels.leaky import LeakySequence
from rnnlab.kernels.lnorm import LNGRUSequence, LNLSTMSequence
from rnnlab.kernels.lstm import LSTMSequence
from rnnlab.kernels.mgu import MGUSequence
from rnnlab.kernels.scan import ChunkedScan, SequentialScan

SIZES = {"small": (5, 3, 2, 3, 2, 2), "tiny": (3, 3, 1, 2, 1, 2)}     # T, B, I, H, P, O


def _inputs(kernel: str, dtype, ragged: bool, reverse: bool, regularized: bool,
            size: str = "small"):
    """``(Kernel class, args, positions of the differentiable args)`` for one tiny call.

    ``ragged``: a length mask (lengths T, 2, 0); ``regularized``: a recurrent dropout mask
    and zoneout weights (the kernels take zoneout with the lengths folded in, no mask).
    ``size``: "tiny" for gradgradcheck, whose cost grows with the number of inputs."""
    T, B, I, H, P, O = SIZES[size]
    g = torch.Generator().manual_seed(0)

    def r(*shape, scale=0.5):
        return (torch.randn(*shape, generator=g, dtype=dtype) * scale)

    xs = r(T, B, I, scale=1.0)
    lengths = torch.tensor([T, 2, 0])
    mask = (torch.arange(T)[:, None] < lengths[None, :]).unsqueeze(-1) if ragged else None
    if regularized:
        mask = None

    def drop(n):
        return (torch.rand(B, n, generator=g) < 0.7).to(dtype) / 0.7

    def zone(n):
        return torch.rand(T, B, n, generator=g, dtype=dtype)

    reg = (drop(H), zone(H)) if regularized else ()
    if kernel in ("elman", "elman-relu"):
        args = (xs, r(B, H), r(H, I), r(H, H), r(H), mask, reverse, kernel == "elman-relu",
                *reg)
        return ElmanSequence, args, (0, 1, 2, 3, 4)
    if kernel == "gru":
        return GRUSequence, (xs, r(B, H), r(3 * H, I), r(3 * H, H), r(3 * H), r(H), mask,
                             reverse, *reg), (0, 1, 2, 3, 4, 5)
    if kernel == "gru-before":
        return GRUBeforeSequence, (xs, r(B, H), r(3 * H, I), r(3 * H, H), r(3 * H), mask,
                                   reverse, *reg), (0, 1, 2, 3, 4)
    if kernel == "mgu":
        return MGUSequence, (xs, r(B, H), r(2 * H, I), r(2 * H, H), r(2 * H), mask, reverse,
                             *reg), (0, 1, 2, 3, 4)
    if kernel == "leaky":
        return LeakySequence, (xs, r(B, H), r(H, I), r(H, H), r(H), r(H), mask, reverse,
                               False, *reg), (0, 1, 2, 3, 4, 5)
    if kernel in ("lstm", "lstm-proj"):
        proj = kernel == "lstm-proj"
        out = P if proj else H
        zones = (drop(out), zone(out), zone(H)) if regularized else (None, None, None)
        return LSTMSequence, (xs, r(B, out), r(B, H), r(4 * H, I), r(4 * H, out), r(4 * H),
                              mask, reverse, r(P, H) if proj else None, *zones), \
            (0, 1, 2, 3, 4, 5) + ((8,) if proj else ())
    if kernel.startswith("feedback"):
        feedback = kernel.split("-")[1]
        return FeedbackSequence, (xs, r(B, O), r(H, I), r(H, O), r(H), r(O, H), r(O), mask,
                                  reverse, False, feedback), (0, 1, 2, 3, 4, 5, 6)
    if kernel == "teacher-forced":
        return TeacherForced, (xs, r(T, B, O), r(B, O), r(H, I), r(H, O), r(H), r(O, H), r(O),
                               False), (0, 1, 2, 3, 4, 5, 6, 7)
    if kernel == "ln-lstm":
        zones = (drop(H), zone(H), zone(H)) if regularized else ()
        return LNLSTMSequence, (xs, r(B, H), r(B, H), r(4 * H, I), r(4 * H, H),
                                1 + r(4 * H), 1 + r(4 * H), r(4 * H), 1 + r(H), r(H), mask,
                                reverse, 1e-5, *zones), tuple(range(10))
    if kernel == "ln-gru":
        return LNGRUSequence, (xs, r(B, H), r(3 * H, I), r(3 * H, H), 1 + r(3 * H),
                               1 + r(3 * H), r(3 * H), r(3 * H), mask, reverse, 1e-5, *reg), \
            tuple(range(8))
    a = torch.rand(T, B, H, generator=g, dtype=dtype)
    if kernel == "scan":
        return SequentialScan, (a, r(T, B, H), r(B, H), reverse), (0, 1, 2)
    assert kernel == "chunked-scan"
    return ChunkedScan, (a, r(T, B, H), r(B, H), reverse, 1), (0, 1, 2)


#: every operator, with the options it takes (masks: lengths; regularisers: dropout, zoneout)
KERNELS = {
    "elman": {"ragged", "regularized"}, "elman-relu": {"ragged"},
    "gru": {"ragged", "regularized"}, "gru-before": {"ragged", "regularized"},
    "mgu": {"ragged", "regularized"}, "leaky": {"ragged", "regularized"},
    "lstm": {"ragged", "regularized"}, "lstm-proj": {"ragged", "regularized"},
    "feedback-identity": {"ragged"}, "feedback-sigmoid": {"ragged"},
    "feedback-softmax": {"ragged"}, "teacher-forced": set(),
    "ln-lstm": {"ragged", "regularized"}, "ln-gru": {"ragged", "regularized"},
    "scan": set(), "chunked-scan": set(),
}


def _differentiable(args, positions):
    return tuple(a.requires_grad_() if i in positions else a for i, a in enumerate(args))


def _cases(*option_sets):
    """(kernel, ragged, regularized) for every kernel with each option it takes."""
    params = []
    for name, options in KERNELS.items():
        for ragged, regularized in option_sets:
            if (ragged and "ragged" not in options) or \
                    (regularized and "regularized" not in options):
                continue
            tag = "-ragged" if ragged else "-regularized" if regularized else ""
            params.append(pytest.param(name, ragged, regularized, id=name + tag))
    return params


@pytest.mark.parametrize("kernel,ragged,regularized", _cases((True, False)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_opcheck(kernel, ragged, regularized, dtype):
    """torch.library.opcheck: the schema, the fake kernel against the real one, the
    registered autograd and the AOT dispatch (dynamic shapes) of the forward operator and,
    through its autograd, of the backward operator."""
    cls, args, diff = _inputs(kernel, dtype, ragged, reverse=True, regularized=regularized)
    torch.library.opcheck(cls.op, _differentiable(args, diff))


@pytest.mark.slow
@pytest.mark.parametrize("kernel,ragged,regularized", _cases((False, False), (False, True)))
@pytest.mark.parametrize("reverse", [False, True], ids=["", "reverse"])
def test_opcheck_more_options(kernel, ragged, regularized, reverse):
    cls, args, diff = _inputs(kernel, torch.float64, ragged, reverse, regularized)
    torch.library.opcheck(cls.op, _differentiable(args, diff))


def test_every_kernel_is_covered():
    """Every registered rnnlab operator pair is exercised above."""
    from rnnlab.kernels._common import IMPLEMENTATIONS
    covered = {_inputs(k, torch.float64, False, False, False)[0].name for k in KERNELS}
    assert {name.split("::")[1] for name in IMPLEMENTATIONS
            if not name.endswith("_backward")} == covered


def _double_backward_cases():
    """Every kernel once (ragged and reverse where it takes lengths), with torch's fast
    gradcheck (a random projection of the Jacobians) in the default run and the full one
    behind the slow marker; the regularised variants (recurrent dropout, zoneout) are slow."""
    params = []
    for c in _cases((True, False)) + _cases((False, False)):
        name, ragged, regularized = c.values
        if not ragged and "ragged" in KERNELS[name]:
            continue
        params.append(pytest.param(name, ragged, False, ragged, True, id=c.id + "-fast"))
        params.append(pytest.param(name, ragged, False, ragged, False, id=c.id,
                                   marks=pytest.mark.slow))
    for c in _cases((False, True)):
        params.append(pytest.param(*c.values, False, False, id=c.id, marks=pytest.mark.slow))
    return params


@pytest.mark.parametrize("kernel,ragged,regularized,reverse,fast_mode",
                         _double_backward_cases())
def test_double_backward(kernel, ragged, regularized, reverse, fast_mode):
    """gradgradcheck in float64: the backward is differentiable (with create_graph=True it
    runs the plain-ops reference, which autograd differentiates again)."""
    cls, args, diff = _inputs(kernel, torch.float64, ragged, reverse, regularized, "tiny")
    args = list(args)

    def f(*d):
        full = list(args)
        for i, v in zip(diff, d):
            full[i] = v
        out = cls.apply(*full)
        return out if isinstance(out, tuple) else (out,)

    inputs = tuple(args[i].requires_grad_() for i in diff)
    assert torch.autograd.gradcheck(f, inputs, fast_mode=fast_mode)
    assert torch.autograd.gradgradcheck(f, inputs, fast_mode=fast_mode)


def test_first_order_backward_runs_the_fused_operator():
    """Without create_graph the backward is the hand-derived BPTT operator; with it, the
    reference (so double backward never slows the usual first-order step)."""
    cls, args, diff = _inputs("gru", torch.float64, False, False, False)
    args = _differentiable(args, diff)
    seen = []
    from rnnlab.kernels import _common

    original = _common._reference_grads
    _common._reference_grads = lambda *a: seen.append(1) or original(*a)
    try:
        ys, h = cls.apply(*args)
        first = torch.autograd.grad(ys.sum(), args[2], retain_graph=True)
        assert not seen
        second = torch.autograd.grad(ys.sum(), args[2], create_graph=True)
        assert seen
    finally:
        _common._reference_grads = original
    torch.testing.assert_close(first[0], second[0], rtol=1e-9, atol=1e-11)


AUTOCAST = [torch.bfloat16] + ([torch.float16] if torch.backends.mkldnn.is_available()
                               else [])


@pytest.mark.parametrize("dtype", AUTOCAST, ids=lambda d: str(d).split(".")[1])
@pytest.mark.parametrize("kernel", ["elman", "gru", "lstm", "lstm-proj", "ln-gru", "mgu",
                                    "feedback-identity", "scan"])
def test_autocast_runs_the_kernels_in_float32(kernel, dtype):
    """Under CPU autocast the kernels run in float32 (the registered autocast rule): the same
    values as a float32 call, float32 outputs, gradients of the inputs' dtypes."""
    cls, args, diff = _inputs(kernel, torch.float32, False, False, False)
    args = _differentiable(args, diff)
    expected = cls.apply(*args)
    with torch.autocast("cpu", dtype=dtype):
        got = cls.apply(*args)
    got = got if isinstance(got, tuple) else (got,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    for g, e in zip(got, expected):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, e, **F32)
    sum(g.sum() for g in got).backward()
    assert all(args[i].grad is not None and args[i].grad.dtype == torch.float32
               for i in diff)


@pytest.mark.parametrize("name", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("dtype", AUTOCAST, ids=lambda d: str(d).split(".")[1])
def test_autocast_of_the_torch_nn_dropins(name, dtype):
    """A bf16 / fp16 autocast region around rnnlab.RNN/GRU/LSTM (fused path) with a
    low-precision layer after it, as in a mixed-precision training step."""
    import rnnlab

    torch.manual_seed(0)
    rnn = getattr(rnnlab, name)(4, 6, num_layers=2, bidirectional=True, path="fused")
    head = torch.nn.Linear(12, 3)
    x = torch.randn(5, 2, 4)
    with torch.autocast("cpu", dtype=dtype):
        ys, _ = rnn(x)
        out = head(ys)
    assert ys.dtype == torch.float32 and out.dtype == dtype
    out.float().sum().backward()
    assert all(p.grad is not None for p in rnn.parameters())
    with torch.no_grad():
        torch.testing.assert_close(ys, rnn(x)[0], **F32)


def test_lstm_kernel_with_one_projected_unit():
    """W_hh (4H, 1) transposed is already contiguous: the kernel's doubled-g copy must still
    be a copy (it was the input itself, doubled in place, and the backward read it)."""
    import rnnlab

    torch.manual_seed(0)
    cell = rnnlab.cells.LSTMCell(2, 3, proj_size=1).double()
    xs = torch.randn(4, 2, 2, dtype=torch.float64)
    grads = []
    for fused in (True, False):
        ys, _ = rnnlab.Recurrent(cell, use_kernel=fused)(xs)
        grads.append(torch.autograd.grad(ys.sum(), cell.W_hh)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-11)
