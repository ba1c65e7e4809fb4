"""rnnlab's torch.nn drop-ins in the code people write around torch.nn's modules.

Each pattern runs on torch.nn's module and on rnnlab's, on every execution path, with the
same weights (float64), and the two must agree: weight norm (both APIs), a parametrization,
AWD-LSTM's WeightDrop, pruning, changing ``.dropout`` after construction, pickling and
``torch.save`` / ``torch.load`` of whole models (``weights_only`` included), the naive swap
``torch.nn.LSTM = rnnlab.LSTM``, dynamic quantization, an empty batch, and the errors of
torch.nn's own RNN tests (``test/test_nn.py``: ``test_projections_errors_on_gru_and_rnn``,
``test_error_RNN_seq_len_zero``, ``test_RNN_input_size_zero``, ``test_RNN_change_dropout``,
``test_RNN_dropout_state``, ``test_rnn_args_check``, ``test_rnn_initial_hidden_state``).
"""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from tolerances import F64
from torch import nn
from torch.nn.utils import parametrize, prune

import rnnlab
from rnnlab.layers import Bidirectional, Recurrent, Stack

pytestmark = pytest.mark.filterwarnings(
    "ignore:LSTM with projections is not supported with oneDNN:UserWarning")

I, H, P, T, B = 3, 4, 2, 5, 3
PATHS = list(rnnlab.compat.PATHS)
# name -> (torch.nn class, rnnlab class, constructor kwargs)
KINDS = {
    "rnn": (nn.RNN, rnnlab.RNN, {}),
    "lstm": (nn.LSTM, rnnlab.LSTM, {}),
    "lstm-proj": (nn.LSTM, rnnlab.LSTM, {"proj_size": P}),
    "gru": (nn.GRU, rnnlab.GRU, {}),
}


def pair(kind: str, path: str, **kwargs):
    """(torch.nn module, rnnlab module) of the same seed, float64."""
    ref_cls, cls, extra = KINDS[kind]
    kwargs = {"num_layers": 2, **extra, **kwargs}
    torch.manual_seed(0)
    ref = ref_cls(I, H, dtype=torch.float64, **kwargs)
    torch.manual_seed(0)
    mine = cls(I, H, dtype=torch.float64, path=path, **kwargs)
    return ref, mine


def inputs(seed: int = 1) -> torch.Tensor:
    return torch.randn(T, B, I, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def output(module, x, seed: int = 5):
    torch.manual_seed(seed)                  # the same dropout draws for both modules
    out, _ = module(x)
    return out


# every kind and every path in some case of the default run; the rest of the kinds x paths
# product with -m slow
FAST = {("rnn", "torch"), ("lstm", "auto"), ("lstm-proj", "fused"), ("gru", "fused"),
        ("gru", "reference")}
CASES = [pytest.param(k, p, id=f"{k}-{p}", marks=() if (k, p) in FAST else pytest.mark.slow)
         for k in KINDS for p in PATHS if not (k == "lstm-proj" and p == "torch")]


# -- isinstance -----------------------------------------------------------------------------

def test_rnnlab_modules_are_torch_nn_modules():
    for kind, (ref_cls, cls, extra) in KINDS.items():
        module = cls(I, H, **extra)
        assert isinstance(module, ref_cls) and isinstance(module, nn.RNNBase), kind
        assert module._flat_weights_names == ref_cls(I, H, **extra)._flat_weights_names
    for ref_cls, cls in ((nn.RNNCell, rnnlab.RNNCell), (nn.LSTMCell, rnnlab.LSTMCell),
                         (nn.GRUCell, rnnlab.GRUCell)):
        assert isinstance(cls(I, H), ref_cls) and isinstance(cls(I, H), nn.RNNCellBase)


# -- weights read through the attributes ----------------------------------------------------

@pytest.mark.filterwarnings("ignore:.*torch.nn.utils.weight_norm.*is deprecated")
@pytest.mark.parametrize("kind, path", CASES)
def test_weight_norm(kind, path):
    """Old and new weight-norm APIs: outputs follow g, and gradients reach g and v."""
    x = inputs()
    # torch's test_RNN_cudnn_weight_norm also normalises the projection of an LSTM
    old_name = "weight_hr_l0" if kind == "lstm-proj" else "weight_hh_l0"
    for apply in (lambda m: nn.utils.weight_norm(m, old_name),
                  lambda m: nn.utils.parametrizations.weight_norm(m, "weight_hh_l1")):
        ref, mine = (apply(m) for m in pair(kind, path))
        torch.testing.assert_close(output(mine, x), output(ref, x), **F64)
        params = [p for n, p in mine.named_parameters() if "_g" in n or "original0" in n]
        assert len(params) == 1
        with torch.no_grad():
            params[0].mul_(1.5)
            dict(ref.named_parameters())[[n for n, _ in mine.named_parameters()
                                          if "_g" in n or "original0" in n][0]].mul_(1.5)
        torch.testing.assert_close(output(mine, x), output(ref, x), **F64)
        output(mine, x).sum().backward()
        output(ref, x).sum().backward()
        grads = {n: p.grad for n, p in ref.named_parameters()}
        for name, p in mine.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
            torch.testing.assert_close(p.grad, grads[name], **F64)


class FixedDropConnect(nn.Module):
    """A parametrization: the weight times a fixed 0/2 mask (weight drop with its mask)."""

    def __init__(self, shape):
        super().__init__()
        self.register_buffer("mask", 2.0 * torch.bernoulli(
            torch.full(shape, 0.5, dtype=torch.float64), generator=torch.Generator()
            .manual_seed(3)))

    def forward(self, w):
        return w * self.mask


class DropConnect(nn.Module):
    def forward(self, w):
        return nn.functional.dropout(w, 0.5, self.training)


@pytest.mark.parametrize("kind, path", CASES)
def test_parametrize(kind, path):
    ref, mine = pair(kind, path)
    x = inputs()
    for m in (ref, mine):
        parametrize.register_parametrization(m, "weight_hh_l0",
                                             FixedDropConnect(m.weight_hh_l0.shape))
    torch.testing.assert_close(output(mine, x), output(ref, x), **F64)
    output(mine, x).sum().backward()
    output(ref, x).sum().backward()
    want = ref.parametrizations.weight_hh_l0.original.grad
    torch.testing.assert_close(mine.parametrizations.weight_hh_l0.original.grad, want, **F64)
    assert (want == 0).any()                      # the dropped entries get no gradient
    # a random weight drop acts: two training calls differ, evaluation is deterministic
    _, plain = pair(kind, path)
    parametrize.register_parametrization(plain, "weight_hh_l1", DropConnect())
    assert not torch.equal(output(plain, x, 1), output(plain, x, 2))
    plain.eval()
    assert torch.equal(output(plain, x, 1), output(plain, x, 2))


class WeightDrop(nn.Module):
    """AWD-LSTM's weight drop (salesforce/awd-lstm-lm ``weight_drop.py``): deletes the
    weight, registers ``<name>_raw``, and sets a dropped plain tensor before each forward."""

    def __init__(self, module, weights, dropout=0.0):
        super().__init__()
        self.module, self.weights, self.dropout = module, weights, dropout
        for name in weights:
            w = getattr(module, name)
            del module._parameters[name]
            module.register_parameter(name + "_raw", nn.Parameter(w.data))

    def forward(self, *args):
        for name in self.weights:
            raw = getattr(self.module, name + "_raw")
            setattr(self.module, name, nn.functional.dropout(raw, self.dropout, self.training))
        return self.module.forward(*args)


@pytest.mark.parametrize("kind, path", CASES)
def test_awd_weight_drop(kind, path):
    ref, mine = (WeightDrop(m, ["weight_hh_l0"], dropout=0.5) for m in pair(kind, path))
    x = inputs()
    want = output(ref, x)
    got = output(mine, x)
    torch.testing.assert_close(got, want, **F64)
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(mine.module.weight_hh_l0_raw.grad,
                               ref.module.weight_hh_l0_raw.grad, **F64)
    assert not torch.equal(output(mine, x, 1), output(mine, x, 2))   # a new mask each call


@pytest.mark.parametrize("kind, path", CASES)
def test_prune(kind, path):
    ref, mine = pair(kind, path)
    x = inputs()
    for m in (ref, mine):
        prune.l1_unstructured(m, "weight_ih_l0", amount=0.5)
    assert (mine.weight_ih_l0 == 0).sum() > 0
    torch.testing.assert_close(output(mine, x), output(ref, x), **F64)
    output(mine, x).sum().backward()
    output(ref, x).sum().backward()
    torch.testing.assert_close(mine.weight_ih_l0_orig.grad, ref.weight_ih_l0_orig.grad, **F64)


@pytest.mark.parametrize("kind, path", CASES)
def test_functional_call(kind, path):
    ref, mine = pair(kind, path)
    x = inputs()
    other = {k: torch.randn_like(v) for k, v in ref.state_dict().items()}
    want = torch.func.functional_call(ref, other, (x,))[0]
    torch.testing.assert_close(torch.func.functional_call(mine, other, (x,))[0], want, **F64)
    torch.testing.assert_close(output(mine, x), output(ref, x), **F64)     # its own again


# -- attributes: dropout, training ----------------------------------------------------------

@pytest.mark.parametrize("kind, path", CASES)
def test_change_dropout_after_construction(kind, path):
    """torch's test_RNN_change_dropout: ``.dropout`` set later acts at the next call."""
    ref, mine = pair(kind, path)
    x = inputs()
    base = output(mine, x)
    for p in (0.0, 0.5, 1.0, 0.0):
        ref.dropout = mine.dropout = p
        torch.testing.assert_close(output(mine, x), output(ref, x), **F64)
    mine.dropout = 1.0
    assert not torch.allclose(output(mine, x), base)
    mine.eval()
    torch.testing.assert_close(output(mine, x), base, **F64)


@pytest.mark.parametrize("path", [p if p in ("fused", "torch") else pytest.param(
    p, marks=pytest.mark.slow) for p in PATHS])
def test_dropout_sits_between_layers(path):
    """torch's test_RNN_dropout: all weights 1, a relu RNN of 2 layers; the first layer's
    output is 10 everywhere and the second's is 10 * (number of kept units) / (1 - p)."""
    for p in (0, 0.276, 0.731, 1):
        for train in (True, False):
            rnn = rnnlab.RNN(10, 100, 2, bias=False, dropout=p, nonlinearity="relu",
                             dtype=torch.float64, path=path).train(train)
            with torch.no_grad():
                for w in rnn.parameters():
                    w.fill_(1)
            out, h = rnn(torch.ones(1, 1, 10, dtype=torch.float64),
                         torch.zeros(2, 1, 100, dtype=torch.float64))
            value = out[0, 0, 0].item()
            assert out.min() == out.max() and h[0].min() == h[0].max() == 10
            assert h[1, 0, 0].item() == value
            if p == 0 or not train:
                assert value == 1000
            elif p == 1:
                assert value == 0
            else:
                kept = value * (1 - p) / 10
                assert abs(kept - round(kept)) < 1e-6 and 0 < kept < 100


# -- pickling and whole-model saving ----------------------------------------------------------

@pytest.mark.parametrize("kind, path", CASES)
def test_pickle_deepcopy_and_torch_save(kind, path):
    """torch's test_RNN_dropout_state: a saved and reloaded module gives the same outputs
    (eval mode, or no dropout), and keeps its dropout, path and train/eval state."""
    _, mine = pair(kind, path, dropout=0.25)
    x = inputs()
    for train in (True, False):
        mine.train(train)
        buf = io.BytesIO()
        torch.save(mine, buf)
        buf.seek(0)
        copies = [pickle.loads(pickle.dumps(mine)), copy.deepcopy(mine),
                  torch.load(buf, weights_only=False)]
        for twin in copies:
            assert type(twin) is type(mine) and twin.path == path and twin.training == train
            assert twin.dropout == 0.25
            torch.testing.assert_close(output(twin, x), output(mine, x), **F64)
            with torch.no_grad():
                twin.weight_hh_l0.add_(1.0)            # independent weights
            assert not torch.allclose(output(twin, x), output(mine, x))


def test_cells_pickle_and_deepcopy():
    x = torch.randn(B, I)
    for cls in (rnnlab.RNNCell, rnnlab.LSTMCell, rnnlab.GRUCell):
        cell = cls(I, H)
        for twin in (pickle.loads(pickle.dumps(cell)), copy.deepcopy(cell)):
            a, b = twin(x), cell(x)
            for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple)
                            else (b,)):
                assert torch.equal(u, v)


class Model(nn.Module):
    """pytorch/examples' word_language_model RNNModel, cut down."""

    def __init__(self, rnn):
        super().__init__()
        self.encoder, self.rnn, self.decoder = nn.Embedding(10, I), rnn, nn.Linear(H, 10)

    def forward(self, tokens):
        ys, _ = self.rnn(self.encoder(tokens))
        return self.decoder(ys)


def saved(model) -> io.BytesIO:
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    return buf


def test_weights_only_load_needs_what_torch_nn_needs():
    """torch.load(weights_only=True) of a whole model: torch.nn's needs every module class
    allowlisted, and so does rnnlab's, with the same number of classes and no others."""
    tokens = torch.randint(0, 10, (T, B))
    for torch_cls, cls in ((nn.LSTM, rnnlab.LSTM), (nn.GRU, rnnlab.GRU), (nn.RNN, rnnlab.RNN)):
        ref, mine = Model(torch_cls(I, H)), Model(cls(I, H))
        want = torch.serialization.get_unsafe_globals_in_checkpoint(saved(ref))
        got = torch.serialization.get_unsafe_globals_in_checkpoint(saved(mine))
        name = f"{cls.__module__}.{cls.__qualname__}"
        torch_name = f"{torch_cls.__module__}.{torch_cls.__qualname__}"
        assert sorted(got) == sorted(n if n != torch_name else name for n in want)
        for model in (ref, mine):
            with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
                torch.load(saved(model))
        with torch.serialization.safe_globals([Model, nn.Embedding, nn.Linear, cls]):
            loaded = torch.load(saved(mine))
        assert type(loaded.rnn) is cls
        torch.testing.assert_close(loaded(tokens), mine(tokens), rtol=0, atol=0)


def test_weights_only_load_of_rnnlab_layers():
    """A model of rnnlab's own layers (Stack, Recurrent, Bidirectional, cells) reloads with
    weights_only=True once its classes are allowlisted, as a torch.nn model does."""
    net = Stack([Bidirectional.from_cells(rnnlab.cells.LSTMCell(I, H),
                                          rnnlab.cells.LSTMCell(I, H)),
                 Recurrent(rnnlab.cells.GRUCell(2 * H, H), recurrent_dropout=0.1)],
                dropout=0.2).eval()
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(saved(net))
    assert all(n.startswith(("rnnlab.layers.", "rnnlab.cells.", "torch.nn.")) for n in unsafe)
    with torch.serialization.safe_globals([Stack, Recurrent, Bidirectional, nn.ModuleList,
                                           rnnlab.cells.LSTMCell, rnnlab.cells.GRUCell]):
        loaded = torch.load(saved(net))
    x = torch.randn(T, B, I)
    torch.testing.assert_close(loaded(x)[0], net(x)[0], rtol=0, atol=0)


# -- the naive swap -----------------------------------------------------------------------------

def test_naive_swap_of_torch_nn_classes(monkeypatch):
    """``torch.nn.LSTM = rnnlab.LSTM`` (and the others): code that builds ``nn.LSTM`` gets
    rnnlab's, and every path still runs (rnnlab keeps torch's classes from import time)."""
    torch.manual_seed(0)
    want = {n: getattr(nn, n)(I, H, 2, dtype=torch.float64) for n in ("RNN", "LSTM", "GRU")}
    for name in ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"):
        monkeypatch.setattr(torch.nn, name, getattr(rnnlab, name))
    x = inputs()
    for name, ref in want.items():
        for path in PATHS:
            module = getattr(nn, name)(I, H, 2, dtype=torch.float64, path=path)
            assert type(module) is getattr(rnnlab, name)
            module.load_state_dict(ref.state_dict())
            torch.testing.assert_close(module(x)[0], ref(x)[0], **F64)
    assert type(nn.LSTMCell(I, H)) is rnnlab.LSTMCell
    assert nn.LSTMCell(I, H)(torch.randn(B, I))[0].shape == (B, H)


# -- quantization -------------------------------------------------------------------------------

class Tagger(nn.Module):
    def __init__(self, rnn, cell):
        super().__init__()
        self.rnn, self.cell, self.out = rnn, cell, nn.Linear(H, 2)

    def forward(self, x):
        ys, _ = self.rnn(x)
        h = self.cell(x[0])
        return self.out(ys) + self.out(h[0] if isinstance(h, tuple) else h).unsqueeze(0)


@pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning",
                            "ignore:torch.quantize_per_tensor.*deprecated:UserWarning")
@pytest.mark.parametrize("rnn_name", ["LSTM", pytest.param("GRU", marks=pytest.mark.slow)])
def test_quantize_dynamic(rnn_name):
    """rnnlab.quantize_dynamic (torch's, knowing rnnlab's classes) gives the quantized
    modules and the outputs torch's quantize_dynamic gives for torch.nn's modules."""
    cell_name = "LSTMCell" if rnn_name == "LSTM" else "GRUCell"
    torch.manual_seed(0)
    ref = Tagger(getattr(nn, rnn_name)(I, H), getattr(nn, cell_name)(I, H)).eval()
    mine = Tagger(getattr(rnnlab, rnn_name)(I, H), getattr(rnnlab, cell_name)(I, H)).eval()
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I)
    for spec in (None, {getattr(nn, rnn_name), getattr(nn, cell_name), nn.Linear}):
        want_model = torch.ao.quantization.quantize_dynamic(ref, spec)
        got_model = rnnlab.quantize_dynamic(mine, spec)
        for child in ("rnn", "cell", "out"):
            assert type(getattr(got_model, child)) is type(getattr(want_model, child))
        assert type(got_model.rnn).__module__.startswith("torch.ao.nn.quantized.dynamic")
        torch.testing.assert_close(got_model(x), want_model(x), rtol=0, atol=0)
    # torch's own function, given rnnlab's classes and the mapping
    got = torch.ao.quantization.quantize_dynamic(
        mine, {getattr(rnnlab, rnn_name)}, mapping=rnnlab.compat.dynamic_quant_mapping())
    assert type(got.rnn).__module__.startswith("torch.ao.nn.quantized.dynamic")
    # and, as for any subclass of torch.nn's classes, torch's defaults leave it alone
    assert type(torch.ao.quantization.quantize_dynamic(mine).rnn) is getattr(rnnlab, rnn_name)


def test_to_torch_shares_weights():
    for kind, (ref_cls, cls, extra) in KINDS.items():
        mine = cls(I, H, num_layers=2, bidirectional=True, **extra)
        twin = rnnlab.compat.to_torch(mine)
        assert type(twin) is ref_cls
        assert all(a is b for a, b in zip(twin.parameters(), mine.parameters())), kind
    with pytest.raises(ValueError, match="reset"):
        rnnlab.compat.to_torch(rnnlab.GRU(I, H, reset="before"))
    with pytest.raises(TypeError, match="to_torch takes"):
        rnnlab.compat.to_torch(nn.Linear(2, 2))


# -- edge cases and errors of torch's own RNN tests -------------------------------------------

@pytest.mark.parametrize("kind, path", CASES)
def test_empty_batch(kind, path):
    """torch's test_RNN_input_size_zero: B = 0 gives empty outputs and a working backward."""
    ref, mine = pair(kind, path, bidirectional=True)
    x = torch.zeros(T, 0, I, dtype=torch.float64)
    out, h = mine(x)
    want, want_h = ref(x)
    assert out.shape == want.shape == (T, 0, 2 * (P if kind == "lstm-proj" else H))
    for a, b in zip(h if isinstance(h, tuple) else (h,),
                    want_h if isinstance(want_h, tuple) else (want_h,)):
        assert a.shape == b.shape
    out.sum().backward()


@pytest.mark.parametrize("kind, path", CASES)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_seq_len_zero_is_an_error(kind, path, bidirectional):
    """torch's test_error_RNN_seq_len_zero."""
    _, mine = pair(kind, path, bidirectional=bidirectional)
    with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0 in RNN"):
        mine(torch.ones(0, 10, I, dtype=torch.float64))


def test_projections_errors_on_gru_and_rnn():
    """torch's test_projections_errors_on_gru_and_rnn."""
    for cls in (rnnlab.RNN, rnnlab.GRU):
        with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM, "
                                             "not RNN or GRU"):
            cls(30, 20, 2, proj_size=10)


@pytest.mark.parametrize("name", ["RNN", "GRU", "LSTM"])
def test_rnn_args_check(name):
    """torch's test_rnn_args_check: every wrong input or hidden shape is a RuntimeError."""
    L, good_x, good_h = 2, (6, 4, I), (2, 4, H)
    model = getattr(rnnlab, name)(I, H, L)

    def bad(x_shape, h_shape):
        x, h = torch.randn(x_shape), torch.randn(h_shape)
        cases = [(h, h)] if name == "LSTM" and h_shape == good_h else \
            [(h, torch.randn(good_h)), (torch.randn(good_h), h)] if name == "LSTM" else [h]
        for hx in cases:
            with pytest.raises(RuntimeError):
                model(x, hx)

    bad((6, 7, I), good_h)
    bad(good_x, (2, 7, H))
    bad((6, 4, 7), good_h)
    bad(good_x, (2, 4, 7))
    bad(good_x, (7, 4, H))


@pytest.mark.parametrize("name", ["RNN", "GRU", "LSTM"])
def test_rnn_initial_hidden_state(name):
    """torch's test_rnn_initial_hidden_state: zeros given == no state given."""
    rnn = getattr(rnnlab, name)(I, H, 2)
    x, h = torch.randn(T, B, I), torch.zeros(2, B, H)
    a, ha = rnn(x, (h, h) if name == "LSTM" else h)
    b, hb = rnn(x)
    assert torch.equal(a, b)
    for u, v in zip(ha if name == "LSTM" else (ha,), hb if name == "LSTM" else (hb,)):
        assert torch.equal(u, v)


def test_state_dtype_mismatch_is_a_runtime_error_as_in_torch_nn():
    x = torch.randn(T, B, I)
    for path in PATHS:
        for ref, mine in (pair("gru", path), pair("lstm", path)):
            ref.float(), mine.float()
            h = torch.zeros(2, B, H, dtype=torch.float64)
            hx = (h, h) if isinstance(ref, nn.LSTM) else h
            with pytest.raises(RuntimeError):
                ref(x, hx)
            with pytest.raises(RuntimeError, match="dtype"):
                mine(x, hx)


# -- cells ---------------------------------------------------------------------------------------

CELLS = {"rnn-tanh": (nn.RNNCell, rnnlab.RNNCell, {}),
         "rnn-relu": (nn.RNNCell, rnnlab.RNNCell, {"nonlinearity": "relu"}),
         "lstm": (nn.LSTMCell, rnnlab.LSTMCell, {}),
         "gru": (nn.GRUCell, rnnlab.GRUCell, {})}


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("form", ["batched", "unbatched", "no-state"])
def test_cells_match_torch_nn(kind, bias, form):
    """Same seed -> same weights; same outputs and gradients (input, state, weights)."""
    ref_cls, cls, extra = CELLS[kind]
    torch.manual_seed(0)
    ref = ref_cls(I, H, bias=bias, dtype=torch.float64, **extra)
    torch.manual_seed(0)
    mine = cls(I, H, bias=bias, dtype=torch.float64, **extra)
    assert [(n, p.shape) for n, p in mine.named_parameters()] == \
        [(n, p.shape) for n, p in ref.named_parameters()]
    assert all(torch.equal(p, q) for p, q in zip(mine.parameters(), ref.parameters()))
    assert repr(mine) == repr(ref)
    g = torch.Generator().manual_seed(2)
    lead = () if form == "unbatched" else (B,)
    x = torch.randn(*lead, I, dtype=torch.float64, generator=g)
    state = None if form == "no-state" else tuple(
        torch.randn(*lead, H, dtype=torch.float64, generator=g)
        for _ in range(2 if kind == "lstm" else 1))

    def run(module):
        xs = x.clone().requires_grad_()
        hs = None if state is None else tuple(s.clone().requires_grad_() for s in state)
        out = module(xs, None if hs is None else (hs if kind == "lstm" else hs[0]))
        outs = out if isinstance(out, tuple) else (out,)
        loss = sum((o * torch.arange(o.numel(), dtype=o.dtype).view_as(o)).sum() for o in outs)
        leaves = [xs, *(hs or ()), *module.parameters()]
        return outs, torch.autograd.grad(loss, leaves)

    for got, want in zip(run(mine), run(ref)):
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, **F64)


def test_cells_weight_norm_acts():
    x = torch.randn(B, I, dtype=torch.float64)
    for ref_cls, cls in ((nn.RNNCell, rnnlab.RNNCell), (nn.LSTMCell, rnnlab.LSTMCell),
                         (nn.GRUCell, rnnlab.GRUCell)):
        torch.manual_seed(0)
        ref = nn.utils.parametrizations.weight_norm(ref_cls(I, H, dtype=torch.float64),
                                                    "weight_hh")
        torch.manual_seed(0)
        mine = nn.utils.parametrizations.weight_norm(cls(I, H, dtype=torch.float64),
                                                     "weight_hh")
        for m in (ref, mine):
            with torch.no_grad():
                m.parametrizations.weight_hh.original0.mul_(0.5)
        h = torch.randn(B, H, dtype=torch.float64)
        hx = (h, h) if ref_cls is nn.LSTMCell else h
        a, b = mine(x, hx), ref(x, hx)
        torch.testing.assert_close(a[0] if isinstance(a, tuple) else a,
                                   b[0] if isinstance(b, tuple) else b, **F64)


@pytest.mark.parametrize("kind", CELLS)
def test_cells_errors_match_torch_nn(kind):
    ref_cls, cls, extra = CELLS[kind]
    lstm = kind == "lstm"

    def state(*shape):
        return (torch.zeros(shape), torch.zeros(shape)) if lstm else torch.zeros(shape)

    for x, hx in [(torch.randn(3, I + 1), state(3, H)),       # input size
                  (torch.randn(3, I), state(3, H + 1)),       # hidden size
                  (torch.randn(3, I), state(5, H)),           # batch
                  (torch.randn(3, I), state(3, 1, 1, H)),     # hidden rank
                  (torch.randn(2, 3, I), state(3, H)),        # input rank
                  (torch.randn(3, I, dtype=torch.float64), None)]:   # dtype
        with pytest.raises(Exception) as want:
            ref_cls(I, H, **extra)(x, hx)
        with pytest.raises(want.type):
            cls(I, H, **extra)(x, hx)
    bad = ref_cls(I, H)
    if kind.startswith("rnn"):
        bad, mine = ref_cls(I, H, nonlinearity="sigmoid"), cls(I, H, nonlinearity="sigmoid")
        with pytest.raises(RuntimeError, match="Unknown nonlinearity"):
            bad(torch.randn(3, I))
        with pytest.raises(RuntimeError, match="Unknown nonlinearity"):
            mine(torch.randn(3, I))


@pytest.mark.parametrize("kind, path", CASES)
def test_backward_twice_with_retain_graph(kind, path):
    """torch's test_rnn_retain_variables: a second backward through the same graph gives
    the same gradients (no saved tensor is overwritten by the first)."""
    _, mine = pair(kind, path, bidirectional=True)
    x = inputs().requires_grad_()
    out, _ = mine(x)
    leaves = [x, *mine.parameters()]
    first = torch.autograd.grad(out.sum(), leaves, retain_graph=True)
    second = torch.autograd.grad(out.sum(), leaves)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_data_parallel_replicas_bind_their_own_weights():
    """nn.DataParallel's replicas share __dict__ entries; each gets its own weightless
    layers, so replicas running in threads never bind into the same cells."""
    _, mine = pair("gru", "fused")
    replica = mine._replicate_for_data_parallel()
    assert replica._stack is not mine._stack
    replica._parameters.update(mine._parameters)        # what nn.parallel.replicate does
    x = inputs()
    torch.testing.assert_close(replica(x)[0], mine(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["RNNCell", "GRUCell", "LSTMCell"])
@pytest.mark.parametrize("sizes", [(10, 0), (0, 5)], ids=["hidden0", "input0"])
def test_cells_with_a_zero_size_behave_as_torch_nn(kind, sizes):
    """torch's test_RNN_cell_forward_zero_hidden_size: a zero hidden (or input) size is an
    empty product for torch.nn's cells, not an error."""
    torch.manual_seed(0)
    ours = getattr(rnnlab, kind)(*sizes)
    torch.manual_seed(0)
    theirs = getattr(nn, kind)(*sizes)
    x = torch.randn(3, sizes[0])
    got, expected = ours(x), theirs(x)
    for a, b in zip(got if isinstance(got, tuple) else (got,),
                    expected if isinstance(expected, tuple) else (expected,)):
        assert a.shape == b.shape == (3, sizes[1])
        torch.testing.assert_close(a, b)


def _run_from_threads(module, inputs, repeats=60):
    """Each input through ``module`` ``repeats`` times, one thread per input, all at once;
    returns the failures (an exception, or an output that differs from a lone call's)."""
    import threading

    with torch.no_grad():
        expected = [module(x) for x in inputs]
    failures = []

    def first(out):
        return out[0] if isinstance(out, tuple) else out

    def work(k):
        try:
            with torch.no_grad():
                for _ in range(repeats):
                    if not torch.equal(first(module(inputs[k])), first(expected[k])):
                        failures.append(f"thread {k}: a different output")
                        return
        except Exception as error:        # noqa: BLE001 - reported by the assertion
            failures.append(f"thread {k}: {error!r}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


@pytest.mark.parametrize("path", ["fused", "reference"])
@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_one_module_runs_from_several_threads_at_once(kind, path):
    # torch.nn's modules can serve several threads at once; rnnlab's bind the weights into
    # weightless layers for each call, which must not be shared between threads
    torch.manual_seed(0)
    module = getattr(rnnlab, kind)(16, 32, num_layers=2, path=path).eval()
    T = 30 if path == "fused" else 10           # the reference loop is slower per step
    inputs = [torch.randn(T, 8, 16) for _ in range(6)]
    assert _run_from_threads(module, inputs) == []


@pytest.mark.parametrize("kind", ["RNNCell", "GRUCell", "LSTMCell"])
def test_one_cell_runs_from_several_threads_at_once(kind):
    torch.manual_seed(0)
    module = getattr(rnnlab, kind)(16, 32).eval()
    inputs = [torch.randn(8, 16) for _ in range(6)]
    assert _run_from_threads(module, inputs, repeats=300) == []


def test_an_unclaimed_replica_gives_its_layers_to_the_first_thread_that_runs_it():
    import threading

    from rnnlab.compat.threads import PerThread

    main, built = nn.Linear(1, 1), []
    holder = PerThread(main, claimed=False)        # a DataParallel replica's
    got = []
    worker = threading.Thread(target=lambda: got.append(holder.get(lambda: built.append(1))))
    worker.start()
    worker.join()
    assert got == [main] and built == []          # the worker thread took the main layers
    other = holder.get(lambda: nn.Linear(1, 1))   # this thread builds its own
    assert other is not main and holder.get(lambda: None) is other
