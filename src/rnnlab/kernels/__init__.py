"""Fused sequence kernels with hand-derived back-propagation through time.

A kernel runs a whole sequence for one cell family: the input projections of all steps
are one GEMM, each step is one recurrent GEMM plus pointwise work into preallocated buffers,
and the backward is the book's BPTT (eqs. 10.16-10.22 and their gated analogues) written
out, with the parameter gradients as one GEMM over all T·B rows after the backward loop.

Each kernel is a PyTorch operator, registered with ``torch.library``
(:func:`._common.register`): ``torch.ops.rnnlab.<name>`` (elman, gru, gru_before, lstm, mgu,
leaky, scan, chunked_scan, feedback, teacher_forced, ln_lstm, ln_gru) and its backward
``torch.ops.rnnlab.<name>_backward``, with fake (meta) kernels, registered autograd, and
autocast (the recurrence runs in float32). So ``torch.compile(fullgraph=True)``,
``torch.export``, ``torch.jit.trace`` and ONNX export (:mod:`rnnlab.export`) see one opaque
operator per layer and direction, not its time loop. Double backward (``create_graph=True``)
differentiates the plain-ops reference (the cells' steps under :func:`rnnlab.unroll`); the
first-order backward is always the hand-derived one.

Kernels: Elman (tanh, relu), LSTM (with or without projection), GRU (reset gate after or
before the product), MGU, leaky Elman (a LeakyCell around an ElmanCell), and the linear
recurrences of minGRU / minLSTM (sequential or chunked parallel scan, :mod:`.scan`), and the
output-to-hidden recurrence of Fig. 10.4 (:mod:`.feedback`), and the layer-normalised LSTM
and GRU (:mod:`.lnorm`).
:func:`find_kernel` returns None for other cells and options, which then run the reference
loop.

Every kernel has the signature ``kernel(cell, xs (T, B, I), state, mask (T, B, 1) bool or
None, reverse) -> (ys (T, B, O), state)`` and gives the same values and gradients as
:func:`rnnlab.unroll` over the cell's reference step.
"""

from __future__ import annotations

from ..cells import (
    ElmanCell,
    GRUCell,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LeakyCell,
    LSTMCell,
    MGUCell,
    MinGRUCell,
    MinLSTMCell,
    OutputFeedbackCell,
)
from .elman import elman_kernel
from .feedback import feedback_kernel
from .gru import gru_before_kernel, gru_kernel
from .leaky import leaky_kernel
from .lnorm import ln_gru_kernel, ln_lstm_kernel
from .lstm import lstm_kernel
from .mgu import mgu_kernel
from .scan import linear_kernel

__all__ = ["find_kernel", "compiled_first", "elman_kernel", "lstm_kernel", "gru_kernel",
           "gru_before_kernel", "mgu_kernel", "leaky_kernel", "linear_kernel", "feedback_kernel",
           "ln_lstm_kernel", "ln_gru_kernel"]


def compiled_first(cell, regularized: bool) -> bool:
    """Whether ``cell``'s kernel hands a training call over to the generic path's compiled C
    loops (:mod:`rnnlab.fast_c`) where they apply: the kernels that run their steps as ATen
    ops from Python (the layer-normalised cells; the LSTM with a projection, recurrent
    dropout or zoneout, which leave torch's own LSTM op), measured slower than those loops
    (benchmarks/RESULTS.md, section G)."""
    if isinstance(cell, (LayerNormLSTMCell, LayerNormGRUCell)):
        return True
    return isinstance(cell, LSTMCell) and (cell.proj_size > 0 or regularized)


def find_kernel(cell):
    """The fused kernel for ``cell``, or None when its family or options have none."""
    if isinstance(cell, ElmanCell):
        return elman_kernel
    if isinstance(cell, LSTMCell):
        return lstm_kernel
    if isinstance(cell, GRUCell):
        return gru_kernel if cell.reset == "after" else gru_before_kernel
    if isinstance(cell, MGUCell):
        return mgu_kernel
    if isinstance(cell, LeakyCell) and isinstance(cell.cell, ElmanCell):
        return leaky_kernel
    if isinstance(cell, (MinGRUCell, MinLSTMCell)):
        return linear_kernel
    if isinstance(cell, OutputFeedbackCell):
        return feedback_kernel
    if isinstance(cell, LayerNormLSTMCell):
        return ln_lstm_kernel
    if isinstance(cell, LayerNormGRUCell):
        return ln_gru_kernel
    return None
