"""Drop-in replacements for ``torch.nn.RNNCell``, ``torch.nn.LSTMCell`` and
``torch.nn.GRUCell``: one step of the book's recurrences.

Each is a subclass of the torch.nn class, built by torch.nn's constructor (arguments,
parameters ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``, initialisation), takes
the same inputs (batched (B, I) or unbatched (I,), with or without a state) and returns the
same outputs, with the exception types torch.nn raises for bad input. The step itself is
the reference step of rnnlab's own cell (:class:`rnnlab.cells.ElmanCell`,
:class:`rnnlab.cells.LSTMCell`, :class:`rnnlab.cells.GRUCell`: plain torch ops, the book's
equations), run on the weights read through this module's attributes on every call, so
weight norm, parametrizations, pruning and ``torch.func.functional_call`` act on it.

rnnlab's own cells (the cell contract of :mod:`rnnlab.cells`: ``init_state`` and
``(state, x) -> (state, y)``) keep their names in :mod:`rnnlab.cells`; the top-level
``rnnlab.RNNCell`` / ``LSTMCell`` / ``GRUCell`` are these drop-ins.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..cells import ElmanCell, LSTMState
from ..cells import GRUCell as _GRUCell
from ..cells import LSTMCell as _LSTMCell
from .threads import PerThread

__all__ = ["RNNCell", "LSTMCell", "GRUCell", "TORCH_CELL_CLASSES"]

# torch.nn's classes as they were when rnnlab was imported (see rnn.py)
_TorchRNNCell, _TorchLSTMCell, _TorchGRUCell = nn.RNNCell, nn.LSTMCell, nn.GRUCell

_NAMES = (("weight_ih", "W_xh"), ("weight_hh", "W_hh"), ("bias_ih", "b_xh"),
          ("bias_hh", "b_hh"))


class _CellDrop:
    """What the three cells share; mixed in before the torch.nn class."""

    def _build_cell(self) -> None:
        """rnnlab's cell on the meta device: the step's code, without weights. None for a
        zero input or hidden size, which torch.nn's cells accept (an empty product) and
        rnnlab's reject: those run torch.nn's own step."""
        if self.input_size == 0 or self.hidden_size == 0:
            object.__setattr__(self, "_cells", PerThread(None))
            object.__setattr__(self, "_names", [])
            return
        cell = self._make_cell()
        names = [(n, a) for n, a in _NAMES if a in cell._parameters]
        object.__setattr__(self, "_cells", PerThread(cell))
        object.__setattr__(self, "_names", names)

    @property
    def _cell(self):
        """The weightless cell this thread binds the weights into (:mod:`.threads`)."""
        return self._cells.get(self._make_cell)

    def _make_cell(self):
        raise NotImplementedError

    def _step(self, state, x: Tensor):
        """rnnlab's reference step on the weights the attributes give now."""
        cell = self._cell
        params = cell._parameters
        placeholders = [params[a] for _, a in self._names]
        for name, attr in self._names:
            params[attr] = getattr(self, name)
        try:
            return cell(state, x)
        finally:                                   # no weights (nor graphs) kept
            for (_, attr), placeholder in zip(self._names, placeholders):
                params[attr] = placeholder

    def _check(self, input: Tensor, states: tuple[Tensor, ...]) -> None:
        """ATen's checks of torch.nn's cell op, with its messages (RuntimeError)."""
        if input.size(1) != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {input.size(1)} "
                               f"expected {self.input_size}")
        for k, h in enumerate(states):
            if input.size(0) != h.size(0):
                raise RuntimeError(f"Input batch size {input.size(0)} doesn't match "
                                   f"hidden{k} batch size {h.size(0)}")
            if h.size(1) != self.hidden_size:
                raise RuntimeError(f"hidden{k} has inconsistent hidden_size: got "
                                   f"{h.size(1)}, expected {self.hidden_size}")

    def _zeros(self, input: Tensor) -> Tensor:
        return torch.zeros(input.size(0), self.hidden_size, dtype=input.dtype,
                           device=input.device)

    def _one_state(self, input: Tensor, hx: Tensor | None):
        """RNNCell / GRUCell: torch.nn's input handling -> (batched, input, hx)."""
        name = type(self).__name__
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D "
                             f"instead")
        if hx is not None and hx.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected hidden to be 1D or 2D, got {hx.dim()}D "
                             f"instead")
        batched = input.dim() == 2
        if not batched:
            input = input.unsqueeze(0)
        hx = self._zeros(input) if hx is None else (hx if batched else hx.unsqueeze(0))
        self._check(input, (hx,))
        return batched, input, hx

    # -- pickling, deepcopy ---------------------------------------------------------------

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_cells", None)
        state.pop("_names", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._build_cell()


class RNNCell(_CellDrop, _TorchRNNCell):
    """Drop-in ``torch.nn.RNNCell``: h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (or relu),
    book eq. 10.8, the step of :class:`rnnlab.cells.ElmanCell`.

    ``RNNCell(input_size, hidden_size, bias=True, nonlinearity='tanh', device=None,
    dtype=None)``; x (B, I) or (I,), h (B, H) or (H,) -> h' of h's shape.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._build_cell()

    def _make_cell(self):
        return ElmanCell(self.input_size, self.hidden_size, bias=self.bias, device="meta")

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        if self._cell is None:                  # a zero size: torch.nn's step
            return super().forward(input, hx)
        batched, input, hx = self._one_state(input, hx)
        if self.nonlinearity not in ("tanh", "relu"):      # torch.nn checks it here too
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        self._cell.nonlinearity = self.nonlinearity
        h, _ = self._step(hx, input)
        return h if batched else h.squeeze(0)


class GRUCell(_CellDrop, _TorchGRUCell):
    """Drop-in ``torch.nn.GRUCell`` (reset gate after the product, gate order r, z, n),
    the step of :class:`rnnlab.cells.GRUCell`.

    ``GRUCell(input_size, hidden_size, bias=True, device=None, dtype=None)``;
    x (B, I) or (I,), h (B, H) or (H,) -> h' of h's shape.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._build_cell()

    def _make_cell(self):
        return _GRUCell(self.input_size, self.hidden_size, bias=self.bias, device="meta")

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        if self._cell is None:                  # a zero size: torch.nn's step
            return super().forward(input, hx)
        batched, input, hx = self._one_state(input, hx)
        h, _ = self._step(hx, input)
        return h if batched else h.squeeze(0)


class LSTMCell(_CellDrop, _TorchLSTMCell):
    """Drop-in ``torch.nn.LSTMCell`` (gate order i, f, g, o), the step of
    :class:`rnnlab.cells.LSTMCell` with torch.nn's initialisation.

    ``LSTMCell(input_size, hidden_size, bias=True, device=None, dtype=None)``;
    x (B, I) or (I,), (h, c) each (B, H) or (H,) -> (h', c').
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._build_cell()

    def _make_cell(self):
        return _LSTMCell(self.input_size, self.hidden_size, bias=self.bias, forget_bias=0.0,
                         device="meta")

    def forward(self, input: Tensor,
                hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        if self._cell is None:                  # a zero size: torch.nn's step
            return super().forward(input, hx)
        if input.dim() not in (1, 2):
            raise ValueError(f"LSTMCell: Expected input to be 1D or 2D, got {input.dim()}D "
                             f"instead")
        if hx is not None:
            for k, value in enumerate(hx):
                if value.dim() not in (1, 2):
                    raise ValueError(f"LSTMCell: Expected hx[{k}] to be 1D or 2D, got "
                                     f"{value.dim()}D instead")
            if len(hx) != 2:
                raise RuntimeError(f"lstm_cell expects two hidden states (h, c), got "
                                   f"{len(hx)}")
        batched = input.dim() == 2
        if not batched:
            input = input.unsqueeze(0)
        if hx is None:
            zeros = self._zeros(input)
            hx = (zeros, zeros)
        elif not batched:
            hx = (hx[0].unsqueeze(0), hx[1].unsqueeze(0))
        self._check(input, tuple(hx))
        state, _ = self._step(LSTMState(*hx), input)
        if not batched:
            return state.h.squeeze(0), state.c.squeeze(0)
        return state.h, state.c


#: rnnlab's cell class -> the torch.nn class it stands in for
TORCH_CELL_CLASSES = {RNNCell: _TorchRNNCell, LSTMCell: _TorchLSTMCell, GRUCell: _TorchGRUCell}
