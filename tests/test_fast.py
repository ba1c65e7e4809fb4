"""The generic path (rnnlab.fast): any cell's traced step, run in one loop with a backward
that carries only the state's gradient. Checked like every kernel (the gradient triangle):
generic == autograd through the reference loop, in float64 to rounding and float32 to
``F32``, and gradcheck; ragged lengths (including 0), reverse, bidirectional, stacked,
recurrent dropout and zoneout; the traced step is reused across T and B; a step that cannot
be traced runs the reference loop after a one-line warning."""

from __future__ import annotations

import copy

import pytest
import torch
from tolerances import F32, F64
from triangle import assert_fused_matches_reference, flat, random_state, rebuild

import rnnlab
from rnnlab import fast, fast_c, layers
from rnnlab.cells import (
    ClockworkCell,
    DeepOutputCell,
    DeepTransitionCell,
    GRUCell,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    NTMCell,
    SkipCell,
)
from rnnlab.cells.examples import HandGRU, IndRNNCell, MyCell, PeepholeLSTM

T, B, I, H = 5, 4, 3, 4
RAGGED = torch.tensor([5, 2, 0, 3])
needs_cc = pytest.mark.skipif(fast_c.compiler() is None, reason="no C compiler on this machine")


@pytest.fixture(autouse=True)
def _c_cache(monkeypatch, tmp_path_factory):
    """The compiled C loops' disk cache in a folder of the test session's own."""
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path_factory.getbasetemp() / "rnnlab-cache"))


@pytest.fixture(autouse=True)
def _no_warmup(monkeypatch):
    """The generic path on (as by default), from a cell's first training call (by
    default from its second) and at the tiny sizes of these tests (by default from
    T = fast.MIN_STEPS), running its graphs from Python where the C loops do not apply (by
    default the reference loop runs then)."""
    monkeypatch.setattr(fast, "ENABLED", True)
    monkeypatch.setattr(fast, "GRAPHS", True)       # by default the reference loop runs
    monkeypatch.setattr(fast, "WARMUP", 0)
    monkeypatch.setattr(fast, "MIN_STEPS", 1)


@pytest.fixture
def no_compiler(monkeypatch, tmp_path):
    """No C compiler on PATH nor in $CC (and inductor's $CXX pointing nowhere); an empty disk
    cache."""
    monkeypatch.setenv("PATH", str(tmp_path))
    for var in ("CC", "CXX"):
        monkeypatch.setenv(var, str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "cache"))


def _cell(make, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return make().to(dtype)


def _inputs(cell, dtype=torch.float64, t=T, b=B):
    g = torch.Generator().manual_seed(3)
    xs = torch.randn(t, b, cell.input_size, dtype=dtype, generator=g, requires_grad=True)
    state = random_state(cell, b, g)
    return xs, rnnlab.cells.map_state(lambda s: s.to(dtype).requires_grad_(True), state)


@pytest.mark.parametrize("make", [lambda: MyCell(I, H), lambda: PeepholeLSTM(I, H)],
                         ids=["my-cell", "peephole-lstm"])
def test_generic_matches_the_reference_loop_in_float64(make):
    cell = _cell(make)
    assert rnnlab.Recurrent(cell).path == "generic"
    xs, state = _inputs(cell)
    for lengths in (None, RAGGED):
        for reverse in (False, True):
            assert_fused_matches_reference(cell, xs, state, lengths, reverse, **F64)


def test_generic_matches_the_reference_loop_in_float32():
    cell = _cell(lambda: HandGRU(I, H), torch.float32)
    xs, state = _inputs(cell, torch.float32)
    assert_fused_matches_reference(cell, xs, state, RAGGED, True, **F32)


def test_generic_gradcheck():
    """The generic layer against finite differences w.r.t. the input, the initial state and
    every parameter (ragged, reverse)."""
    cell = _cell(lambda: PeepholeLSTM(2, 3))
    layer = rnnlab.Recurrent(cell, reverse=True)
    xs, state = _inputs(cell, t=4, b=3)
    lengths = torch.tensor([4, 0, 2])
    run, inputs = _as_function(layer, xs, state, lengths)
    assert layer.path == "generic"
    assert torch.autograd.gradcheck(run, inputs)


def _as_function(layer, xs, state, lengths=None):
    """``layer`` as a function of (x, the initial state's fields, its parameters) for
    gradcheck, and those inputs as fresh leaves."""
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in layer.parameters()]
    states = [s.detach().clone().requires_grad_(True) for s in flat(state)]

    def run(x, *rest):
        weights = dict(zip(names, rest[len(states):]))
        args = (x, rebuild(state, rest[:len(states)]), lengths)
        ys, final = torch.func.functional_call(layer, weights, args)
        return (ys, *flat(final))

    return run, (xs.detach().requires_grad_(True), *states, *params)


def _assert_matches_reference_with_masks(layer, xs):
    """``layer`` (ragged lengths) gives the reference loop's values and gradients, the
    regularisers' masks drawn from the same seed."""
    ref = _reference_copy(layer)
    torch.manual_seed(5)
    ours = _grads(layer, xs, RAGGED)
    torch.manual_seed(5)
    for a, b in zip(ours, _grads(ref, xs, RAGGED)):
        torch.testing.assert_close(a, b, **F64)


def _reference_copy(net):
    ref = copy.deepcopy(net)
    for m in ref.modules():
        if isinstance(m, rnnlab.Recurrent):
            m.use_kernel = False
    return ref


def _grads(net, xs, lengths):
    x = xs.detach().clone().requires_grad_(True)
    ys, _ = net(x, lengths=lengths)
    ys.backward(torch.randn(ys.shape, dtype=ys.dtype, generator=torch.Generator().manual_seed(1)))
    return [ys.detach(), x.grad, *(p.grad for p in net.parameters())]


def test_bidirectional_and_stacked_custom_cells():
    torch.manual_seed(0)
    net = rnnlab.Stack([
        rnnlab.Bidirectional(rnnlab.Recurrent(MyCell(I, H)),
                             rnnlab.Recurrent(MyCell(I, H), reverse=True)),
        rnnlab.Recurrent(IndRNNCell(2 * H, H)),
    ], dropout=0.0).double()
    ref = _reference_copy(net)
    xs = torch.randn(T, B, I, dtype=torch.float64)
    for a, b in zip(_grads(net, xs, RAGGED), _grads(ref, xs, RAGGED)):
        torch.testing.assert_close(a, b, **F64)


def test_recurrent_dropout_and_zoneout_on_the_generic_path(monkeypatch):
    """An LSTM cell forced off its kernel: the layer's masks reach the traced step (dropout)
    and the loop (zoneout) exactly as in the reference loop."""
    monkeypatch.setattr(layers, "find_kernel", lambda cell: None)
    cell = _cell(lambda: LSTMCell(I, H))
    layer = rnnlab.Recurrent(cell, recurrent_dropout=0.3, zoneout=(0.2, 0.4))
    assert layer.path == "generic"
    _assert_matches_reference_with_masks(layer, _inputs(cell)[0])
    assert _compiled(cell) or fast_c.compiler() is None      # zoneout in the C loops


@needs_cc
@pytest.mark.parametrize("make", [lambda: LayerNormLSTMCell(I, H), lambda: LayerNormGRUCell(I, H)],
                         ids=["ln-lstm", "ln-gru"])
def test_layer_normalised_cells_in_the_c_loops(make, monkeypatch):
    """Layer norm in the step (a mean and a variance over the features, and their backward)
    is translated: forced off their kernels, LN cells run the C loops, with ragged lengths,
    zoneout and recurrent dropout."""
    monkeypatch.setattr(layers, "find_kernel", lambda cell: None)
    cell = _cell(make)
    xs, state = _inputs(cell)
    for lengths in (None, RAGGED):
        for reverse in (False, True):
            assert_fused_matches_reference(cell, xs, state, lengths, reverse, **F64)
    assert _compiled(cell)
    layer = rnnlab.Recurrent(cell, recurrent_dropout=0.3, zoneout=0.25)
    _assert_matches_reference_with_masks(layer, xs)


@needs_cc
def test_c_loops_gradcheck_with_lengths_and_zoneout(monkeypatch):
    """Finite differences through the C loops' length and zoneout mixing (an evaluation-mode
    layer: zoneout's expected weights, the same at every call)."""
    monkeypatch.setattr(layers, "find_kernel", lambda cell: None)
    cell = _cell(lambda: LayerNormLSTMCell(2, 3))
    layer = rnnlab.Recurrent(cell, zoneout=(0.3, 0.6), reverse=True).eval()
    xs, state = _inputs(cell, t=4, b=3)
    lengths = torch.tensor([4, 0, 2])
    run, inputs = _as_function(layer, xs, state, lengths)
    assert torch.autograd.gradcheck(run, inputs)
    assert _compiled(cell)


def test_the_traced_step_is_reused_for_every_T_and_B():
    cell = _cell(lambda: IndRNNCell(I, H))
    layer, ref = rnnlab.Recurrent(cell), rnnlab.Recurrent(cell, use_kernel=False)
    programs = set()
    for t, b in ((3, 2), (9, 5), (1, 1)):
        xs = torch.randn(t, b, I, dtype=torch.float64)
        for a, r in zip(_grads(layer, xs, None), _grads(ref, xs, None)):
            torch.testing.assert_close(a, r, **F64)
        programs.update(map(id, fast._PROGRAMS[cell].values()))
    assert len(programs) == 1


def test_inference_takes_the_reference_loop_without_tracing():
    cell = MyCell(I, H)
    with torch.no_grad():
        rnnlab.Recurrent(cell)(torch.randn(T, B, I))
    assert cell not in fast._PROGRAMS


def test_torch_func_transforms_see_the_reference_loop():
    """torch.func.grad through a layer over a custom cell works as before (the generic
    path's autograd.Function steps aside under functorch transforms)."""
    cell = _cell(lambda: MyCell(I, H))
    layer = rnnlab.Recurrent(cell)
    xs, _ = _inputs(cell)
    params = {k: v.detach() for k, v in layer.named_parameters()}

    def loss(p):
        return torch.func.functional_call(layer, p, (xs.detach(),))[0].sum()

    grads = torch.func.grad(loss)(params)
    ref = torch.autograd.grad(rnnlab.Recurrent(cell, use_kernel=False)(xs)[0].sum(),
                              list(cell.parameters()))
    for a, b in zip(grads.values(), ref):
        torch.testing.assert_close(a, b, **F64)
    assert cell not in fast._PROGRAMS


def test_short_sequences_run_the_reference_loop(monkeypatch):
    monkeypatch.setattr(fast, "MIN_STEPS", T + 1)
    cell = MyCell(I, H)
    rnnlab.Recurrent(cell)(torch.randn(T, B, I))[0].sum().backward()
    assert cell not in fast._PROGRAMS


def test_the_first_training_calls_run_the_reference_loop(monkeypatch):
    monkeypatch.setattr(fast, "WARMUP", 1)
    cell = MyCell(I, H)
    layer = rnnlab.Recurrent(cell)
    layer(torch.randn(T, B, I))[0].sum().backward()
    assert cell not in fast._PROGRAMS                  # one call: nothing traced
    layer(torch.randn(T, B, I))[0].sum().backward()
    assert cell in fast._PROGRAMS


class _Branchy(rnnlab.Cell):
    """A step whose Python control flow reads a value: no fixed graph exists."""

    def __init__(self):
        super().__init__()
        self.input_size = self.hidden_size = self.output_size = H
        self.w = torch.nn.Parameter(torch.randn(H, H))

    def init_state(self, batch_size, device=None, dtype=None):
        return self._zeros(batch_size, H, device, dtype)

    def forward(self, h, x):
        h = torch.tanh(x @ self.w + h) if h.sum() > 0 else torch.tanh(x @ self.w - h)
        return h, h


class _Noisy(_Branchy):
    def forward(self, h, x):
        h = torch.tanh(x @ self.w + h + 0.1 * torch.randn_like(h))
        return h, h


@pytest.mark.parametrize("make, why", [(_Branchy, "could not be traced"),
                                       (_Noisy, "draws random numbers")])
def test_an_untraceable_step_runs_the_reference_loop_after_one_warning(make, why):
    cell = make()
    layer = rnnlab.Recurrent(cell)
    xs = torch.randn(T, B, H)
    with pytest.warns(RuntimeWarning, match=f"{make.__name__} runs the reference loop: .*{why}"):
        ys, _ = layer(xs)
    assert layer.path == "reference"
    torch.manual_seed(0)
    ys.sum().backward()                                  # and it trains
    assert cell.w.grad is not None
    layer(xs)                                            # no second warning (filterwarnings)


WRAPPED = {
    "deep-transition": lambda: DeepTransitionCell(GRUCell(I, H), depth=2, shortcut=True),
    "deep-output": lambda: DeepOutputCell(LSTMCell(I, H), depth=2),
    "skip": lambda: SkipCell.build(lambda i, h: rnnlab.ElmanCell(i, h), I, H, delay=3),
    "clockwork": lambda: ClockworkCell(I, 8, periods=[1, 2, 4, 8]),
    "ntm": lambda: NTMCell(I, 5, hidden=6, memory_slots=4, memory_width=3),
    "ntm-ff": lambda: NTMCell(I, 5, controller="ff", hidden=6, memory_slots=4,
                              memory_width=3, read_heads=2),
    "hand-gru": lambda: HandGRU(I, H),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", [*rnnlab.CELL_NAMES, *WRAPPED])
def test_every_cell_of_the_chapter_on_the_generic_path(name, monkeypatch):
    """Every cell of rnnlab.make_cell (forced off its kernel) and the wrapped and memory
    cells: generic == reference in float64, ragged, both directions (NTM from its own
    initial state: its addressing needs positive weightings)."""
    monkeypatch.setattr(layers, "find_kernel", lambda cell: None)
    cell = _cell(WRAPPED[name] if name in WRAPPED else
                 (lambda: rnnlab.make_cell(name, I, H)))
    xs, state = _inputs(cell)
    if name.startswith("ntm"):
        state = rnnlab.cells.map_state(lambda s: s.detach().requires_grad_(True),
                                       cell.init_state(B, dtype=torch.float64))
    assert rnnlab.Recurrent(cell).path == "generic"
    for lengths in (None, RAGGED):
        for reverse in (False, True):
            # NTM: its learned initial reads make the initial state only; given a state,
            # they get no gradient on either path
            assert_fused_matches_reference(cell, xs, state, lengths, reverse, **F64,
                                           allow_none=name.startswith("ntm"))


def test_no_compiler_is_needed(no_compiler):
    """The generic path runs ATen graphs as traced where it cannot compile its loops: with
    no toolchain on PATH (and inductor pointed at a compiler that does not exist) a new cell
    with ragged lengths still trains on it, after the one-line warning and no error."""
    cell = _cell(lambda: MyCell(I, H))
    layer = rnnlab.Recurrent(cell)
    xs, _ = _inputs(cell)
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        ys, _ = layer(xs, lengths=RAGGED)
    ys.sum().backward()
    assert layer.path == "generic" and cell in fast._PROGRAMS


# ---- the time loops in compiled C (rnnlab.fast_c) ------------------------------------------

EXAMPLES = {"my-cell": lambda: MyCell(I, H), "hand-gru": lambda: HandGRU(I, H),
            "peephole-lstm": lambda: PeepholeLSTM(I, H), "indrnn": lambda: IndRNNCell(I, H)}


def _compiled(cell) -> bool:
    return any(v is not None for v in fast._C_LOOPS.get(cell, {}).values())


@needs_cc
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_c_loops_match_the_reference_loop_in_float64(name):
    cell = _cell(EXAMPLES[name])
    xs, state = _inputs(cell)
    for lengths in (None, RAGGED):
        for reverse in (False, True):
            assert_fused_matches_reference(cell, xs, state, lengths, reverse, **F64)
    assert _compiled(cell)


@needs_cc
def test_c_loops_match_the_reference_loop_in_float32():
    cell = _cell(lambda: HandGRU(I, H), torch.float32)
    xs, state = _inputs(cell, torch.float32, t=7, b=5)
    assert_fused_matches_reference(cell, xs, state, None, True, **F32)
    assert _compiled(cell)


@needs_cc
def test_c_loops_gradcheck():
    cell = _cell(lambda: PeepholeLSTM(2, 3))
    layer = rnnlab.Recurrent(cell)
    xs, state = _inputs(cell, t=4, b=3)
    run, inputs = _as_function(layer, xs, state)
    assert torch.autograd.gradcheck(run, inputs)
    assert _compiled(cell)


@needs_cc
def test_c_loops_are_compiled_once_for_every_T_and_B_and_cached_on_disk():
    cell = _cell(lambda: HandGRU(I, H))
    layer, ref = rnnlab.Recurrent(cell), rnnlab.Recurrent(cell, use_kernel=False)
    for t, b in ((3, 2), (9, 5), (2, 1)):
        xs = torch.randn(t, b, I, dtype=torch.float64)
        for a, r in zip(_grads(layer, xs, None), _grads(ref, xs, None)):
            torch.testing.assert_close(a, r, **F64)
    assert len(fast._C_LOOPS[cell]) == 1 and _compiled(cell)
    built = sorted(fast_c.cache_dir().glob("rnnlab_loops_*.so"))
    fast._C_LOOPS.clear()                     # as a new process: the library is on disk
    _grads(layer, torch.randn(4, 3, I, dtype=torch.float64), None)
    assert _compiled(cell) and sorted(fast_c.cache_dir().glob("rnnlab_loops_*.so")) == built


def test_without_a_compiler_the_graphs_run_from_python_after_one_warning(no_compiler):
    cell = _cell(lambda: MyCell(I, H))
    xs, state = _inputs(cell)
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        assert_fused_matches_reference(cell, xs, state, None, False, **F64)
    assert cell in fast._PROGRAMS and not _compiled(cell)


@needs_cc
def test_c_loops_off_by_switch(monkeypatch):
    monkeypatch.setattr(fast, "C_LOOPS", False)
    cell = _cell(lambda: IndRNNCell(I, H))
    xs, state = _inputs(cell)
    assert_fused_matches_reference(cell, xs, state, None, False, **F64)
    assert not _compiled(cell) and cell in fast._PROGRAMS


@needs_cc
def test_loading_the_c_loops_keeps_subnormal_numbers(tmp_path, monkeypatch):
    # a library linked with -ffast-math sets flush-to-zero for the whole process on load
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path))
    cell = _cell(lambda: IndRNNCell(I, H))
    xs, state = _inputs(cell)
    assert_fused_matches_reference(cell, xs, state, None, False, **F64)
    assert _compiled(cell)
    tiny = torch.tensor(1e-40, dtype=torch.float32)      # a float32 subnormal
    assert float(tiny * 1.0) > 0 and 5e-324 * 1.0 > 0


class _RowBiasNormCell(rnnlab.Cell):
    """A (1, H) parameter broadcast over the rows and, with ``norm``, a mean over the
    features subtracted and a root mean square divided out (row reductions, read back by
    every column)."""

    def __init__(self, norm: bool):
        super().__init__()
        self.input_size, self.hidden_size, self.output_size, self.norm = I, H, H, norm
        self.lin = torch.nn.Linear(I + H, H)
        self.row = torch.nn.Parameter(torch.randn(1, H))

    def init_state(self, batch_size, device=None, dtype=None):
        return torch.zeros(batch_size, H, device=device, dtype=dtype)

    def forward(self, h, x):
        h = torch.tanh(self.lin(torch.cat([x, h], -1)) * self.row)
        if self.norm:
            h = h - h.mean(-1, keepdim=True)
            h = h * torch.rsqrt(h.pow(2).sum(-1, keepdim=True) / H + 1e-3)
        return h, h


@needs_cc
@pytest.mark.parametrize("norm", [False, True], ids=["row-broadcast", "reduction"])
def test_c_loops_broadcast_rows_and_columns_and_reduce_rows(norm):
    cell = _cell(lambda: _RowBiasNormCell(norm))
    xs, state = _inputs(cell)
    for reverse in (False, True):
        assert_fused_matches_reference(cell, xs, state, RAGGED, reverse, **F64)
    assert _compiled(cell)


class _MaxCell(_RowBiasNormCell):
    """A maximum over the features: a reduction the generator leaves to the graphs."""

    def __init__(self):
        super().__init__(False)

    def forward(self, h, x):
        h = torch.tanh(self.lin(torch.cat([x, h], -1)) * self.row)
        h = h - h.amax(-1, keepdim=True)
        return h, h


@needs_cc
def test_c_loops_leave_other_reductions_to_the_graphs():
    cell = _cell(_MaxCell)
    xs, state = _inputs(cell)
    assert_fused_matches_reference(cell, xs, state, None, False, **F64)
    assert not _compiled(cell) and cell in fast._PROGRAMS


@pytest.mark.parametrize("c_loops", [True, False], ids=["c", "graphs"])
def test_double_backward_through_the_generic_path(c_loops, monkeypatch):
    """create_graph=True (a gradient penalty, gradgradcheck): the generic path's backward is
    then the reference loop's, differentiable in turn, with lengths and zoneout."""
    monkeypatch.setattr(fast, "C_LOOPS", c_loops)
    monkeypatch.setattr(layers, "find_kernel", lambda cell: None)
    cell = _cell(lambda: LSTMCell(2, 3))
    layer = rnnlab.Recurrent(cell, zoneout=0.3).eval()
    xs, state = _inputs(cell, t=4, b=3)
    lengths = torch.tensor([4, 0, 2])
    run, inputs = _as_function(layer, xs, state, lengths)
    assert layer.path == "generic"
    assert torch.autograd.gradgradcheck(run, inputs)
    # a gradient penalty: ∂/∂θ of |∂L/∂x|², against the reference loop's
    x = xs.detach().requires_grad_(True)
    ref = _reference_copy(layer)
    got = []
    for net in (layer, ref):
        ys, _ = net(x, lengths=lengths)
        (gx,) = torch.autograd.grad(ys.pow(2).sum(), x, create_graph=True)
        got.append(torch.autograd.grad(gx.pow(2).sum(), list(net.parameters())))
    for a, b in zip(*got):
        torch.testing.assert_close(a, b, **F64)


@needs_cc
@pytest.mark.parametrize("make, opts", [
    (lambda: LayerNormLSTMCell(I, H), {}),
    (lambda: LayerNormGRUCell(I, H), {"zoneout": 0.2}),
    (lambda: LSTMCell(I, H), {"recurrent_dropout": 0.3, "zoneout": (0.1, 0.2)}),
    (lambda: LSTMCell(I, H, proj_size=2), {}),
], ids=["ln-lstm", "ln-gru + zoneout", "lstm + dropout + zoneout", "lstm-proj"])
def test_kernels_without_a_native_op_hand_over_to_the_c_loops(make, opts):
    """The kernels that run their steps as ATen ops from Python hand a training call over to
    the C loops, with the same values and gradients as the reference loop."""
    cell = _cell(make)
    layer = rnnlab.Recurrent(cell, **opts)
    assert layer.path == "fused"
    _assert_matches_reference_with_masks(layer, _inputs(cell)[0])
    assert _compiled(cell)


def test_without_c_loops_the_kernel_runs_and_says_nothing(no_compiler):
    cell = _cell(lambda: LayerNormLSTMCell(I, H))
    layer, ref = rnnlab.Recurrent(cell), rnnlab.Recurrent(cell, use_kernel=False)
    xs, _ = _inputs(cell)
    for a, b in zip(_grads(layer, xs, RAGGED), _grads(ref, xs, RAGGED)):   # no warning
        torch.testing.assert_close(a, b, **F64)
    assert not _compiled(cell)
    cell = _cell(lambda: LSTMCell(I, H))               # a plain LSTM: torch's op, never C
    _grads(rnnlab.Recurrent(cell), xs, RAGGED)
    assert cell not in fast._PROGRAMS


@needs_cc
@pytest.mark.parametrize("make", [
    lambda: ClockworkCell(I, 2 * H, periods=[1, 2, 4, 8]),
    lambda: SkipCell.build(lambda i, h: rnnlab.ElmanCell(i, h), I, H, delay=3)],
    ids=["clockwork", "skip"])
def test_chapter_cells_in_the_c_loops(make):
    """Comparisons, ``where`` and ``remainder`` (the clockwork's period masks, a step counter
    in the state, scalar constants), their bool values handed back to the deferred part as
    bool; the skip cell's delay line (slices of the state and their backward)."""
    cell = _cell(make)
    xs, state = _inputs(cell, t=9)
    for lengths in (None, torch.tensor([9, 2, 0, 5])):
        for reverse in (False, True):
            assert_fused_matches_reference(cell, xs, state, lengths, reverse, **F64)
    assert _compiled(cell)


@pytest.mark.parametrize("make", [
    lambda: _MaxCell(),
    lambda: NTMCell(I, H, hidden=H, memory_slots=4, memory_width=3)], ids=["amax", "ntm"])
def test_by_default_a_step_not_compiled_to_c_runs_the_reference_loop(make, monkeypatch):
    """Where the C loops do not apply (here: steps they do not translate), the reference loop
    runs, silently, and the layer's path says so."""
    monkeypatch.setattr(fast, "GRAPHS", False)
    cell = _cell(make)
    layer = rnnlab.Recurrent(cell)
    assert layer.path == "generic"
    xs, _ = _inputs(cell)
    for a, b in zip(_grads(layer, xs, RAGGED), _grads(_reference_copy(layer), xs, RAGGED)):
        torch.testing.assert_close(a, b, **F64)
    assert layer.path == "reference" and "not compiled to C" in fast._UNSUPPORTED[cell]


def test_by_default_no_compiler_means_the_reference_loop_after_one_warning(no_compiler,
                                                                           monkeypatch):
    monkeypatch.setattr(fast, "GRAPHS", False)
    cell = _cell(lambda: MyCell(I, H))
    layer = rnnlab.Recurrent(cell)
    xs, _ = _inputs(cell)
    with pytest.warns(RuntimeWarning, match="runs the reference loop, not compiled C loops: "
                                            "no C compiler"):
        _grads(layer, xs, RAGGED)
    assert layer.path == "reference" and not _compiled(cell)
    _grads(layer, xs, RAGGED)                          # once: no second warning


@needs_cc
def test_pool_buffers_are_not_reused_while_retain_graph_can_read_them():
    """The C loops' buffers go back to the pool only once autograd has released the node's
    saved tensors: a second backward of a retained graph, with other calls in between,
    gives the same gradients; after release the next call reuses them."""
    cell = _cell(lambda: PeepholeLSTM(I, H))
    layer = rnnlab.Recurrent(cell)
    xs, _ = _inputs(cell)
    x = xs.detach().requires_grad_(True)
    ys, _ = layer(x)
    assert _compiled(cell)
    (g1,) = torch.autograd.grad(ys.pow(2).sum(), x, retain_graph=True)
    for _ in range(3):                                  # other calls take pool buffers
        _grads(layer, torch.randn_like(xs), RAGGED)
    (g2,) = torch.autograd.grad(ys.pow(2).sum(), x)
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        torch.autograd.grad(ys.pow(2).sum(), x)
    fast_c.POOL.empty()
    _grads(layer, xs, None)                             # fills the pool
    with fast_c.POOL.lock:
        fast_c.POOL._collect()                          # the forward's, its node now gone
    before = len(fast_c.POOL.free)
    assert before
    ys, _ = layer(xs.detach().requires_grad_(True))     # takes from it
    assert len(fast_c.POOL.free) < before
    del ys


def test_pool_keeps_at_most_its_limit():
    pool = fast_c.Pool(limit=4 * 30_000)
    blocks = [pool.take((100, 100), torch.float32) for _ in range(5)]
    pool.give(blocks)
    assert len(pool.free) == 3                                    # 3 x 40 KB of 120 KB
    got = pool.take((50, 200), torch.float32)
    assert got.shape == (50, 200) and got.data_ptr() in {b.data_ptr() for b in blocks}
    assert pool.take((1000,), torch.float32).data_ptr() not in \
        {b.data_ptr() for b in blocks}                            # too big a block: a new one
    assert pool.take((100, 100), torch.float64).dtype == torch.float64
    assert len(pool.free) == 2
    fast_c.Pool(limit=0).give(blocks)                              # keeps nothing, no error
