"""Layers over rnnlab cells: one direction, two directions, and a deep stack.

    Recurrent(cell)                    one pass over time (fused kernel when the cell has one)
    Bidirectional(fwd, bwd)            book section 10.3: concat of a forward and a reverse pass
    Stack([layer, layer, ...])         book section 10.5: layers stacked, dropout between;
                                       Stack.step runs one time step (a decoder's loop)

All three take and return time-major tensors: ``(xs (T, B, I), state, lengths (B,)) ->
(ys (T, B, O), state)``. None of them loops over time itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from . import fast
from .cells import CELL_NAMES, Cell, OutputFeedbackCell, make_cell
from .kernels import compiled_first, find_kernel
from .kernels.feedback import teacher_forced_kernel
from .unroll import check_sequence, length_mask, state_fields, unroll

__all__ = ["Recurrent", "Bidirectional", "Stack"]


class Recurrent(nn.Module):
    """A cell run over time, forwards or in reverse.

    Uses the cell family's fused kernel with hand-derived BPTT when there is one
    (:func:`rnnlab.kernels.find_kernel`); for any other cell, in training, its step traced
    once into forward and backward graphs run in one time loop (:mod:`rnnlab.fast`); else
    the reference :func:`rnnlab.unroll`. All give the same values and gradients.
    ``use_kernel=False`` forces the reference loop.

    >>> layer = Recurrent(LSTMCell(8, 16))
    >>> ys, state = layer(torch.randn(5, 3, 8), lengths=torch.tensor([5, 2, 0]))
    >>> ys.shape                                       # (T, B, H)
    torch.Size([5, 3, 16])
    """

    def __init__(self, cell: Cell, reverse: bool = False, use_kernel: bool = True,
                 recurrent_dropout: float = 0.0, zoneout: float | Sequence[float] = 0.0):
        super().__init__()
        if not isinstance(cell, Cell):
            raise TypeError(f"Recurrent wraps an rnnlab Cell, got {type(cell).__name__}")
        self.cell = cell
        self.reverse = reverse
        self.use_kernel = use_kernel
        #: set by :func:`rnnlab.trace.tracing`: the layer then runs its ``"traced"`` path and
        #: calls ``tracer(layer, xs, lengths, steps)`` with every step it took
        self.tracer = None
        self.input_size, self.output_size = cell.input_size, cell.output_size
        self.recurrent_dropout = _rate("recurrent_dropout", recurrent_dropout)
        self.zoneout: tuple[float, ...] = ()
        if recurrent_dropout or zoneout:
            if not cell.regularizable:
                raise ValueError(f"recurrent_dropout and zoneout need a cell whose output is "
                                 f"its state, read by its recurrent weights ("
                                 f"{', '.join(_regularizable_names())}); "
                                 f"{type(cell).__name__} is not one")
            n_fields = len(state_fields(cell.init_state(1)))
            rates = tuple(zoneout) if isinstance(zoneout, Sequence) else (zoneout,) * n_fields
            if len(rates) != n_fields:
                raise ValueError(f"zoneout takes one rate, or one per state field ({n_fields} "
                                 f"for {type(cell).__name__}); got {zoneout!r}")
            self.zoneout = tuple(_rate("zoneout", z) for z in rates)

    def masks(self, T: int, B: int, state, like: Tensor):
        """The regularisers' masks for one call, drawn from torch's generator: recurrent
        dropout ``drop`` (B, O) in {0, 1/(1-p)}, one per sequence and only in training;
        zoneout ``zone``, one (T, B, size) tensor per state field, Bernoulli(z) in
        training and the rate z itself at evaluation (the expectation). None when off."""
        drop = zone = None
        kw = {"device": like.device, "dtype": like.dtype}
        p = self.recurrent_dropout
        if p > 0 and self.training:
            drop = torch.bernoulli(torch.full((B, self.cell.output_size), 1 - p, **kw))
            drop.div_(1 - p)
        if any(self.zoneout):
            sizes = [f.shape[-1] for f in state_fields(state)]
            if self.training:
                # uniform draws against z: 1.5x faster than torch.bernoulli on CPU
                zone = tuple((torch.rand((T, B, n), **kw) < z).to(like.dtype)
                             for n, z in zip(sizes, self.zoneout))
            else:
                zone = tuple(torch.full((1, 1, 1), z, **kw).expand(T, B, n)
                             for n, z in zip(sizes, self.zoneout))
        return drop, zone

    @property
    def path(self) -> str:
        """``"traced"`` while :func:`rnnlab.trace.tracing` records the layer (the reference
        loop, every step kept); else ``"fused"`` when the cell family has a kernel
        (:func:`rnnlab.kernels.find_kernel`) and ``use_kernel`` is on; else ``"generic"``
        (:func:`rnnlab.fast.fast_unroll`: the cell's traced step; it runs from a cell's second
        training call on, :func:`rnnlab.fast.engage`) when it is on (:data:`rnnlab.fast.ENABLED`,
        on by default) and the step can be traced
        (:func:`rnnlab.fast.supports`); else ``"reference"`` (:func:`rnnlab.unroll`).
        Every kernel of a ``regularizable`` cell takes the layer's recurrent dropout and
        zoneout masks. A kernel that runs its steps as ATen ops from Python (LN cells; the
        LSTM with a projection, recurrent dropout or zoneout:
        :func:`rnnlab.kernels.compiled_first`) hands a training call over to the generic
        path's compiled C loops where they apply (:func:`rnnlab.fast.fast_unroll`,
        ``compiled_only``)."""
        if self.tracer is not None:
            return "traced"
        if not self.use_kernel:
            return "reference"
        if find_kernel(self.cell) is not None:
            return "fused"
        return "generic" if fast.supports(self.cell) else "reference"

    def forward(self, xs: Tensor, state=None, lengths=None):
        path = self.path                                  # decided once per call
        if path == "generic" and not fast.engage(self.cell, xs, state):
            path = "reference"
        regularized = self.recurrent_dropout > 0 or any(self.zoneout)
        if path == "reference" and not regularized:
            return unroll(self.cell, xs, state, lengths, self.reverse)
        T, B = check_sequence(xs, self.cell.input_size)
        if state is None:
            state = self.cell.init_state(B, xs.device, xs.dtype)
        drop, zone = self.masks(T, B, state, xs) if regularized else (None, None)
        masks = {} if drop is None and zone is None else {"drop": drop, "zone": zone}
        if path == "fused":
            mask = length_mask(lengths, T, B, xs.device)
            if compiled_first(self.cell, regularized) and fast.engage(self.cell, xs, state):
                out = fast.fast_unroll(self.cell, xs, state, mask, self.reverse,
                                       compiled_only=True, **masks)
                if out is not None:                       # None: no C loops here
                    return out
            return find_kernel(self.cell)(self.cell, xs, state, mask, self.reverse, **masks)
        if path == "generic":
            out = fast.fast_unroll(self.cell, xs, state, length_mask(lengths, T, B, xs.device),
                                   self.reverse, **masks)
            if out is not None:                           # None: untraceable (warned once)
                return out
            path = "reference"
        if path == "reference":
            return unroll(self.cell, xs, state, lengths, self.reverse, **masks)
        steps: list = []                                  # traced: (t, before, after) each
        ys, state = unroll(self.cell, xs, state, lengths, self.reverse, steps, **masks)
        for _, _, after in steps:
            for tensor in state_fields(after):
                if tensor.requires_grad:
                    tensor.retain_grad()
        self.tracer(self, xs, lengths, steps)
        return ys, state

    def teacher_forced(self, xs: Tensor, targets: Tensor, y0: Tensor | None = None) -> Tensor:
        """For an :class:`~rnnlab.cells.OutputFeedbackCell`: the outputs o(t) (T, B, O) of
        every step at once with the ground truth ``targets`` (T, B, O) fed back (teacher
        forcing, book 10.2.1), through the hand-written backward of
        :func:`rnnlab.kernels.feedback.teacher_forced_kernel` (with ``use_kernel=False``, the
        cell's own plain-ops ``teacher_forced``)."""
        if not isinstance(self.cell, OutputFeedbackCell):
            raise TypeError(f"teacher_forced needs an OutputFeedbackCell, got "
                            f"{type(self.cell).__name__}")
        if self.path != "fused":                          # reference, or traced
            return self.cell.teacher_forced(xs, targets, y0)
        self.cell.check_targets(xs, targets)
        return teacher_forced_kernel(self.cell, xs, targets, y0)

    def extra_repr(self) -> str:
        extra = f", recurrent_dropout={self.recurrent_dropout}" if self.recurrent_dropout else ""
        if any(self.zoneout):
            extra += f", zoneout={self.zoneout}"
        return f"reverse={self.reverse}{extra}"


def _regularizable_names() -> list[str]:
    """The names of :func:`rnnlab.make_cell` whose cells take recurrent dropout and zoneout."""
    with torch.random.fork_rng(devices=[]):          # throwaway cells: the seed stays put
        return [name for name in CELL_NAMES if make_cell(name, 1, 2).regularizable]


def _rate(name: str, p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {p!r}")
    return float(p)


class Bidirectional(nn.Module):
    """Two passes over the same sequence, book section 10.3 (Schuster & Paliwal 1997):

        ys = concat(forward(xs), backward(xs))       (T, B, O_f + O_b)

    ``backward`` must run in reverse; with ragged lengths it reads each sequence's valid part
    backwards from its own end. State is the pair ``(forward_state, backward_state)``.
    """

    def __init__(self, forward: Recurrent, backward: Recurrent):
        super().__init__()
        if forward.reverse or not backward.reverse:
            raise ValueError("Bidirectional needs a forward layer (reverse=False) and a "
                             "backward layer (reverse=True)")
        if forward.input_size != backward.input_size:
            raise ValueError(f"both directions must take the same input size, got "
                             f"{forward.input_size} and {backward.input_size}")
        self.fwd, self.bwd = forward, backward
        self.input_size = forward.input_size
        self.output_size = forward.output_size + backward.output_size

    @classmethod
    def from_cells(cls, forward_cell: Cell, backward_cell: Cell, use_kernel: bool = True,
                   **regularizers) -> Bidirectional:
        """``regularizers``: ``recurrent_dropout``, ``zoneout`` of :class:`Recurrent`."""
        return cls(Recurrent(forward_cell, False, use_kernel, **regularizers),
                   Recurrent(backward_cell, True, use_kernel, **regularizers))

    def forward(self, xs: Tensor, state=None, lengths=None):
        sf, sb = (None, None) if state is None else state
        yf, sf = self.fwd(xs, sf, lengths)
        yb, sb = self.bwd(xs, sb, lengths)
        return torch.cat([yf, yb], dim=-1), (sf, sb)


class Stack(nn.Module):
    """A deep RNN, book section 10.5 (Graves et al. 2013): each layer reads the outputs of
    the one below; dropout (Zaremba et al. 2014) between layers, not after the last.
    State is a list with one entry per layer.

    ``skip=True`` adds Graves et al.'s skip connections: every layer above the first also
    reads the stack's input ([y_{k-1}(t); x(t)]), and the stack's output is every layer's
    output concatenated, so each layer is one nonlinearity away from input and output.
    """

    def __init__(self, layers: Sequence[nn.Module], dropout: float = 0.0, skip: bool = False):
        super().__init__()
        if len(layers) == 0:
            raise ValueError("Stack needs at least one layer")
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"dropout must lie in [0, 1], got {dropout!r}")
        extra = layers[0].input_size if skip else 0
        for lower, upper in zip(layers, layers[1:]):
            if lower.output_size + extra != upper.input_size:
                raise ValueError(f"layer sizes do not chain: a layer with {lower.output_size} "
                                 f"outputs{' (+ the stack input)' if skip else ''} feeds one "
                                 f"with {upper.input_size} inputs")
        self.layers = nn.ModuleList(layers)
        self.dropout = float(dropout)
        self.skip = skip
        self.input_size = layers[0].input_size
        self.output_size = (sum(layer.output_size for layer in layers) if skip
                            else layers[-1].output_size)

    @classmethod
    def build(cls, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
              dropout: float = 0.0, bidirectional: bool = False, use_kernel: bool = True,
              skip: bool = False, recurrent_dropout: float = 0.0, zoneout: float = 0.0,
              **cell_kwargs) -> Stack:
        """A stack of ``num_layers`` layers of the named cell (see :func:`rnnlab.make_cell`);
        ``recurrent_dropout`` and ``zoneout`` apply inside every layer (:class:`Recurrent`)."""
        reg = {"recurrent_dropout": recurrent_dropout, "zoneout": zoneout}
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
        layers: list[nn.Module] = []
        size = input_size
        for _ in range(num_layers):
            if bidirectional:
                layer = Bidirectional.from_cells(
                    make_cell(cell, size, hidden_size, **cell_kwargs),
                    make_cell(cell, size, hidden_size, **cell_kwargs), use_kernel, **reg)
            else:
                layer = Recurrent(make_cell(cell, size, hidden_size, **cell_kwargs),
                                  use_kernel=use_kernel, **reg)
            layers.append(layer)
            size = layer.output_size + (input_size if skip else 0)
        return cls(layers, dropout, skip)

    def forward(self, xs: Tensor, state=None, lengths=None):
        """xs (T, B, I), state (one entry per layer, or None), lengths (B,) -> ys (T, B, O)
        and the list of final states; dropout between layers in training mode."""
        if state is not None and len(state) != len(self.layers):
            raise ValueError(f"state must have one entry per layer ({len(self.layers)}), "
                             f"got {len(state)}")
        states, outputs, inputs = [], [], xs
        for k, layer in enumerate(self.layers):
            if k > 0 and self.dropout > 0:
                xs = nn.functional.dropout(xs, self.dropout, self.training)
            if k > 0 and self.skip:
                xs = torch.cat([xs, inputs], dim=-1)
            xs, s = layer(xs, None if state is None else state[k], lengths)
            states.append(s)
            outputs.append(xs)
        return (torch.cat(outputs, dim=-1) if self.skip else xs), states

    def step(self, state: list, x: Tensor) -> tuple[list, Tensor]:
        """One time step through every layer, for a loop that must feed back what it made
        (a decoder reading its own previous output): ``state`` one entry per layer, x (B, I)
        -> (new state, y (B, O)), the same computation as :meth:`forward` at that step
        (dropout between layers, skip connections). The layers must run forwards, without
        recurrent dropout or zoneout (their masks belong to a whole sequence)."""
        if len(state) != len(self.layers):
            raise ValueError(f"state must have one entry per layer ({len(self.layers)}), "
                             f"got {len(state)}")
        new_state, outputs, inputs = [], [], x
        for k, layer in enumerate(self.layers):
            if not isinstance(layer, Recurrent) or layer.reverse or layer.recurrent_dropout \
                    or any(layer.zoneout):
                raise ValueError("Stack.step needs forward Recurrent layers without recurrent "
                                 f"dropout or zoneout; layer {k} is {layer!r}")
            if k > 0 and self.dropout > 0:
                x = nn.functional.dropout(x, self.dropout, self.training)
            if k > 0 and self.skip:
                x = torch.cat([x, inputs], dim=-1)
            s, x = layer.cell(state[k], x)
            new_state.append(s)
            outputs.append(x)
        return new_state, (torch.cat(outputs, dim=-1) if self.skip else x)
