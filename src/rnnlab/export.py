"""ONNX export of a trained run's inference graph, with a dynamic sequence length.

    rnnlab export RUN --format onnx --out model.onnx

ONNX runs a recurrence with a dynamic number of steps only through its own ``RNN`` /
``LSTM`` / ``GRU`` operators (or a ``Loop``); the Python time loops of rnnlab's kernels and
reference path would be unrolled into a fixed length. So before export every
:class:`~rnnlab.layers.Recurrent` whose cell ONNX has an operator for — tanh/ReLU Elman,
LSTM (with or without projection), GRU with the reset gate after the product (torch.nn's and
cuDNN's form) — is swapped for the torch.nn layer holding the same weights (the parameter
names and gate orders already agree, see :mod:`rnnlab.compat`); a reverse layer reads its
input flipped in time. Other cells (MGU, leaky units, GRU reset-before, output feedback) have
no ONNX operator and are refused with a clear error.

Without the swap, ``torch.onnx.export(..., dynamo=False)`` of a model that runs the fused
kernels (``rnnlab.RNN/GRU/LSTM``, a :class:`~rnnlab.layers.Recurrent` over an Elman, LSTM or
GRU cell) also writes native ONNX RNN / GRU / LSTM nodes: importing this module registers
symbolic functions for the kernels' operators (opset >= 14; end of this file).

The graph takes the task's model input, time-major ``(T, B, ...)`` with T and B dynamic, and
returns the model's first output (``(T, B, ...)`` logits or predictions) for full-length
sequences. It is exported with torch's TorchScript-based ONNX exporter
(``torch.onnx.export(dynamo=False)``): the dynamo-based one, torch 2.13's default, exports
``nn.LSTM`` with the example's length fixed into a Reshape (measured: onnxruntime fails on any
other T), which defeats the purpose.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from .cells import ElmanCell, GRUCell, LSTMCell, LSTMState
from .layers import Recurrent

__all__ = ["ExportError", "onnx_ready", "export_onnx"]


class ExportError(ValueError):
    """A model that cannot be exported (a cell without an ONNX operator, missing packages)."""


class TorchRecurrent(nn.Module):
    """A :class:`Recurrent` re-expressed as one torch.nn RNN/LSTM/GRU layer (same weights)."""

    def __init__(self, layer: Recurrent):
        super().__init__()
        cell = layer.cell
        bias = getattr(cell, "b_xh", None) is not None
        if any(layer.zoneout):        # recurrent dropout is off at evaluation; zoneout is not
            raise ExportError(f"a layer with zoneout {layer.zoneout} cannot be exported: at "
                              f"evaluation it mixes h(t-1) into every step, which the ONNX "
                              f"RNN/LSTM/GRU operators have no form for")
        if type(cell) is ElmanCell:
            self.rnn = nn.RNN(cell.input_size, cell.hidden_size, bias=bias,
                              nonlinearity=cell.nonlinearity)
        elif type(cell) is LSTMCell:
            self.rnn = nn.LSTM(cell.input_size, cell.hidden_size, bias=bias,
                               proj_size=cell.proj_size or 0)
        elif type(cell) is GRUCell and cell.reset == "after":
            self.rnn = nn.GRU(cell.input_size, cell.hidden_size, bias=bias)
        else:
            name = type(cell).__name__ + (f"(reset={cell.reset!r})" if type(cell) is GRUCell
                                          else "")
            raise ExportError(f"{name} has no ONNX recurrent operator; exportable cells: "
                              f"rnn, relu, lstm, gru (reset after)")
        names = {"W_xh": "weight_ih_l0", "W_hh": "weight_hh_l0", "b_xh": "bias_ih_l0",
                 "b_hh": "bias_hh_l0", "W_hr": "weight_hr_l0"}
        with torch.no_grad():
            for ours, theirs in names.items():
                value = getattr(cell, ours, None)
                if value is not None:
                    getattr(self.rnn, theirs).copy_(value)
        self.reverse = layer.reverse
        self.lstm = type(cell) is LSTMCell

    def forward(self, xs: Tensor, state=None, lengths=None):
        if lengths is not None:
            raise ExportError("the exported graph reads full-length sequences (no lengths)")
        if state is not None:
            state = (tuple(s.unsqueeze(0) for s in state) if self.lstm else state.unsqueeze(0))
        if self.reverse:
            xs = xs.flip(0)
        ys, final = self.rnn(xs, state)
        if self.reverse:
            ys = ys.flip(0)
        if self.lstm:
            return ys, LSTMState(final[0][0], final[1][0])
        return ys, final[0]


class FirstOutput(nn.Module):
    """The model with only its first output (the graph's result)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return out[0] if isinstance(out, (tuple, list)) else out


def onnx_ready(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) with its Recurrent layers as torch.nn layers."""
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, Recurrent):
                setattr(module, child_name, TorchRecurrent(child))
    return FirstOutput(model)


def export_onnx(model: nn.Module, example: Tensor, path: str | Path,
                opset: int = 17) -> nn.Module:
    """Write ``model``'s inference graph for inputs like ``example`` (T, B, ...) to ``path``
    with T and B dynamic; return the module that was exported (for comparisons)."""
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'rnnlab[export]'") \
            from None
    ready = onnx_ready(model)
    with torch.no_grad():
        reference = ready(example)
    dynamic = {"input": {0: "T", 1: "B"}, "output": {0: "T", 1: "B"}}
    if reference.dim() < 2:
        dynamic.pop("output")
    with warnings.catch_warnings():      # the TorchScript exporter is deprecated, not broken
        warnings.simplefilter("ignore")
        torch.onnx.export(ready, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes=dynamic)
    return ready


# ---- the kernels' operators as native ONNX RNN / GRU / LSTM nodes ---------------------------
#
# With these symbolic functions, torch's TorchScript-based exporter
# (``torch.onnx.export(..., dynamo=False)``, opset >= 14) writes a model that calls the
# fused kernels directly (``rnnlab.RNN/GRU/LSTM``, :class:`~rnnlab.layers.Recurrent`) as
# ONNX's own recurrent operators, T and B dynamic. They cover full-length inference calls:
# no lengths, recurrent dropout or zoneout masks, no LSTM projection (ONNX's LSTM has none).
# The kernels' extra outputs (what their backward reads) are unused in inference and export
# as empty constants.

_ONNX_OPSET = 14


def _constant(g, value):
    return g.op("Constant", value_t=torch.as_tensor(value))


def _rows(g, w, blocks, H: int):
    """The rows of ``w`` reordered: ``blocks`` lists the H-row gate blocks to take, in order."""
    parts = [g.op("Slice", w, _constant(g, [k * H]), _constant(g, [(k + 1) * H]),
                  _constant(g, [0])) for k in blocks]
    return g.op("Concat", *parts, axis_i=0)


def _unused(g):
    """An omitted optional input of an ONNX node."""
    node = g.op("prim::Constant")
    node.setType(torch._C.OptionalType.ofTensor())
    return node


def _unsqueeze(g, x):
    return g.op("Unsqueeze", x, _constant(g, [0]))


def _squeeze(g, x, axis: int):
    return g.op("Squeeze", x, _constant(g, [axis]))


def _check_onnx_call(op: str, *optional):
    from torch.onnx import symbolic_helper as sh

    if not all(sh._is_none(v) for v in optional):
        raise ExportError(f"rnnlab::{op}: ONNX export covers full-length inference calls (no "
                          f"lengths, recurrent dropout, zoneout or LSTM projection)")


def _hidden(w) -> int:
    from torch.onnx import symbolic_helper as sh

    sizes = sh._get_tensor_sizes(w)
    return sizes[1]


def _direction(reverse) -> str:
    from torch.onnx import symbolic_helper as sh

    return "reverse" if sh._parse_arg(reverse, "b") else "forward"


def _bias(g, b, size: int):
    """A bias input, or zeros for a kernel call without one."""
    from torch.onnx import symbolic_helper as sh

    return _constant(g, torch.zeros(size)) if sh._is_none(b) else b


def _elman_onnx(g, xs, h0, W_xh, W_hh, bias, mask, reverse, relu, drop=None, zone=None):
    from torch.onnx import symbolic_helper as sh

    _check_onnx_call("elman", mask, drop, zone)
    H = _hidden(W_hh)
    b = g.op("Concat", _bias(g, bias, H), _constant(g, torch.zeros(H)), axis_i=0)
    Y, Y_h = g.op("RNN", xs, _unsqueeze(g, W_xh), _unsqueeze(g, W_hh), _unsqueeze(g, b),
                  _unused(g), _unsqueeze(g, h0), hidden_size_i=H,
                  activations_s=["Relu" if sh._parse_arg(relu, "b") else "Tanh"],
                  direction_s=_direction(reverse), outputs=2)
    empty = _constant(g, torch.zeros(0))
    return _squeeze(g, Y, 1), _squeeze(g, Y_h, 0), empty, empty


def _gru_onnx(g, xs, h0, W_xh, W_hh, bias_x, b_hn, mask, reverse, drop=None, zone=None):
    _check_onnx_call("gru", mask, drop, zone)
    H = _hidden(W_hh)
    zrn = (1, 0, 2)                                  # rnnlab's r, z, n -> ONNX's z, r, h
    b_x = _rows(g, _bias(g, bias_x, 3 * H), zrn, H)
    b_h = g.op("Concat", _constant(g, torch.zeros(2 * H)), _bias(g, b_hn, H), axis_i=0)
    Y, Y_h = g.op("GRU", xs, _unsqueeze(g, _rows(g, W_xh, zrn, H)),
                  _unsqueeze(g, _rows(g, W_hh, zrn, H)),
                  _unsqueeze(g, g.op("Concat", b_x, b_h, axis_i=0)), _unused(g),
                  _unsqueeze(g, h0), hidden_size_i=H, linear_before_reset_i=1,
                  direction_s=_direction(reverse), outputs=2)
    empty = _constant(g, torch.zeros(0))
    return _squeeze(g, Y, 1), _squeeze(g, Y_h, 0), empty, empty, empty


def _lstm_onnx(g, xs, h0, c0, W_xh, W_hh, bias, mask, reverse, W_hr=None, drop=None,
               zh=None, zc=None, keep=None, keep_tanh_c=None):
    _check_onnx_call("lstm", mask, W_hr, drop, zh, zc)
    H = _hidden(W_hh)
    iofc = (0, 2, 1, 3)                              # the kernel's i, f, o, g -> ONNX's i, o, f, c
    b = g.op("Concat", _rows(g, _bias(g, bias, 4 * H), iofc, H),
             _constant(g, torch.zeros(4 * H)), axis_i=0)
    Y, Y_h, Y_c = g.op("LSTM", xs, _unsqueeze(g, _rows(g, W_xh, iofc, H)),
                       _unsqueeze(g, _rows(g, W_hh, iofc, H)), _unsqueeze(g, b),
                       _unused(g), _unsqueeze(g, h0), _unsqueeze(g, c0),
                       hidden_size_i=H, direction_s=_direction(reverse), outputs=3)
    empty = _constant(g, torch.zeros(0))
    return (_squeeze(g, Y, 1), _squeeze(g, Y_h, 0), _squeeze(g, Y_c, 0), *[empty] * 6)


def register_onnx_symbolics() -> None:
    """Teach torch's TorchScript-based ONNX exporter the kernels' operators (idempotent)."""
    for name, fn in (("elman", _elman_onnx), ("gru", _gru_onnx), ("lstm", _lstm_onnx)):
        torch.onnx.register_custom_op_symbolic(f"rnnlab::{name}", fn, _ONNX_OPSET)


register_onnx_symbolics()
