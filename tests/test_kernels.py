"""Fused kernels beyond the gradient triangle (that is tests/test_triangle.py, one table
over every kernel): which cells get a kernel, the input-gradient GEMM skipped when the
input needs no gradient, float32 over a longer sequence."""

import pytest
import torch
from cases import flag, product
from tolerances import F32
from torch.utils._python_dispatch import TorchDispatchMode

import rnnlab
from rnnlab.kernels._common import IMPLEMENTATIONS

T, B, I, H = 7, 2, 3, 5          # T·B = 14 rows of I = 3: a shape no other GEMM here makes


def test_kernel_dispatch_by_options():
    assert rnnlab.find_kernel(rnnlab.cells.LSTMCell(I, H, proj_size=2)) is not None
    assert rnnlab.find_kernel(rnnlab.cells.GRUCell(I, H, reset="before")) is not None
    assert rnnlab.find_kernel(rnnlab.MGUCell(I, H)) is not None
    assert rnnlab.find_kernel(rnnlab.cells.GRUCell(I, H)) is not None


def test_leaky_kernel_only_around_elman():
    assert rnnlab.find_kernel(rnnlab.LeakyCell(rnnlab.ElmanCell(I, H))) is not None
    assert rnnlab.find_kernel(rnnlab.LeakyCell(rnnlab.cells.GRUCell(I, H))) is None
    assert rnnlab.find_kernel(rnnlab.LeakyCell(rnnlab.cells.LSTMCell(I, H))) is None


class _MatmulShapes(TorchDispatchMode):
    """Records the output shape of every matrix product ATen runs inside the block, inside
    the kernels' operators too (a dispatch mode sees a custom op as one call: it runs the
    op's Python implementation under the mode)."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        inner = IMPLEMENTATIONS.get(func.name())
        if inner is not None:
            with self:
                return inner(*args, **(kwargs or {}))
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.matmul,
                                   torch.ops.aten.bmm, torch.ops.aten.baddbmm):
            self.shapes.append(tuple(out.shape))
        return out


SKIPPING = {
    "elman": lambda: rnnlab.ElmanCell(I, H),
    "lstm": lambda: rnnlab.cells.LSTMCell(I, H),
    "lstm-proj": lambda: rnnlab.cells.LSTMCell(I, H, proj_size=4),
    "gru-after": lambda: rnnlab.cells.GRUCell(I, H),
    "gru-before": lambda: rnnlab.cells.GRUCell(I, H, reset="before"),
    "mgu": lambda: rnnlab.MGUCell(I, H),
    "leaky": lambda: rnnlab.LeakyCell(rnnlab.ElmanCell(I, H), learn_alpha=True),
}


@pytest.mark.parametrize("name,ragged,reverse",
                         product({k: k for k in SKIPPING}, flag("ragged"), flag("reverse")))
def test_kernel_skips_unneeded_input_gradient(name, ragged, reverse):
    """The backward runs the (T·B, I) input-gradient GEMM only when the input needs a
    gradient, and then gives the reference loop's gradient; the weights get theirs either
    way."""
    torch.manual_seed(0)
    cell = SKIPPING[name]()
    lengths = torch.tensor([T, 3]) if ragged else None
    layer = rnnlab.Recurrent(cell, reverse=reverse)
    assert layer.path == "fused"
    xs = torch.randn(T, B, I)
    ref = xs.clone().requires_grad_(True)
    ys, _ = rnnlab.Recurrent(cell, reverse=reverse, use_kernel=False)(ref, lengths=lengths)
    ys.sum().backward()
    for needs in (True, False):
        x = xs.clone().requires_grad_(needs)
        ys, _ = layer(x, lengths=lengths)
        cell.zero_grad(set_to_none=True)
        with _MatmulShapes() as seen:
            ys.sum().backward()
        assert ((T * B, I) in seen.shapes) == needs, seen.shapes
        assert all(p.grad is not None for p in cell.parameters())
        if needs:
            torch.testing.assert_close(x.grad, ref.grad, **F32)


def test_float32_kernel_close_to_reference():
    torch.manual_seed(0)
    cell = rnnlab.cells.LSTMCell(8, 16)
    xs = torch.randn(20, 3, 8)
    a, _ = rnnlab.Recurrent(cell)(xs, lengths=torch.tensor([20, 7, 1]))
    b, _ = rnnlab.Recurrent(cell, use_kernel=False)(xs, lengths=torch.tensor([20, 7, 1]))
    torch.testing.assert_close(a, b, **F32)
