"""Cell wrappers for deep transitions (book 10.5) and multiple time scales (book 10.9).

Each wraps any rnnlab cell (or, for the clockwork RNN, is a cell) and keeps the one cell
contract, so it runs through :func:`rnnlab.unroll`, :class:`Recurrent`, ``Bidirectional``,
``Stack`` and every task (``--set model.cell=dt-lstm``, see :mod:`rnnlab.cells.registry`):

    DeepTransitionCell(cell, depth, shortcut)   Pascanu et al. 2014, "How to construct deep
                                                recurrent neural networks": DT-RNN, DT(S)-RNN
    DeepOutputCell(cell, depth)                 Pascanu et al. 2014: DO-RNN
    SkipCell(cell, delay, unit=True)            recurrent connections of delay d (Lin et al.
                                                1996; book 10.9.1); unit=False removes the
                                                length-one connections (book 10.9.3)
    ClockworkCell(input, hidden, periods)       Koutník et al. 2014, clockwork RNN

None has a fused kernel: they run through the reference loop, which autograd differentiates.
"""

from __future__ import annotations

from typing import NamedTuple, final

import torch
from torch import Tensor, nn

from .base import Cell
from .base import state_fields as _fields
from .elman import ElmanCell

__all__ = ["DeepTransitionCell", "DeepOutputCell", "SkipCell", "SkipState", "ClockworkCell",
           "ClockworkState"]



def _with_hidden(state, h: Tensor):
    """``state`` with its hidden part (the tensor, or the first field) replaced by ``h``."""
    return state._replace(**{state._fields[0]: h}) if isinstance(state, tuple) else h


def _mlp(size: int, depth: int) -> nn.ModuleList:
    layers = nn.ModuleList(nn.Linear(size, size) for _ in range(depth))
    for layer in layers:
        nn.init.orthogonal_(layer.weight)
        nn.init.zeros_(layer.bias)
    return layers


@final
class DeepTransitionCell(Cell):
    """Deep transition (Pascanu et al. 2014, DT-RNN): the map from h(t-1), x(t) to h(t) is a
    deep MLP rather than one layer. The wrapped cell computes the first layer, then

        z_0 = h'(t)  (the wrapped cell's new hidden state)
        z_l = tanh(W_l z_{l-1} + b_l),  l = 1..depth
        h(t) = z_depth            or, with ``shortcut`` (DT(S)-RNN),  h(t) = h'(t) + z_depth

    The shortcut keeps a path from h(t-1) to h(t) through one nonlinearity, so the deeper
    transition does not lengthen the gradient path through time (their section 3.2.1).
    For a structured state (LSTM) the hidden part is transformed, the memory cell is not.
    Shapes: those of the wrapped cell (its output must be its hidden state).
    """

    def __init__(self, cell: Cell, depth: int = 1, shortcut: bool = False):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        if cell.output_size != cell.hidden_size:
            raise ValueError(f"DeepTransitionCell needs a cell whose output is its hidden "
                             f"state; {type(cell).__name__} has output {cell.output_size}, "
                             f"hidden {cell.hidden_size}")
        self.cell, self.shortcut = cell, shortcut
        self.input_size, self.hidden_size = cell.input_size, cell.hidden_size
        self.output_size = cell.hidden_size
        self.layers = _mlp(cell.hidden_size, depth)

    def init_state(self, batch_size: int, device=None, dtype=None):
        return self.cell.init_state(batch_size, device, dtype)

    def forward(self, state, x: Tensor):
        new, h = self.cell(state, x)                  # (B, H) first transition layer
        z = h
        for layer in self.layers:
            z = torch.tanh(layer(z))
        h = h + z if self.shortcut else z
        return _with_hidden(new, h), h


@final
class DeepOutputCell(Cell):
    """Deep output (Pascanu et al. 2014, DO-RNN): y(t) = MLP(h(t)) with ``depth`` tanh
    layers; the state and its recurrence are the wrapped cell's. Shapes: x (B, I) ->
    y (B, H)."""

    def __init__(self, cell: Cell, depth: int = 1):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.cell = cell
        self.input_size, self.hidden_size = cell.input_size, cell.hidden_size
        self.output_size = cell.output_size
        self.layers = _mlp(cell.output_size, depth)

    def init_state(self, batch_size: int, device=None, dtype=None):
        return self.cell.init_state(batch_size, device, dtype)

    def forward(self, state, x: Tensor):
        new, y = self.cell(state, x)
        for layer in self.layers:
            y = torch.tanh(layer(y))
        return new, y


class SkipState(NamedTuple):
    """State of a :class:`SkipCell`: the wrapped cell's state flattened to ``current``
    (B, S) and the last ``delay`` of them, oldest first, in ``history`` (B, delay * S)."""

    current: Tensor
    history: Tensor


@final
class SkipCell(Cell):
    """Recurrent connections with a time delay d (book 10.9.1; Lin et al. 1996):

        unit=True:   h(t) = f(h(t-1), [x(t); h(t-d)])     both the length-1 and the length-d
                                                          connection
        unit=False:  h(t) = f(h(t-d), x(t))               length-one connections removed
                                                          (book 10.9.3): d interleaved chains

    Gradients reach back d steps per multiplication by a Jacobian, so a dependency τ steps
    back needs about τ/d products instead of τ. ``h(t-d)`` is the wrapped cell's hidden part
    (its whole state with unit=False). The state keeps the last d states
    (:class:`SkipState`); the first d steps see zeros.
    Shapes: x (B, I) -> y (B, H) as the wrapped cell, which for unit=True must be built with
    input size I + H (use :func:`~rnnlab.cells.registry.make_cell` with ``skipD-CELL``, or
    :meth:`SkipCell.build`).
    """

    def __init__(self, cell: Cell, delay: int, unit: bool = True):
        super().__init__()
        if delay < 2:
            raise ValueError(f"delay must be at least 2 (1 is the ordinary recurrence), "
                             f"got {delay}")
        self.cell, self.delay, self.unit = cell, delay, unit
        self.hidden_size, self.output_size = cell.hidden_size, cell.output_size
        self.input_size = cell.input_size - (cell.hidden_size if unit else 0)
        if self.input_size < 1:
            raise ValueError(f"with unit=True the wrapped cell reads [x; h(t-d)]: build it "
                             f"with input size I + {cell.hidden_size}")
        template = cell.init_state(1)
        self._sizes = [f.shape[1] for f in _fields(template)]
        self._structured = type(template) if isinstance(template, tuple) else None

    @classmethod
    def build(cls, make, input_size: int, hidden_size: int, delay: int, unit: bool = True):
        """``SkipCell(make(input_size (+ hidden_size), hidden_size), delay, unit)``."""
        return cls(make(input_size + (hidden_size if unit else 0), hidden_size), delay, unit)

    def _pack(self, state) -> Tensor:
        return torch.cat(_fields(state), dim=1)

    def _unpack(self, flat: Tensor):
        parts = flat.split(self._sizes, dim=1)
        return self._structured(*parts) if self._structured else parts[0]

    def init_state(self, batch_size: int, device=None, dtype=None) -> SkipState:
        current = self._pack(self.cell.init_state(batch_size, device, dtype))
        return SkipState(current, current.new_zeros(batch_size, self.delay * current.shape[1]))

    def forward(self, state: SkipState, x: Tensor):
        S = state.current.shape[1]
        delayed = self._unpack(state.history[:, :S])             # the state of t - d
        if self.unit:
            h_delayed = _fields(delayed)[0]
            new, y = self.cell(self._unpack(state.current), torch.cat([x, h_delayed], 1))
        else:
            new, y = self.cell(delayed, x)
        current = self._pack(new)
        history = torch.cat([state.history[:, S:], current], 1)  # drop t-d, append t
        return SkipState(current, history), y


class ClockworkState(NamedTuple):
    """State of a :class:`ClockworkCell`: hidden ``h`` (B, H) and the step count ``t``
    (B, 1), which decides which modules update."""

    h: Tensor
    t: Tensor


@final
class ClockworkCell(Cell):
    """Clockwork RNN (Koutník et al. 2014): the hidden units form g modules of H/g units with
    periods T_1 < ... < T_g (default 1, 2, 4, ...). At step t (counting from 0) module i
    updates only if t mod T_i = 0, and reads the modules with periods ≥ T_i (its own and the
    slower ones; W_hh is block upper-triangular):

        a_i(t) = W_xh,i x(t) + Σ_{j: T_j ≥ T_i} W_hh,ij h_j(t-1) + b_i
        h_i(t) = tanh(a_i(t))   if t mod T_i = 0,   else h_i(t-1)

    Slow modules keep their state for T_i steps, so their gradient crosses many time steps
    per Jacobian: long connections instead of length-one ones (book 10.9.3).
    Shapes: x (B, I) -> y = h (B, H).
    """

    def __init__(self, input_size: int, hidden_size: int, periods=None):
        super().__init__()
        if periods is None:
            g = next(k for k in (8, 4, 2, 1) if hidden_size % k == 0)
            periods = [2 ** k for k in range(g)]
        periods = sorted(int(p) for p in periods)
        if periods[0] < 1 or hidden_size % len(periods):
            raise ValueError(f"periods must be positive and divide the {hidden_size} units "
                             f"into equal modules; got {periods}")
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, \
            hidden_size
        self.cell = ElmanCell(input_size, hidden_size)
        m = hidden_size // len(periods)
        unit_period = torch.tensor(periods, dtype=torch.float32).repeat_interleave(m)
        self.register_buffer("period", unit_period)                          # (H,)
        # row i reads column j when module(j) is as slow or slower than module(i)
        self.register_buffer("mask", (unit_period[None, :] >= unit_period[:, None]).float())
        with torch.no_grad():
            self.cell.W_hh.mul_(self.mask)

    def init_state(self, batch_size: int, device=None, dtype=None) -> ClockworkState:
        h = self.cell.init_state(batch_size, device, dtype)
        return ClockworkState(h, h.new_zeros(batch_size, 1))

    def forward(self, state: ClockworkState, x: Tensor):
        c = self.cell
        a = nn.functional.linear(x, c.W_xh, c.b_xh) + \
            nn.functional.linear(state.h, c.W_hh * self.mask, c.b_hh)
        active = torch.remainder(state.t, self.period) == 0                 # (B, H)
        h = torch.where(active, torch.tanh(a), state.h)
        return ClockworkState(h, state.t + 1), h
