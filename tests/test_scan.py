"""The linear scan and the minGRU / minLSTM cells: gradcheck of both scan Functions, both
methods against a plain loop and against each other, shape errors, the cells' coefficients.
The gradient triangle of the scan kernel (both methods, bias on/off, ragged, both
directions) is in tests/test_triangle.py."""

import pytest
import torch
from cases import flag, product
from tolerances import F32, F64

import rnnlab
from rnnlab.cells.linear import MinGRUCell, MinLSTMCell
from rnnlab.kernels import scan
from rnnlab.kernels.scan import ChunkedScan, SequentialScan, linear_kernel, linear_scan

T, B, I, H = 7, 4, 3, 5
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


@pytest.mark.parametrize("chunk,reverse", product({"sequential": None, "chunks-of-2": 2,
                                                    "chunks-of-3": 3}, flag("reverse")))
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


@pytest.mark.parametrize("steps,reverse", product({f"{n}steps": n for n in (1, 2, 9, 64)},
                                                  flag("reverse")))
def test_scan_methods_match_the_loop(steps, reverse):
    g = torch.Generator().manual_seed(4)
    a = torch.rand(steps, 2, 3, dtype=torch.float64, generator=g)
    b, h0 = _rand(steps, 2, 3, g=g, requires_grad=False), _rand(2, 3, g=g, requires_grad=False)
    expected = _naive_scan(a, b, h0, reverse)
    for method in METHODS:
        torch.testing.assert_close(linear_scan(a, b, h0, reverse, method), expected, **F64)


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
                torch.testing.assert_close(x, y, **F32)


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
    torch.testing.assert_close(h, a[0] * h0 + b[0], **F32)
