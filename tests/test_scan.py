"""The linear scan and the minGRU / minLSTM cells: the gradient triangle (scan kernel ==
autograd through the reference step == float64 gradcheck) for both scan methods, with
ragged lengths (including 0), in both directions, from a given initial state."""

import itertools

import pytest
import torch

import rnnlab
from rnnlab.cells.linear import MinGRUCell, MinLSTMCell
from rnnlab.kernels import scan
from rnnlab.kernels.scan import ChunkedScan, SequentialScan, linear_kernel, linear_scan
from rnnlab.unroll import length_mask

T, B, I, H = 7, 4, 3, 5
RAGGED = torch.tensor([7, 2, 0, 5])
CELLS = {"mingru": MinGRUCell, "minlstm": MinLSTMCell}
METHODS = ["sequential", "chunked"]


def _rand(*shape, g, requires_grad=True):
    return torch.randn(*shape, dtype=torch.float64, generator=g, requires_grad=requires_grad)


def _naive_scan(a, b, h0, reverse):
    hs, h = [None] * a.shape[0], h0
    for t in reversed(range(a.shape[0])) if reverse else range(a.shape[0]):
        h = a[t] * h + b[t]
        hs[t] = h
    return torch.stack(hs)


def _run(cell, xs, h0, lengths, reverse, use_kernel):
    layer = rnnlab.Recurrent(cell, reverse=reverse, use_kernel=use_kernel)
    ys, h = layer(xs, h0, lengths)
    g = torch.Generator().manual_seed(7)
    loss = (ys * torch.randn(ys.shape, dtype=ys.dtype, generator=g)).sum()
    loss = loss + (h * torch.randn(h.shape, dtype=h.dtype, generator=g)).sum()
    grads = torch.autograd.grad(loss, [xs, h0, *cell.parameters()])
    return [ys.detach(), h.detach(), *grads]


@pytest.fixture(params=METHODS)
def method(request, monkeypatch):
    """Force linear_scan's automatic choice to one method."""
    monkeypatch.setattr(scan, "choose_method", lambda T, channels: request.param)
    return request.param


@pytest.mark.parametrize("name,bias,ragged,reverse",
                         list(itertools.product(CELLS, [True, False], [False, True],
                                                [False, True])))
def test_kernel_matches_reference_step(name, bias, ragged, reverse, method):
    torch.manual_seed(0)
    cell = CELLS[name](I, H, bias=bias, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    xs, h0 = _rand(T, B, I, g=g), _rand(B, H, g=g)
    lengths = RAGGED if ragged else None
    fused = _run(cell, xs, h0, lengths, reverse, use_kernel=True)
    reference = _run(cell, xs, h0, lengths, reverse, use_kernel=False)
    for a, b in zip(fused, reference):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,reverse", list(itertools.product(CELLS, [False, True])))
def test_kernel_gradcheck(name, reverse, method):
    cell = CELLS[name](I, H, dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    mask = length_mask(RAGGED, T, B)
    names = [name for name, _ in cell.named_parameters()]
    module = _KernelModule(cell)

    def kernel(xs, h0, *weights):
        params = {f"cell.{name}": w for name, w in zip(names, weights)}
        return torch.func.functional_call(module, params, (xs, h0, mask, reverse))

    params = cell.parameters()
    args = (_rand(T, B, I, g=g), _rand(B, H, g=g), *(p.detach().clone().requires_grad_()
                                                      for p in params))
    assert torch.autograd.gradcheck(kernel, args, fast_mode=True)


class _KernelModule(torch.nn.Module):
    """Lets gradcheck pass the cell's weights as inputs of :func:`linear_kernel`."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def forward(self, xs, h0, mask, reverse):
        return linear_kernel(self.cell, xs, h0, mask, reverse)


@pytest.mark.parametrize("chunk,reverse", list(itertools.product([None, 2, 3], [False, True])))
def test_scan_gradcheck(chunk, reverse):
    """The sequential scan, and the chunked one with chunks of 2 and 3 (T = 7: whole chunks
    plus a sequential tail)."""
    g = torch.Generator().manual_seed(3)
    a = torch.rand(T, B, H, dtype=torch.float64, generator=g).requires_grad_()
    args = (a, _rand(T, B, H, g=g), _rand(B, H, g=g))
    if chunk is None:
        assert torch.autograd.gradcheck(lambda *x: SequentialScan.apply(*x, reverse), args)
    else:
        assert torch.autograd.gradcheck(lambda *x: ChunkedScan.apply(*x, reverse, chunk), args)


@pytest.mark.parametrize("steps,reverse", list(itertools.product([1, 2, 9, 64], [False, True])))
def test_scan_methods_match_the_loop(steps, reverse):
    g = torch.Generator().manual_seed(4)
    a = torch.rand(steps, 2, 3, dtype=torch.float64, generator=g)
    b, h0 = _rand(steps, 2, 3, g=g, requires_grad=False), _rand(2, 3, g=g, requires_grad=False)
    expected = _naive_scan(a, b, h0, reverse)
    for method in METHODS:
        torch.testing.assert_close(linear_scan(a, b, h0, reverse, method), expected)


def test_auto_picks_each_method_and_they_agree():
    """At a size where auto picks the chunked scan and one where it picks the loop, the
    other method gives the same states and gradients (float32)."""
    small = (scan.CHUNKED_MIN_STEPS, 1, scan.CHUNKED_MAX_CHANNELS)
    large = (scan.CHUNKED_MIN_STEPS, 1, scan.CHUNKED_MAX_CHANNELS + 1)
    assert scan.choose_method(small[0], small[1] * small[2]) == "chunked"
    assert scan.choose_method(large[0], large[1] * large[2]) == "sequential"
    assert scan.choose_method(scan.CHUNKED_MIN_STEPS - 1, 1) == "sequential"
    torch.manual_seed(5)
    for shape in (small, large):
        a = (0.5 + 0.5 * torch.rand(shape)).requires_grad_()
        b, h0 = torch.randn(shape, requires_grad=True), torch.randn(shape[1:], requires_grad=True)
        up = torch.randn(shape)
        results = []
        for method in ["auto", *METHODS]:
            hs = linear_scan(a, b, h0, method=method)
            results.append([hs, *torch.autograd.grad((hs * up).sum(), [a, b, h0])])
        for other in results[1:]:
            for x, y in zip(results[0], other):
                torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4)


def test_linear_scan_checks_shapes():
    a = torch.rand(3, 2, 4)
    with pytest.raises(ValueError, match="same shape"):
        linear_scan(a, torch.rand(3, 2, 5), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="h0 must have shape"):
        linear_scan(a, a, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="method"):
        linear_scan(a, a, torch.zeros(2, 4), method="blelloch")


@pytest.mark.parametrize("name", CELLS)
def test_find_kernel_and_coefficients(name):
    cell = CELLS[name](I, H)
    assert rnnlab.find_kernel(cell) is linear_kernel
    xs = torch.randn(T, B, I)
    a, b = cell.coefficients(xs)
    assert a.shape == b.shape == (T, B, H)
    h0 = torch.randn(B, H)
    h, _ = cell(h0, xs[0])
    torch.testing.assert_close(h, a[0] * h0 + b[0])
