"""Whole models through the kernels' operators: ``torch.jit.trace``, ``torch.export`` with
dynamic T and B, and ``torch.compile(fullgraph=True)`` (slow: it compiles)."""

import pytest
import torch
from tolerances import F32

import rnnlab
from rnnlab.cells import (
    ElmanCell,
    GRUCell,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LeakyCell,
    LSTMCell,
    MGUCell,
    MinGRUCell,
    OutputFeedbackCell,
)

# torch.jit is deprecated in torch 2.13, and inductor itself still calls into it
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.* is deprecated:DeprecationWarning")

DROPINS = ["RNN", "GRU", "LSTM"]

#: one cell per kernel (rnnlab.find_kernel)
CELLS = {
    "elman": lambda: ElmanCell(3, 4), "relu": lambda: ElmanCell(3, 4, "relu"),
    "lstm": lambda: LSTMCell(3, 4), "lstm-proj": lambda: LSTMCell(3, 4, proj_size=2),
    "gru": lambda: GRUCell(3, 4), "gru-before": lambda: GRUCell(3, 4, reset="before"),
    "mgu": lambda: MGUCell(3, 4), "leaky": lambda: LeakyCell(ElmanCell(3, 4)),
    "min-gru": lambda: MinGRUCell(3, 4), "feedback": lambda: OutputFeedbackCell(3, 4, 2),
    "ln-lstm": lambda: LayerNormLSTMCell(3, 4), "ln-gru": lambda: LayerNormGRUCell(3, 4),
}


def _dropin(name):
    torch.manual_seed(0)
    return getattr(rnnlab, name)(3, 4, num_layers=2, bidirectional=True, path="fused").eval()


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("name", DROPINS)
def test_jit_trace(name):
    """The traced graph holds the kernels' operators and runs at other lengths."""
    model = _dropin(name)
    with torch.no_grad():
        traced = torch.jit.trace(model, (torch.randn(5, 2, 3),), check_trace=False)
        assert "rnnlab::" in str(traced.inlined_graph)
        x = torch.randn(9, 2, 3)
        torch.testing.assert_close(_first(traced(x)), _first(model(x)), **F32)


@pytest.mark.parametrize("name", DROPINS)
def test_torch_export_with_dynamic_length_and_batch(name):
    model = _dropin(name)
    T, B = torch.export.Dim("T", min=1), torch.export.Dim("B", min=1)
    program = torch.export.export(model, (torch.randn(5, 2, 3),),
                                  dynamic_shapes=({0: T, 1: B},))
    ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert any(op.startswith("rnnlab.") for op in ops), ops
    for shape in ((9, 3, 3), (1, 1, 3)):
        x = torch.randn(*shape)
        torch.testing.assert_close(_first(program.module()(x)), _first(model(x)), **F32)


@pytest.mark.slow
@pytest.mark.parametrize("cell", list(CELLS))
def test_torch_export_of_every_kernel(cell):
    torch.manual_seed(0)
    layer = rnnlab.Recurrent(CELLS[cell](), reverse=True).eval()
    T, B = torch.export.Dim("T", min=1), torch.export.Dim("B", min=1)
    program = torch.export.export(layer, (torch.randn(5, 2, 3),),
                                  dynamic_shapes=({0: T, 1: B},))
    x = torch.randn(8, 3, 3)
    torch.testing.assert_close(program.module()(x)[0], layer(x)[0], **F32)


def _compile_and_check(model, x):
    """Compile with fullgraph=True (a graph break is an error), run a training step, and
    compare values and gradients with eager."""
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    got = _first(compiled(x))
    expected = _first(model(x))
    torch.testing.assert_close(got, expected, **F32)
    params = [p for p in model.parameters() if p.requires_grad]
    g_got = torch.autograd.grad(got.sum(), params)
    g_expected = torch.autograd.grad(expected.sum(), params)
    for a, b in zip(g_got, g_expected):
        torch.testing.assert_close(a, b, **F32)


@pytest.mark.slow
@pytest.mark.parametrize("name", DROPINS)
def test_compile_fullgraph_dropins(name):
    # the torch.nn-compatible modules hold (or are) torch.nn RNN modules, which dynamo
    # refuses to wrap unless allow_rnn is set (its only effect: that gate)
    with torch._dynamo.config.patch(allow_rnn=True):
        _compile_and_check(_dropin(name).train(), torch.randn(6, 2, 3))


@pytest.mark.slow
@pytest.mark.parametrize("cell", list(CELLS))
def test_compile_fullgraph_every_kernel(cell):
    torch.manual_seed(0)
    _compile_and_check(rnnlab.Recurrent(CELLS[cell]()), torch.randn(6, 2, 3))


def _compiled_frames(model, x, **patch):
    """(frames dynamo compiled, output) for a call of ``torch.compile(model)``, counted by
    dynamo's test backend (no inductor: cheap)."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    counter = CompileCounter()
    with torch._dynamo.config.patch(**patch):
        out = _first(torch.compile(model, backend=counter)(x))
    return counter.frame_count, out


@pytest.mark.parametrize("name", DROPINS)
@pytest.mark.parametrize("nested", [False, True], ids=["alone", "in-sequential"])
def test_compile_by_default_compiles_what_torch_nn_compiles(name, nested):
    # dynamo refuses torch.nn's RNN classes unless allow_rnn is set, and then runs them
    # eagerly; rnnlab's are such classes, and must cost no compiled frame more than
    # torch.nn's (before: every Python frame of rnnlab's layers went through inductor)
    torch.manual_seed(0)
    ours = _dropin(name)
    theirs = getattr(torch.nn, name)(3, 4, num_layers=2, bidirectional=True).eval()
    theirs.load_state_dict(ours.state_dict())
    if nested:
        head = torch.nn.Linear(3, 3)
        ours, theirs = torch.nn.Sequential(head, ours), torch.nn.Sequential(head, theirs)
    x = torch.randn(6, 2, 3)
    frames, got = _compiled_frames(ours, x)
    torch_frames, expected = _compiled_frames(theirs, x)
    assert frames == torch_frames
    torch.testing.assert_close(got, expected, **F32)


@pytest.mark.parametrize("name", DROPINS)
def test_compile_with_allow_rnn_is_one_graph_of_operators(name):
    from torch._dynamo.testing import CompileCounter

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), _dropin(name))
    x = torch.randn(6, 2, 3)
    torch._dynamo.reset()
    counter = CompileCounter()
    with torch._dynamo.config.patch(allow_rnn=True):
        got = _first(torch.compile(model, backend=counter, fullgraph=True)(x))
    assert counter.frame_count == 1
    torch.testing.assert_close(got, _first(model(x)), **F32)


@pytest.mark.parametrize("cell", list(CELLS))
def test_weights_on_another_device_raise_as_torch_nn(cell):
    # a meta weight beside a real input made the operator dispatch to its fake kernel,
    # which returned uninitialised memory on the input's device
    layer = rnnlab.Recurrent(CELLS[cell]().to("meta"))
    with pytest.raises(RuntimeError, match="device"):
        layer(torch.randn(6, 2, 3))
