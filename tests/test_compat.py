"""rnnlab.RNN / LSTM / GRU against torch.nn.RNN / LSTM / GRU with the same weights.

Every constructor option is crossed with every input form (batched, unbatched, packed
sorted, packed unsorted) and with and without initial states; outputs, final states and
the gradients w.r.t. the input, the initial states and every parameter must agree in
float64, on every execution path: the fused kernels, the reference loop and torch's own op.
"""

from __future__ import annotations

import copy

import pytest
import torch
from cases import flag, pairwise, product
from tolerances import F32, F64
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnnlab

I, H, P, T, B = 3, 4, 2, 5, 3

# torch.nn's own CPU LSTM with proj_size in float32 warns that oneDNN cannot run it
pytestmark = pytest.mark.filterwarnings(
    "ignore:LSTM with projections is not supported with oneDNN:UserWarning")

# name -> (torch.nn class, rnnlab class, extra constructor kwargs)
KINDS = {
    "rnn-tanh": (nn.RNN, rnnlab.RNN, {"nonlinearity": "tanh"}),
    "rnn-relu": (nn.RNN, rnnlab.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, rnnlab.LSTM, {}),
    "lstm-proj": (nn.LSTM, rnnlab.LSTM, {"proj_size": P}),
    "gru": (nn.GRU, rnnlab.GRU, {}),
}
# (num_layers, dropout): dropout acts only between layers, and torch.nn warns about it
# with one layer (an error under filterwarnings=error). Packed cases run in eval mode, so
# they cover two layers without dropout.
DEPTHS = {"1layer": (1, 0.0), "2layers-dropout": (2, 0.5)}
INPUTS = ["batched", "unbatched", "packed-sorted", "packed-unsorted"]
LENGTHS = {"packed-sorted": [5, 3, 2], "packed-unsorted": [2, 5, 3]}


def make(kind: str, seed: int = 0, path: str = "fused", **kwargs):
    """(torch.nn module, rnnlab module) built from the same seed."""
    ref_cls, cls, extra = KINDS[kind]
    kwargs = {**extra, **kwargs}
    torch.manual_seed(seed)
    ref = ref_cls(I, H, **kwargs)
    torch.manual_seed(seed)
    mine = cls(I, H, path=path, **kwargs)
    return ref, mine


def is_lstm(module) -> bool:
    return isinstance(module, (nn.LSTM, rnnlab.LSTM))


def initial_states(module, batch: int | None, generator: torch.Generator):
    """Random h_0 (or (h_0, c_0)) of torch.nn's layout; 2-D when ``batch`` is None."""
    D = 2 if module.bidirectional else 1
    lead = (D * module.num_layers,) if batch is None else (D * module.num_layers, batch)
    h = torch.randn(*lead, module.proj_size or module.hidden_size, generator=generator)
    if is_lstm(module):
        return (h, torch.randn(*lead, module.hidden_size, generator=generator))
    return (h,)


def run(module, xs, hx, mode: str, batch_first: bool, seed: int):
    """Forward (seeded, for dropout) and a random linear loss over every output.

    ``xs`` is the padded time-major input (T, B, I), or (T, I) when unbatched; packed inputs
    are packed from it inside, so its gradient covers the packing too.
    """
    if mode.startswith("packed"):
        x = pack_padded_sequence(xs, torch.tensor(LENGTHS[mode]),
                                 enforce_sorted=mode == "packed-sorted")
    elif mode == "batched" and batch_first:
        x = xs.transpose(0, 1)
    else:
        x = xs
    state = None if hx is None else (hx if is_lstm(module) else hx[0])
    if module.training and module.dropout > 0:
        torch.manual_seed(seed)
    out, h_n = module(x, state)
    finals = h_n if is_lstm(module) else (h_n,)
    g = torch.Generator().manual_seed(seed + 1)
    data = out.data if isinstance(out, PackedSequence) else out
    loss = (data * torch.randn(data.shape, generator=g)).sum()
    loss = loss + sum((f * torch.randn(f.shape, generator=g)).sum() for f in finals)
    inputs = [xs, *(hx or ())]
    params = dict(module.named_parameters())
    grads = torch.autograd.grad(loss, inputs + list(params.values()))
    return out, finals, grads[:len(inputs)], dict(zip(params, grads[len(inputs):]))


def close(got, want, what: str = "") -> None:
    """assert_close at float64 tolerances; the cheap check first (hundreds of cases)."""
    if got.shape == want.shape and got.dtype == want.dtype and \
            torch.allclose(got, want, **F64):
        return
    torch.testing.assert_close(got, want, **F64, msg=lambda m: f"{what}: {m}")


def assert_same_output(out, ref):
    if isinstance(ref, PackedSequence):
        assert isinstance(out, PackedSequence)
        close(out.data, ref.data, "output")
        assert torch.equal(out.batch_sizes, ref.batch_sizes)
        for got, want in ((out.sorted_indices, ref.sorted_indices),
                          (out.unsorted_indices, ref.unsorted_indices)):
            assert (got is None) == (want is None)
            if want is not None:
                assert torch.equal(got, want)
    else:
        assert not isinstance(out, PackedSequence)
        close(out, ref, "output")


# every kind crossed with an all-pairs cover of the options by default (every pair of option
# values meets, for every kind); the rest of the 640-case product runs with -m slow
@pytest.mark.parametrize(
    "kind, depth, bias, batch_first, bidirectional, mode, with_h0",
    pairwise({k: k for k in KINDS}, DEPTHS, flag("", off="nobias"), flag("batchfirst"),
             flag("bidir"), {m: m for m in INPUTS}, flag("h0")))
def test_matches_torch_nn(kind, depth, bias, batch_first, bidirectional, mode, with_h0):
    num_layers, dropout = depth
    kwargs = dict(num_layers=num_layers, bias=bias, batch_first=batch_first,
                  dropout=dropout, bidirectional=bidirectional)
    ref, _ = make(kind, **kwargs)
    ref.double()
    packed = mode.startswith("packed")
    if packed:
        # torch.nn draws dropout masks over the packed rows, rnnlab over (T, B, F): the
        # documented difference; compare without dropout
        ref.eval()
    g = torch.Generator().manual_seed(1)
    xs = torch.randn((T, I) if mode == "unbatched" else (T, B, I), generator=g,
                     dtype=torch.float64)
    if packed:  # zero padding, as pad_packed_sequence would give
        steps = torch.arange(T)[:, None] < torch.tensor(LENGTHS[mode])[None, :]
        xs = xs * steps[..., None]
    hx = initial_states(ref, None if mode == "unbatched" else B, g) if with_h0 else None
    hx = None if hx is None else tuple(h.double() for h in hx)

    def leaves():
        return xs.clone().requires_grad_(), (None if hx is None else
                                             tuple(h.clone().requires_grad_() for h in hx))

    want = run(ref, *leaves(), mode, batch_first, seed=7)
    _, cls, extra = KINDS[kind]
    # torch's LSTM warns on every call with a projection (no oneDNN kernel): not a path
    # rnnlab takes for it, so not tested here
    paths = ("fused", "reference") if kind == "lstm-proj" else ("fused", "reference", "torch")
    for path in paths:
        mine = cls(I, H, **extra, **kwargs, path=path, dtype=torch.float64)
        mine.load_state_dict(ref.state_dict(), strict=True)
        mine.train(ref.training)
        out, finals, input_grads, param_grads = run(mine, *leaves(), mode, batch_first, seed=7)
        assert_same_output(out, want[0])
        assert len(finals) == len(want[1])
        for got, expected, name in zip(finals, want[1], ["h_n", "c_n"]):
            close(got, expected, name)
        for got, expected, name in zip(input_grads, want[2], ["d input", "d h_0", "d c_0"]):
            close(got, expected, name)
        assert list(param_grads) == list(want[3])
        for name, expected in want[3].items():
            close(param_grads[name], expected, f"d {name}")


# -- parameters, state dicts, initialisation ---------------------------------------------

SHAPES = product({k: k for k in KINDS}, {"1layer": 1, "2layers": 2}, flag("", off="nobias"),
                 flag("bidir"))


@pytest.mark.parametrize("kind, num_layers, bias, bidirectional", SHAPES)
def test_parameters_and_state_dicts_match(kind, num_layers, bias, bidirectional):
    kwargs = dict(num_layers=num_layers, bias=bias, bidirectional=bidirectional)
    ref, mine = make(kind, **kwargs)
    assert [(n, p.shape) for n, p in mine.named_parameters()] == \
        [(n, p.shape) for n, p in ref.named_parameters()]
    assert list(mine.state_dict()) == list(ref.state_dict())
    assert [[p.shape for p in ps] for ps in mine.all_weights] == \
        [[p.shape for p in ps] for ps in ref.all_weights]

    # torch.nn -> rnnlab
    _, mine = make(kind, seed=1, **kwargs)
    mine.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(T, B, I)
    torch.testing.assert_close(mine(x)[0], ref(x)[0], **F32)
    # rnnlab -> torch.nn
    ref2, mine2 = make(kind, seed=2, **kwargs)
    with torch.no_grad():
        for p in mine2.parameters():
            p.uniform_(-1, 1)
    ref2.load_state_dict(mine2.state_dict(), strict=True)
    torch.testing.assert_close(ref2(x)[0], mine2(x)[0], **F32)


@pytest.mark.parametrize("kind", KINDS)
def test_load_state_dict_assign_and_functional_call(kind):
    ref, mine = make(kind, num_layers=2, bidirectional=True, dtype=torch.float64)
    new = {k: torch.randn_like(v) for k, v in ref.state_dict().items()}
    x = torch.randn(T, B, I, dtype=torch.float64)
    ref.load_state_dict(new, assign=True)
    mine.load_state_dict(new, assign=True)
    assert all(p is new[n] or torch.equal(p, new[n]) for n, p in mine.named_parameters())
    torch.testing.assert_close(mine(x)[0], ref(x)[0], **F64)

    other = {k: torch.randn_like(v) for k, v in new.items()}
    want = torch.func.functional_call(ref, other, (x,))[0]
    torch.testing.assert_close(torch.func.functional_call(mine, other, (x,))[0], want, **F64)
    torch.testing.assert_close(mine(x)[0], ref(x)[0], **F64)  # and back to its own weights


@pytest.mark.parametrize("kind, num_layers, bias, bidirectional", SHAPES)
@pytest.mark.parametrize("factory", [{}, {"device": "cpu"}, {"dtype": torch.float32},
                                     {"device": "cpu", "dtype": torch.float64}],
                         ids=["no-factory", "cpu", "float32", "cpu-float64"])
def test_same_seed_gives_same_weights(kind, num_layers, bias, bidirectional, factory):
    ref, mine = make(kind, num_layers=num_layers, bias=bias, bidirectional=bidirectional,
                     **factory)
    for (name, p), (ref_name, q) in zip(mine.named_parameters(), ref.named_parameters()):
        assert name == ref_name
        assert p.dtype == q.dtype == factory.get("dtype", torch.get_default_dtype())
        assert p.device == q.device
        assert torch.equal(p, q), name
    # and the random stream is left where torch.nn leaves it
    ref_cls, cls, extra = KINDS[kind]
    kwargs = dict(extra, num_layers=num_layers, bias=bias, bidirectional=bidirectional, **factory)
    after = []
    for c in (ref_cls, cls):
        torch.manual_seed(0)
        c(I, H, **kwargs)
        after.append(torch.rand(3))
    assert torch.equal(*after)


def test_reset_parameters_matches_torch_nn():
    ref, mine = make("lstm-proj", num_layers=2, bidirectional=True)
    torch.manual_seed(5)
    ref.reset_parameters()
    torch.manual_seed(5)
    mine.reset_parameters()
    for p, q in zip(mine.parameters(), ref.parameters()):
        assert torch.equal(p, q)


# -- packed sequences ------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["unidir", "bidir"])
def test_packed_unsorted_states_in_original_order(kind, bidirectional):
    """h_0 is given and h_n returned in the caller's batch order, not the sorted one."""
    ref, mine = make(kind, num_layers=2, bidirectional=bidirectional, dtype=torch.float64)
    lengths = torch.tensor([2, 5, 1, 3])
    xs = torch.randn(T, 4, I, dtype=torch.float64)
    packed = pack_padded_sequence(xs, lengths, enforce_sorted=False)
    g = torch.Generator().manual_seed(0)
    hx = tuple(h.double() for h in initial_states(ref, 4, g))
    hx = hx if is_lstm(ref) else hx[0]
    out, h_n = mine(packed, hx)
    want, want_h = ref(packed, hx)
    assert_same_output(out, want)
    for got, expected in zip(h_n if is_lstm(ref) else (h_n,), want_h if is_lstm(ref) else
                             (want_h,)):
        close(got, expected, "h_n")
    # the final state of sequence b is the one it reaches alone
    for b in range(4):
        hb = tuple(h[:, b:b + 1] for h in hx) if is_lstm(ref) else hx[:, b:b + 1]
        _, alone = mine(xs[:lengths[b], b:b + 1], hb)
        for got, expected in zip(h_n if is_lstm(ref) else (h_n,),
                                 alone if is_lstm(ref) else (alone,)):
            close(got[:, b:b + 1], expected, f"h_n of sequence {b}")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_packed_dropout_in_training_has_the_right_shapes(kind):
    """The documented difference: masks differ from torch.nn, but the output is well formed."""
    _, mine = make(kind, num_layers=2, dropout=0.5)
    packed = pack_padded_sequence(torch.randn(T, B, I), torch.tensor([2, 5, 3]),
                                  enforce_sorted=False)
    out, _ = mine.train()(packed)
    assert out.data.shape == (int(packed.batch_sizes.sum()), H)
    assert torch.equal(out.batch_sizes, packed.batch_sizes)


# -- module behaviour ------------------------------------------------------------------


def assert_stack_holds_no_weights(module):
    """The layers' cells are weightless between calls: every forward binds the module's."""
    assert all(p.is_meta for p in module._stack.parameters())
    assert not any(p.is_meta for p in module.parameters())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("convert", [lambda m: m.double(), lambda m: m.to(torch.float64),
                                     lambda m: m.to(dtype=torch.float64)],
                         ids=["double", "to", "to-kw"])
def test_dtype_conversion_keeps_module_working(kind, convert):
    ref, mine = make(kind, num_layers=2, bidirectional=True)
    assert convert(mine) is mine
    ref.double()
    assert_stack_holds_no_weights(mine)
    assert all(p.dtype == torch.float64 for p in mine.parameters())
    x = torch.randn(T, B, I, dtype=torch.float64)
    out, _ = mine(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref(x)[0], **F64)
    out.sum().backward()
    ref(x)[0].sum().backward()
    assert mine.weight_hh_l0.grad is not None
    assert mine.weight_hh_l0.grad.dtype == torch.float64
    torch.testing.assert_close(mine.weight_hh_l1_reverse.grad, ref.weight_hh_l1_reverse.grad,
                               **F64)


@pytest.mark.parametrize("kind", KINDS)
def test_deepcopy_is_independent_and_working(kind):
    _, mine = make(kind, num_layers=2)
    twin = copy.deepcopy(mine)
    assert_stack_holds_no_weights(twin)
    x = torch.randn(T, B, I)
    torch.testing.assert_close(twin(x)[0], mine(x)[0], **F32)
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(1.0)
    assert not torch.allclose(twin(x)[0], mine(x)[0])
    twin(x)[0].sum().backward()
    assert twin.weight_ih_l1.grad is not None and mine.weight_ih_l1.grad is None


@pytest.mark.parametrize("kind", KINDS)
def test_train_eval_toggles_dropout(kind):
    ref, mine = make(kind, num_layers=2, dropout=0.5)
    x = torch.randn(T, B, I)
    assert mine.training
    torch.manual_seed(0)
    a = mine(x)[0]
    torch.manual_seed(1)
    b = mine(x)[0]
    assert not torch.allclose(a, b)
    assert mine.eval() is mine and not mine.training
    assert torch.equal(mine(x)[0], mine(x)[0])               # no dropout in eval
    torch.testing.assert_close(mine(x)[0], ref.eval()(x)[0], **F32)
    # through a parent module too
    parent = nn.Sequential(mine).train()
    assert mine.training
    torch.manual_seed(0)
    assert torch.equal(parent[0](x)[0], a)


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_masks_match_torch_nn_in_training(kind):
    """Unpacked input: the same seed draws the same masks as torch.nn (float32 here too)."""
    ref, mine = make(kind, num_layers=3, dropout=0.3, bidirectional=True, batch_first=True)
    x = torch.randn(B, T, I)
    torch.manual_seed(3)
    want = ref(x)[0]
    torch.manual_seed(3)
    torch.testing.assert_close(mine(x)[0], want, **F32)


def test_flatten_parameters_and_repr():
    for kind in KINDS:
        ref, mine = make(kind)
        assert mine.flatten_parameters() is None
        assert repr(mine) == repr(ref)
    kwargs = dict(num_layers=2, bias=False, batch_first=True, dropout=0.25, bidirectional=True)
    for kind in KINDS:
        ref, mine = make(kind, **kwargs)
        assert repr(mine) == repr(ref)
    assert "proj_size=2" in repr(make("lstm-proj")[1])


def test_constructor_attributes_match_torch_nn():
    for kind in KINDS:
        ref, mine = make(kind, num_layers=2, batch_first=True, dropout=0.5,
                         bidirectional=True, bias=False)
        for attr in ("input_size", "hidden_size", "num_layers", "bias", "batch_first",
                     "dropout", "bidirectional", "proj_size"):
            assert getattr(mine, attr) == getattr(ref, attr), (kind, attr)
        if kind.startswith("rnn"):
            assert mine.nonlinearity == ref.nonlinearity


def test_positional_arguments_follow_torch_nn():
    """RNN takes nonlinearity fourth, as torch.nn does; LSTM takes proj_size eighth."""
    rnn = rnnlab.RNN(I, H, 2, "relu", False, True, 0.5, True)
    assert (rnn.nonlinearity, rnn.bias, rnn.batch_first, rnn.dropout, rnn.bidirectional) == \
        ("relu", False, True, 0.5, True)
    lstm = rnnlab.LSTM(I, H, 1, True, False, 0.0, False, P)
    assert lstm.proj_size == P


# -- errors ------------------------------------------------------------------------------


def assert_same_error(pair, call, match):
    """``call(x)`` raises for both of ``pair`` (torch.nn's first); rnnlab's error has
    torch.nn's type and a message that names the problem."""
    ref, mine = pair
    with pytest.raises(Exception) as ref_info:
        call(ref)
    with pytest.raises(ref_info.type, match=match):
        call(mine)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(T,), (1, T, B, I)], ids=["1d", "4d"])
def test_wrong_input_rank(kind, shape):
    x = torch.randn(shape)
    assert_same_error(make(kind), lambda m: m(x), "2D or 3D|shape")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(T, B, I + 2), (T, I + 2)], ids=["batched", "unbatched"])
def test_wrong_feature_size(kind, shape):
    x = torch.randn(shape)
    assert_same_error(make(kind), lambda m: m(x), f"input_size.*{I}.*{I + 2}")


def state(kind, h_shape, c_shape):
    h = torch.zeros(h_shape)
    return (h, torch.zeros(c_shape)) if kind.startswith("lstm") else h


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("h_shape, c_shape, unbatched, match", [
    ((1, B + 1, "out"), (1, B, H), False, "[Ee]xpected hidden"),     # wrong batch
    ((2, B, "out"), (1, B, H), False, "[Ee]xpected hidden"),         # wrong layers x dirs
    ((1, B, "out+1"), (1, B, H), False, "[Ee]xpected hidden"),       # wrong size
    ((B, "out"), (B, H), False, "3-D"),                              # 2-D for batched
    ((1, 1, "out"), (1, 1, H), True, "2-D"),                         # 3-D for unbatched
], ids=["wrong-batch", "wrong-layers", "wrong-size", "2d-for-batched", "3d-for-unbatched"])
def test_wrong_h0_shape(kind, h_shape, c_shape, unbatched, match):
    out = P if kind == "lstm-proj" else H
    h_shape = tuple({"out": out, "out+1": out + 1}.get(d, d) for d in h_shape)
    hx = state(kind, h_shape, c_shape)
    x = torch.randn((T, I) if unbatched else (T, B, I))
    assert_same_error(make(kind), lambda m: m(x, hx), match)


@pytest.mark.parametrize("kind", ["lstm", "lstm-proj"])
def test_wrong_c0_shape(kind):
    out = P if kind == "lstm-proj" else H
    hx = state(kind, (1, B, out), (1, B, H + 1))
    x = torch.randn(T, B, I)
    assert_same_error(make(kind), lambda m: m(x, hx), "[Ee]xpected hidden")


@pytest.mark.parametrize("kind", ["lstm", "lstm-proj"])
def test_lstm_needs_a_pair_state(kind):
    """A tensor, a 1-tuple or a 3-tuple for (h_0, c_0): torch.nn's exception types."""
    x = torch.randn(T, B, I)
    h = torch.zeros(1, B, P if kind == "lstm-proj" else H)
    for hx in (h, (h,), (h, torch.zeros(1, B, H), torch.zeros(1, B, H))):
        assert_same_error(make(kind), lambda m, hx=hx: m(x, hx), "hidden states|pair")


def test_lstm_takes_a_list_state_like_torch_nn():
    ref, mine = make("lstm")
    x = torch.randn(T, B, I)
    hx = [torch.randn(1, B, H), torch.randn(1, B, H)]
    torch.testing.assert_close(mine(x, hx)[0], ref(x, hx)[0], **F32)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("kwargs, match", [
    ({"dropout": 1.5}, "dropout"),
    ({"dropout": -0.1}, "dropout"),
    ({"input_size": 0}, "input_size"),
    ({"hidden_size": 0}, "hidden_size"),
    ({"hidden_size": -2}, "hidden_size"),
    ({"num_layers": 0}, "num_layers"),
], ids=["dropout-above-1", "dropout-negative", "input-size-0", "hidden-size-0",
        "hidden-size-negative", "num-layers-0"])
def test_invalid_constructor_arguments(kind, kwargs, match):
    ref_cls, cls, extra = KINDS[kind]
    args = {"input_size": I, "hidden_size": H, **extra, **kwargs}
    if kind == "lstm-proj" and args["hidden_size"] <= P:
        args.pop("proj_size")
    assert_same_error((ref_cls, cls), lambda c: c(**args), match)


@pytest.mark.parametrize("proj_size, match", [(H, "proj_size"), (H + 1, "proj_size"),
                                              (-1, "proj_size")],
                         ids=["equal-to-hidden", "above-hidden", "negative"])
def test_invalid_proj_size(proj_size, match):
    assert_same_error((nn.LSTM, rnnlab.LSTM), lambda c: c(I, H, proj_size=proj_size), match)


def test_unknown_nonlinearity():
    assert_same_error((nn.RNN, rnnlab.RNN), lambda c: c(I, H, nonlinearity="sigmoid"),
                      "nonlinearity.*sigmoid")


def test_dropout_with_one_layer_warns_like_torch_nn():
    for cls in (nn.GRU, rnnlab.GRU):
        with pytest.warns(UserWarning, match="num_layers greater than 1"):
            cls(I, H, dropout=0.5)


# -- execution paths ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("mode", ["batched", "packed-unsorted"])
def test_auto_path_matches_torch_nn(kind, mode):
    """path="auto" (the default) picks torch's op or the fused kernel; either way the
    outputs and gradients are torch.nn's, dropout masks included."""
    ref, mine = make(kind, path="auto", num_layers=2, dropout=0.5, bidirectional=True,
                     dtype=torch.float64)
    if mode.startswith("packed"):
        ref.eval(), mine.eval()
    g = torch.Generator().manual_seed(3)
    xs = torch.randn(T, B, I, dtype=torch.float64, generator=g)
    want = run(ref, xs.clone().requires_grad_(), None, mode, False, seed=5)
    got = run(mine, xs.clone().requires_grad_(), None, mode, False, seed=5)
    assert_same_output(got[0], want[0])
    for a, b in zip([*got[1], *got[2], *got[3].values()], [*want[1], *want[2], *want[3].values()]):
        if b is not None:
            close(a, b)


def test_auto_path_choice_on_cpu():
    x = torch.randn(T, B, I)
    assert rnnlab.LSTM(I, H)._uses_torch(x)                      # oneDNN LSTM is faster
    assert not rnnlab.LSTM(I, H, proj_size=2)._uses_torch(x)     # no oneDNN kernel for it
    assert not rnnlab.GRU(I, H)._uses_torch(x)                   # the fused GRU is faster
    assert not rnnlab.RNN(I, H)._uses_torch(x)
    assert not rnnlab.GRU(I, H, reset="before")._uses_torch(x)   # rnnlab-only option
    assert rnnlab.GRU(I, H, path="torch")._uses_torch(x)


def test_torch_path_follows_module_changes():
    """The torch path runs on the registered tensors: dtype moves, deepcopy, assign-loads."""
    ref, mine = make("lstm", path="torch", num_layers=2)
    mine.double()
    ref.double()
    x = torch.randn(T, B, I, dtype=torch.float64)
    close(mine(x)[0], ref(x)[0])
    mine(x)[0].sum().backward()
    assert mine.weight_hh_l1.grad is not None
    twin = copy.deepcopy(mine)
    with torch.no_grad():
        twin.weight_hh_l0.add_(1.0)
    close(mine(x)[0], ref(x)[0])
    assert not torch.allclose(twin(x)[0], ref(x)[0])
    other = nn.LSTM(I, H, num_layers=2, dtype=torch.float64)
    mine.load_state_dict(other.state_dict(), assign=True)
    close(mine(x)[0], other(x)[0])


def test_path_errors():
    with pytest.raises(ValueError, match="path must be one of auto, fused, reference, torch"):
        rnnlab.LSTM(I, H, path="cudnn")
    with pytest.raises(ValueError, match=r"path='torch'.*no rnnlab cell options \(reset\)"):
        rnnlab.GRU(I, H, path="torch", reset="before")
