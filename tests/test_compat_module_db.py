"""PyTorch's own module test samples, run against rnnlab's drop-ins.

``torch.testing._internal.common_modules.module_db`` (shipped in the torch wheel) holds, for
``nn.RNN``, ``nn.GRU``, ``nn.LSTM`` and the three cells, the constructor arguments and
inputs that PyTorch's ``test/test_modules.py`` runs (``module_inputs_func``, packed
sequences included), and the bad arguments and inputs with the error each must raise
(``module_error_inputs_func``). Here every sample builds rnnlab's class, on the default
path and on the fused one, and checks what ``test_modules.py`` checks: outputs and
gradients against torch.nn's module of the same seed, ``gradcheck`` and (slow)
``gradgradcheck`` in float64, pickling, and the expected error's type and message.
"""

from __future__ import annotations

import io
import pickle
from functools import partial

import pytest
import torch
from tolerances import F64
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.testing._internal.common_modules import ModuleErrorEnum, module_db
from torch.utils._pytree import tree_flatten, tree_unflatten

import rnnlab

pytestmark = pytest.mark.filterwarnings(
    "ignore:LSTM with projections is not supported with oneDNN:UserWarning")

OURS = {nn.RNN: rnnlab.RNN, nn.GRU: rnnlab.GRU, nn.LSTM: rnnlab.LSTM,
        nn.RNNCell: rnnlab.RNNCell, nn.GRUCell: rnnlab.GRUCell, nn.LSTMCell: rnnlab.LSTMCell}
INFOS = [info for info in module_db if info.module_cls in OURS]
SEQUENCE = (nn.RNN, nn.GRU, nn.LSTM)


def samples(info, dtype=torch.float64, training=True, packed=True):
    """The module_inputs_func samples (RNN, GRU: with their packed-sequence ones)."""
    func = info.module_inputs_func
    if packed and info.module_cls in (nn.RNN, nn.GRU):
        func = partial(func, with_packed_sequence=True)
    return func(info, device="cpu", dtype=dtype, requires_grad=True, training=training)


def cases(paths=("auto", "fused"), packed=True):
    """(info, sample index, path) for every sample of every entry, one pytest id each
    (``packed=False``: the samples of torch's test_modules.py, without the packed ones)."""
    out = []
    for info in INFOS:
        for k in range(len(samples(info, packed=packed))):
            for path in (paths if info.module_cls in SEQUENCE else ("cell",)):
                out.append(pytest.param(info, k, path,
                                        id=f"{info.module_cls.__name__}-{k}-{path}"))
    return out


def build(info, sample, path):
    args, kwargs = sample.constructor_input.args, dict(sample.constructor_input.kwargs)
    if path != "cell":
        kwargs["path"] = path
    torch.manual_seed(0)
    return OURS[info.module_cls](*args, **kwargs).double()


def reference(info, sample):
    torch.manual_seed(0)
    return info.module_cls(*sample.constructor_input.args,
                           **sample.constructor_input.kwargs).double()


def leaves(outputs):
    """The output tensors, a PackedSequence's by its data."""
    if isinstance(outputs, PackedSequence):
        return [outputs.data]
    if isinstance(outputs, (tuple, list)):
        return [t for o in outputs for t in leaves(o)]
    return [outputs]


def forward_inputs(sample):
    """Fresh leaf copies of a sample's inputs (each check differentiates its own)."""
    def copy(x):
        if isinstance(x, PackedSequence):
            return PackedSequence(x.data.detach().clone().requires_grad_(), x.batch_sizes,
                                  x.sorted_indices, x.unsorted_indices)
        if isinstance(x, torch.Tensor):
            return x.detach().clone().requires_grad_(x.requires_grad)
        if isinstance(x, tuple):
            return tuple(copy(e) for e in x)
        return x
    return [copy(a) for a in sample.forward_input.args]


def tensor_leaves(args):
    return [t for t in leaves(list(args)) if isinstance(t, torch.Tensor) and t.requires_grad]


def thin(params: list, every: int) -> list:
    """Every ``every``-th case in the default run (all entries, both paths), the rest slow."""
    return [p if k % every == 0 else pytest.param(*p.values, id=p.id, marks=pytest.mark.slow)
            for k, p in enumerate(params)]


ALL = cases()
PLAIN = cases(packed=False)                      # test_modules.py's own samples


@pytest.mark.parametrize("info, k, path", thin(ALL, 11))
@pytest.mark.parametrize("training", [True, pytest.param(False, marks=pytest.mark.slow)],
                         ids=["train", "eval"])
def test_forward_matches_torch_nn(info, k, path, training):
    sample = samples(info, training=training)[k]
    ref, mine = reference(info, sample).train(training), build(info, sample, path).train(training)
    got_in, want_in = forward_inputs(sample), forward_inputs(sample)
    got, want = leaves(mine(*got_in)), leaves(ref(*want_in))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **F64)
    weights = [torch.randn(w.shape, dtype=w.dtype, generator=torch.Generator().manual_seed(n))
               for n, w in enumerate(want)]
    got_grads = torch.autograd.grad(got, tensor_leaves(got_in) + list(mine.parameters()),
                                    weights, allow_unused=True)
    want_grads = torch.autograd.grad(want, tensor_leaves(want_in) + list(ref.parameters()),
                                     weights, allow_unused=True)
    for a, b in zip(got_grads, want_grads):
        assert (a is None) == (b is None)
        if b is not None:
            torch.testing.assert_close(a, b, **F64)


def gradcheck_inputs(info, k, path):
    sample = samples(info, packed=False)[k]
    mine = build(info, sample, path)
    args = forward_inputs(sample)
    # as test_modules.py: the inputs and the module's own parameters, perturbed in place
    flat, spec = tree_flatten((args, tuple(mine.parameters())))
    assert all(isinstance(f, torch.Tensor) and f.requires_grad for f in flat)

    def fn(*flat_inputs):
        new_args, _ = tree_unflatten(list(flat_inputs), spec)
        return tuple(leaves(mine(*new_args)))

    return fn, flat


@pytest.mark.parametrize("info, k, path", thin(PLAIN, 83))
def test_gradcheck(info, k, path):
    fn, inputs = gradcheck_inputs(info, k, path)
    assert torch.autograd.gradcheck(fn, inputs)


GRADGRAD = [pytest.param(*p.values, id=p.id, marks=pytest.mark.slow) for p in PLAIN]


@pytest.mark.parametrize("info, k, path", GRADGRAD)
def test_gradgradcheck(info, k, path):
    """Double backward through torch's op, the cells' reference steps and the fused kernels
    (whose backward, with create_graph=True, differentiates the plain-ops reference)."""
    fn, inputs = gradcheck_inputs(info, k, path)
    assert torch.autograd.gradgradcheck(fn, inputs)


@pytest.mark.parametrize("info, k, path", thin(ALL, 11))
def test_pickle(info, k, path):
    """test_modules.py's test_pickle: torch.save / torch.load of the module, then the same
    outputs; and pickle.dumps / loads."""
    sample = samples(info)[k]
    mine = build(info, sample, path)
    buf = io.BytesIO()
    torch.save(mine, buf)
    buf.seek(0)
    for twin in (torch.load(buf, weights_only=False), pickle.loads(pickle.dumps(mine))):
        assert type(twin) is type(mine)
        for a, b in zip(leaves(twin(*forward_inputs(sample))),
                        leaves(mine(*forward_inputs(sample)))):
            assert torch.equal(a, b)


def error_cases():
    out = []
    for info in INFOS:
        errors = info.module_error_inputs_func(info, device="cpu", dtype=torch.float32,
                                               requires_grad=False, training=True)
        for k in range(len(errors)):
            paths = ("auto", "fused") if info.module_cls in SEQUENCE else ("cell",)
            for path in paths:
                out.append(pytest.param(info, k, path,
                                        id=f"{info.module_cls.__name__}-{k}-{path}"))
    return out


@pytest.mark.parametrize("info, k, path", error_cases())
def test_expected_errors(info, k, path):
    """test_modules.py's test_errors: the same exception type and message."""
    error = info.module_error_inputs_func(info, device="cpu", dtype=torch.float32,
                                          requires_grad=False, training=True)[k]
    sample = error.module_error_input
    cls = OURS[info.module_cls]
    kwargs = dict(sample.constructor_input.kwargs)
    if path != "cell":
        kwargs["path"] = path
    if error.error_on == ModuleErrorEnum.CONSTRUCTION_ERROR:
        with pytest.raises(error.error_type, match=error.error_regex):
            cls(*sample.constructor_input.args, **kwargs)
    else:
        m = cls(*sample.constructor_input.args, **kwargs)
        with pytest.raises(error.error_type, match=error.error_regex):
            m(*sample.forward_input.args, **sample.forward_input.kwargs)
