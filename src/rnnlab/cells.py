"""Cells: the transition function h(t) = f(h(t-1), x(t); θ) of Deep Learning, chapter 10.

A cell is one step of a recurrent net and nothing more:

    state = cell.init_state(batch_size)          # tensor or NamedTuple of tensors, each (B, ·)
    state, y = cell(state, x)                    # x (B, I) -> y (B, cell.output_size)

The step is written in plain torch ops. Autograd differentiates it, and every fast path
(the fused kernels in :mod:`rnnlab.kernels`) is tested against it. Time loops live in
:func:`rnnlab.unroll`, never in a cell.

Concrete cells are final: build new behaviour by wrapping a cell (see :class:`LeakyCell`),
not by subclassing one.

Weights follow the formulas (``W_xh``, ``W_hh``, ``b_xh``, ``b_hh``) and use torch.nn's
gate order (LSTM: i, f, g, o; GRU: r, z, n), so weights copy straight across from
``torch.nn``. Like torch.nn and cuDNN, a cell has two bias vectors, one on the input
projection and one on the recurrent projection; their sum is the book's ``b``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, final

import torch
from torch import Tensor, nn

__all__ = [
    "Cell",
    "ElmanCell",
    "OutputFeedbackCell",
    "LSTMCell",
    "LSTMState",
    "GRUCell",
    "MGUCell",
    "LeakyCell",
    "make_cell",
    "CELL_NAMES",
]


class LSTMState(NamedTuple):
    """State of an LSTM: hidden ``h`` (B, P or H) and memory cell ``c`` (B, H)."""

    h: Tensor
    c: Tensor


class Cell(nn.Module):
    """Abstract cell: ``init_state(batch_size)`` and one step ``(state, x) -> (state, y)``.

    Subclasses set ``input_size`` (features of x), ``hidden_size`` (units of the
    recurrent state) and ``output_size`` (features of y).
    """

    input_size: int
    hidden_size: int
    output_size: int
    # Recurrent dropout and zoneout (rnnlab.Recurrent(recurrent_dropout=, zoneout=)) need a
    # cell whose output is its state's first field, read by the recurrent weights; such
    # cells set this and take ``forward(state, x, drop=mask)``: mask (B, output_size)
    # multiplies the state where the recurrent weights read it (Gal & Ghahramani 2016).
    regularizable: bool = False

    def init_state(self, batch_size: int, device=None, dtype=None):
        """Zero state for a batch: a tensor (B, H) or a NamedTuple of such tensors."""
        raise NotImplementedError

    def forward(self, state, x: Tensor):  # pragma: no cover - abstract
        raise NotImplementedError

    def _zeros(self, batch_size: int, size: int, device, dtype) -> Tensor:
        p = next(self.parameters(), None)
        device = device if device is not None else (p.device if p is not None else None)
        dtype = dtype if dtype is not None else (p.dtype if p is not None else None)
        return torch.zeros(batch_size, size, device=device, dtype=dtype)


def _dropped(h: Tensor, drop: Tensor | None) -> Tensor:
    return h if drop is None else h * drop


def _uniform_(params, hidden_size: int) -> None:
    """torch.nn's default: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    for p in params:
        nn.init.uniform_(p, -bound, bound)


def _check_sizes(input_size: int, hidden_size: int) -> None:
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


@final
class ElmanCell(Cell):
    """The vanilla (Elman) RNN, book eq. 10.8 (Elman 1990):

        a(t) = b_xh + W_xh x(t) + b_hh + W_hh h(t-1)
        h(t) = tanh(a(t))            (or relu)
        y(t) = h(t)

    Shapes: x (B, I), h (B, H). The output layer o = c + V h of eq. 10.8 belongs to the
    model that uses the cell.
    """

    regularizable = True

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh",
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        _check_sizes(input_size, hidden_size)
        if nonlinearity not in _ACTIVATIONS:
            raise ValueError(f"nonlinearity must be one of {sorted(_ACTIVATIONS)}, "
                             f"got {nonlinearity!r}")
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.nonlinearity = nonlinearity
        self.W_xh = nn.Parameter(torch.empty(hidden_size, input_size, **kw))
        self.W_hh = nn.Parameter(torch.empty(hidden_size, hidden_size, **kw))
        self.b_xh = nn.Parameter(torch.empty(hidden_size, **kw)) if bias else None
        self.b_hh = nn.Parameter(torch.empty(hidden_size, **kw)) if bias else None
        _uniform_(self.parameters(), hidden_size)

    def init_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return self._zeros(batch_size, self.hidden_size, device, dtype)

    def forward(self, h: Tensor, x: Tensor, drop: Tensor | None = None) -> tuple[Tensor, Tensor]:
        a = nn.functional.linear(x, self.W_xh, self.b_xh)
        a = a + nn.functional.linear(_dropped(h, drop), self.W_hh, self.b_hh)
        h = _ACTIVATIONS[self.nonlinearity](a)
        return h, h

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}, "
                f"bias={self.b_xh is not None}")


_FEEDBACK = {"identity": lambda o: o, "softmax": lambda o: torch.softmax(o, -1),
             "sigmoid": torch.sigmoid}


@final
class OutputFeedbackCell(Cell):
    """Output-to-hidden recurrence, book Fig. 10.4 (Jordan 1986):

        h(t) = tanh(b_h + W_xh x(t) + W_yh ŷ(t-1))
        o(t) = b_y + W_hy h(t)
        ŷ(t) = feedback(o(t))          identity | softmax | sigmoid

    The only recurrence is through the output, so the state is ŷ(t-1) (B, O). Run free
    with :func:`rnnlab.unroll` (the model feeds back its own prediction), or train with
    teacher forcing through :meth:`teacher_forced`, where ŷ(t-1) is the ground truth y(t-1)
    and every time step is computed at once: the book's point that teacher forcing
    decouples the steps and parallelises training (section 10.2.1).

    Shapes: x (B, I), state ŷ (B, O), y = o (B, O).
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int,
                 nonlinearity: str = "tanh", feedback: str = "identity", bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        _check_sizes(input_size, hidden_size)
        _check_sizes(output_size, hidden_size)
        if nonlinearity not in _ACTIVATIONS:
            raise ValueError(f"nonlinearity must be one of {sorted(_ACTIVATIONS)}, "
                             f"got {nonlinearity!r}")
        if feedback not in _FEEDBACK:
            raise ValueError(f"feedback must be one of {sorted(_FEEDBACK)}, got {feedback!r}")
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, output_size
        self.nonlinearity, self.feedback = nonlinearity, feedback
        self.W_xh = nn.Parameter(torch.empty(hidden_size, input_size, **kw))
        self.W_yh = nn.Parameter(torch.empty(hidden_size, output_size, **kw))
        self.b_h = nn.Parameter(torch.empty(hidden_size, **kw)) if bias else None
        self.W_hy = nn.Parameter(torch.empty(output_size, hidden_size, **kw))
        self.b_y = nn.Parameter(torch.empty(output_size, **kw)) if bias else None
        _uniform_(self.parameters(), hidden_size)

    def init_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return self._zeros(batch_size, self.output_size, device, dtype)

    def _output(self, x: Tensor, y_prev: Tensor) -> Tensor:
        a = nn.functional.linear(x, self.W_xh, self.b_h) + nn.functional.linear(y_prev, self.W_yh)
        return nn.functional.linear(_ACTIVATIONS[self.nonlinearity](a), self.W_hy, self.b_y)

    def forward(self, y_prev: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        o = self._output(x, y_prev)
        return _FEEDBACK[self.feedback](o), o

    def teacher_forced(self, xs: Tensor, targets: Tensor, y0: Tensor | None = None,
                       use_kernel: bool = True) -> Tensor:
        """Outputs o(t) for all t with the ground truth fed back (teacher forcing).

        **Arguments:** ``xs`` (T, B, I); ``targets`` (T, B, O), the ground truth y(t) in the
        space the model feeds back (one-hot for ``softmax``); ``y0`` (B, O) the value fed
        at t = 0 (zeros by default); ``use_kernel=False``: autograd through plain torch ops
        instead of the hand-written backward of :mod:`rnnlab.kernels.feedback`.
        **Returns:** o (T, B, O), computed for every step at once.
        """
        if targets.shape[:2] != xs.shape[:2] or targets.shape[-1] != self.output_size:
            raise ValueError(f"targets must have shape (T, B, {self.output_size}) matching "
                             f"xs {tuple(xs.shape)}; got {tuple(targets.shape)}")
        if use_kernel:
            from .kernels.feedback import teacher_forced_kernel

            return teacher_forced_kernel(self, xs, targets, y0)
        if y0 is None:
            y0 = targets.new_zeros(targets.shape[1:])
        y_prev = torch.cat([y0.unsqueeze(0), targets[:-1]], dim=0)  # y(t-1) for every t
        return self._output(xs, y_prev)


@final
class LSTMCell(Cell):
    """Long short-term memory, Hochreiter & Schmidhuber 1997, with the forget gate of
    Gers et al. 2000; book section 10.10.1. Gate order i, f, g, o as in torch.nn:

        i, f, o = σ(W_xh x + b_xh + W_hh h(t-1) + b_hh)   (rows of each gate)
        g       = tanh(...)
        c(t)    = f ⊙ c(t-1) + i ⊙ g
        h(t)    = o ⊙ tanh(c(t))             (then h(t) = W_hr h(t) with proj_size > 0,
                                              Sak et al. 2014)
        y(t)    = h(t)

    rnnlab's own cells start with a forget-gate bias of ``forget_bias`` (1 by default,
    Jozefowicz et al. 2015) so that memory is kept at the start of training; the
    torch.nn-compatible :class:`rnnlab.LSTM` uses torch.nn's initialisation instead.

    Shapes: x (B, I), state ``LSTMState(h (B, P or H), c (B, H))``, y (B, P or H).
    """

    regularizable = True

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 proj_size: int = 0, forget_bias: float = 1.0, device=None, dtype=None):
        super().__init__()
        _check_sizes(input_size, hidden_size)
        if not isinstance(proj_size, int) or not (proj_size == 0 or 0 < proj_size < hidden_size):
            raise ValueError(f"proj_size must be an int with 0 <= proj_size < hidden_size "
                             f"({hidden_size}), got {proj_size!r}")
        kw = {"device": device, "dtype": dtype}
        out = proj_size or hidden_size
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, out
        self.proj_size = proj_size
        self.W_xh = nn.Parameter(torch.empty(4 * hidden_size, input_size, **kw))
        self.W_hh = nn.Parameter(torch.empty(4 * hidden_size, out, **kw))
        self.b_xh = nn.Parameter(torch.empty(4 * hidden_size, **kw)) if bias else None
        self.b_hh = nn.Parameter(torch.empty(4 * hidden_size, **kw)) if bias else None
        self.W_hr = nn.Parameter(torch.empty(proj_size, hidden_size, **kw)) if proj_size else None
        _uniform_(self.parameters(), hidden_size)
        if bias:
            with torch.no_grad():
                self.b_xh[hidden_size:2 * hidden_size].fill_(forget_bias)
                self.b_hh[hidden_size:2 * hidden_size].zero_()

    def init_state(self, batch_size: int, device=None, dtype=None) -> LSTMState:
        return LSTMState(self._zeros(batch_size, self.output_size, device, dtype),
                         self._zeros(batch_size, self.hidden_size, device, dtype))

    def forward(self, state: LSTMState, x: Tensor,
                drop: Tensor | None = None) -> tuple[LSTMState, Tensor]:
        h, c = state
        gates = nn.functional.linear(x, self.W_xh, self.b_xh)
        gates = gates + nn.functional.linear(_dropped(h, drop), self.W_hh, self.b_hh)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        if self.W_hr is not None:
            h = nn.functional.linear(h, self.W_hr)
        return LSTMState(h, c), h

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, proj_size={self.proj_size}, "
                f"bias={self.b_xh is not None}")


@final
class GRUCell(Cell):
    """Gated recurrent unit, Cho et al. 2014; book section 10.10.2. Gate order r, z, n:

        r = σ(W_xr x + b_xr + W_hr h(t-1) + b_hr)
        z = σ(W_xz x + b_xz + W_hz h(t-1) + b_hz)
        n = tanh(W_xn x + b_xn + r ⊙ (W_hn h(t-1) + b_hn))      reset="after" (default)
        n = tanh(W_xn x + b_xn + W_hn (r ⊙ h(t-1)) + b_hn)      reset="before"
        h(t) = (1 - z) ⊙ n + z ⊙ h(t-1)

    ``reset="after"`` applies the reset gate after the recurrent matrix product, as torch.nn
    and cuDNN do; all three recurrent products are then one GEMM per step. ``"before"`` is
    the original formulation of Cho et al. 2014 (the book's eq. 10.45).

    Shapes: x (B, I), h (B, H), y = h.
    """

    regularizable = True

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 reset: str = "after", device=None, dtype=None):
        super().__init__()
        _check_sizes(input_size, hidden_size)
        if reset not in ("after", "before"):
            raise ValueError(f"reset must be 'after' or 'before', got {reset!r}")
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.reset = reset
        self.W_xh = nn.Parameter(torch.empty(3 * hidden_size, input_size, **kw))
        self.W_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size, **kw))
        self.b_xh = nn.Parameter(torch.empty(3 * hidden_size, **kw)) if bias else None
        self.b_hh = nn.Parameter(torch.empty(3 * hidden_size, **kw)) if bias else None
        _uniform_(self.parameters(), hidden_size)

    def init_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return self._zeros(batch_size, self.hidden_size, device, dtype)

    def forward(self, h: Tensor, x: Tensor, drop: Tensor | None = None) -> tuple[Tensor, Tensor]:
        H = self.hidden_size
        gx = nn.functional.linear(x, self.W_xh, self.b_xh)
        x_r, x_z, x_n = gx.chunk(3, dim=-1)
        hd = _dropped(h, drop)                 # what the recurrent weights read
        if self.reset == "after":
            h_r, h_z, h_n = nn.functional.linear(hd, self.W_hh, self.b_hh).chunk(3, dim=-1)
            r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + r * h_n)
        else:
            b_r, b_z, b_n = (self.b_hh.chunk(3) if self.b_hh is not None else (None,) * 3)
            r = torch.sigmoid(x_r + nn.functional.linear(hd, self.W_hh[:H], b_r))
            z = torch.sigmoid(x_z + nn.functional.linear(hd, self.W_hh[H:2 * H], b_z))
            n = torch.tanh(x_n + nn.functional.linear(r * hd, self.W_hh[2 * H:], b_n))
        h = (1 - z) * n + z * h
        return h, h

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, reset={self.reset!r}, "
                f"bias={self.b_xh is not None}")


@final
class MGUCell(Cell):
    """Minimal gated unit (update-gate-only GRU), Zhou et al. 2016, the single-gate
    variant the book mentions in section 10.10.2. Gate order f, n:

        f = σ(W_xf x + b_xf + W_hf h(t-1) + b_hf)
        n = tanh(W_xn x + b_xn + W_hn (f ⊙ h(t-1)) + b_hn)
        h(t) = (1 - f) ⊙ h(t-1) + f ⊙ n

    Shapes: x (B, I), h (B, H), y = h.
    """

    regularizable = True

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        _check_sizes(input_size, hidden_size)
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, hidden_size
        self.W_xh = nn.Parameter(torch.empty(2 * hidden_size, input_size, **kw))
        self.W_hh = nn.Parameter(torch.empty(2 * hidden_size, hidden_size, **kw))
        self.b_xh = nn.Parameter(torch.empty(2 * hidden_size, **kw)) if bias else None
        self.b_hh = nn.Parameter(torch.empty(2 * hidden_size, **kw)) if bias else None
        _uniform_(self.parameters(), hidden_size)

    def init_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return self._zeros(batch_size, self.hidden_size, device, dtype)

    def forward(self, h: Tensor, x: Tensor, drop: Tensor | None = None) -> tuple[Tensor, Tensor]:
        H = self.hidden_size
        x_f, x_n = nn.functional.linear(x, self.W_xh, self.b_xh).chunk(2, dim=-1)
        b_f, b_n = self.b_hh.chunk(2) if self.b_hh is not None else (None, None)
        hd = _dropped(h, drop)                 # what the recurrent weights read
        f = torch.sigmoid(x_f + nn.functional.linear(hd, self.W_hh[:H], b_f))
        n = torch.tanh(x_n + nn.functional.linear(f * hd, self.W_hh[H:], b_n))
        h = (1 - f) * h + f * n
        return h, h


@final
class LeakyCell(Cell):
    """Leaky units, book section 10.9.2 (Mozer 1992; Jaeger et al. 2007): wraps any cell
    and makes every state tensor a running average of the wrapped cell's update,

        h(t) = α ⊙ h(t-1) + (1 - α) ⊙ f(h(t-1), x(t))

    with α ∈ (0, 1) per unit, fixed (``learn_alpha=False``) or learned
    (α = sigmoid(ρ) with ρ a parameter). α near 1 gives a long time constant,
    about 1 / (1 - α) steps. The output y(t) is the leaky state's hidden part
    (the state itself, or its first field for a structured state).

    Shapes: as the wrapped cell, whose output and state must have ``hidden_size`` units.
    """

    def __init__(self, cell: Cell, alpha: float = 0.5, learn_alpha: bool = False):
        super().__init__()
        if not isinstance(cell, Cell):
            raise TypeError(f"LeakyCell wraps an rnnlab Cell, got {type(cell).__name__}")
        if cell.output_size != cell.hidden_size:
            raise ValueError("LeakyCell needs a cell whose output and state have the same "
                             f"size; {type(cell).__name__} has output {cell.output_size}, "
                             f"state {cell.hidden_size}")
        if not 0.0 < float(alpha) < 1.0:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
        self.cell = cell
        self.regularizable = cell.regularizable
        self.input_size, self.hidden_size = cell.input_size, cell.hidden_size
        self.output_size = cell.output_size
        p = next(cell.parameters())
        rho = torch.full((cell.hidden_size,), math.log(alpha / (1 - alpha)),
                         device=p.device, dtype=p.dtype)
        if learn_alpha:
            self.rho = nn.Parameter(rho)
        else:
            self.register_buffer("rho", rho)

    @property
    def alpha(self) -> Tensor:
        return torch.sigmoid(self.rho)

    def init_state(self, batch_size: int, device=None, dtype=None):
        return self.cell.init_state(batch_size, device, dtype)

    def forward(self, state, x: Tensor, drop: Tensor | None = None):
        new, _ = self.cell(state, x) if drop is None else self.cell(state, x, drop=drop)
        alpha = self.alpha
        if isinstance(state, tuple):
            state = type(state)(*(torch.lerp(n, s, alpha) for n, s in zip(new, state)))
            return state, state[0]
        state = torch.lerp(new, state, alpha)  # α ⊙ h(t-1) + (1 - α) ⊙ f(h(t-1), x(t))
        return state, state


CELL_NAMES = ("rnn", "relu", "lstm", "gru", "gru-before", "mgu", "leaky-rnn", "ln-lstm",
              "ln-gru")


def make_cell(name: str, input_size: int, hidden_size: int, **kwargs) -> Cell:
    """A cell by name: ``rnn`` (tanh Elman), ``relu``, ``lstm``, ``gru``, ``gru-before``
    (reset gate before the product), ``mgu``, ``leaky-rnn`` (tanh Elman with learned α),
    ``ln-lstm``, ``ln-gru`` (layer-normalised, :mod:`rnnlab.cells_norm`),
    ``clockwork``, and the wrappers of :mod:`rnnlab.cells_time` around any of these
    (``dt-lstm``, ``dts2-rnn``, ``do-gru``, ``skip10-rnn``, ``delay4-lstm``)."""
    if name == "rnn":
        return ElmanCell(input_size, hidden_size, "tanh", **kwargs)
    if name == "relu":
        return ElmanCell(input_size, hidden_size, "relu", **kwargs)
    if name == "lstm":
        return LSTMCell(input_size, hidden_size, **kwargs)
    if name == "gru":
        return GRUCell(input_size, hidden_size, **kwargs)
    if name == "gru-before":
        return GRUCell(input_size, hidden_size, reset="before", **kwargs)
    if name == "mgu":
        return MGUCell(input_size, hidden_size, **kwargs)
    if name == "leaky-rnn":
        return LeakyCell(ElmanCell(input_size, hidden_size, **kwargs), alpha=0.5,
                         learn_alpha=True)
    if name in ("ln-lstm", "ln-gru"):
        from .cells_norm import LayerNormGRUCell, LayerNormLSTMCell

        norm_cell = LayerNormLSTMCell if name == "ln-lstm" else LayerNormGRUCell
        return norm_cell(input_size, hidden_size, **kwargs)
    from .cells_time import parse_cell_name

    cell = parse_cell_name(name, input_size, hidden_size, make_cell)
    if cell is not None:
        return cell
    raise ValueError(f"unknown cell {name!r}; valid cells: {', '.join(CELL_NAMES)}, "
                     f"clockwork, and the wrapped forms dt-CELL, dts-CELL, do-CELL (deep "
                     f"transition / with shortcut / deep output; dt2-CELL for depth 2), "
                     f"skipD-CELL and delayD-CELL (delay-D connections, e.g. skip10-rnn)")
