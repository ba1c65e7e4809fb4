"""Every cell by name: the names that ``--set model.cell=NAME``, :meth:`rnnlab.Stack.build`
and ``rnnlab bench --cells`` accept.

    rnn, relu                    ElmanCell (tanh, relu)
    lstm                         LSTMCell
    gru, gru-before              GRUCell (reset gate after / before the product)
    mgu                          MGUCell
    leaky-rnn                    LeakyCell around a tanh ElmanCell, α learned
    ln-lstm, ln-gru              LayerNormLSTMCell, LayerNormGRUCell
    min-gru, min-lstm            MinGRUCell, MinLSTMCell (gates from the input only)
    clockwork                    ClockworkCell, periods 1, 2, 4, ... (8 modules)

and the wrapped forms, composable with every name above (``dt2-ln-lstm``, ``skip10-gru``):

    dt-CELL, dt2-CELL            DeepTransitionCell, depth 1 (2)
    dts-CELL, dts2-CELL          ... with the shortcut (DT(S)-RNN)
    do-CELL, do2-CELL            DeepOutputCell
    skipD-CELL                   SkipCell(delay D), keeping the length-1 connection
    delayD-CELL                  SkipCell(delay D, unit=False): only length D
    leakyN-CELL                  LeakyCell, α learned, initial time constants spread
                                 geometrically from 2 to N steps (LeakyCell.time_constants)
    leakyfixN-CELL               ... the same time constants, fixed

This module sits on top of the cell families and imports them all; none imports it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .base import Cell
from .elman import ElmanCell
from .gru import GRUCell, MGUCell
from .leaky import LeakyCell
from .linear import MinGRUCell, MinLSTMCell
from .lstm import LSTMCell
from .norm import LayerNormGRUCell, LayerNormLSTMCell
from .time import ClockworkCell, DeepOutputCell, DeepTransitionCell, SkipCell

__all__ = ["CELL_NAMES", "make_cell"]

_BASE: dict[str, Callable[..., Cell]] = {
    "rnn": lambda i, h, **kw: ElmanCell(i, h, "tanh", **kw),
    "relu": lambda i, h, **kw: ElmanCell(i, h, "relu", **kw),
    "lstm": LSTMCell,
    "gru": GRUCell,
    "gru-before": lambda i, h, **kw: GRUCell(i, h, reset="before", **kw),
    "mgu": MGUCell,
    "leaky-rnn": lambda i, h, **kw: LeakyCell(ElmanCell(i, h, **kw), alpha=0.5,
                                              learn_alpha=True),
    "ln-lstm": LayerNormLSTMCell,
    "ln-gru": LayerNormGRUCell,
    "min-gru": MinGRUCell,
    "min-lstm": MinLSTMCell,
}

#: the base cell names (each also wraps: ``dt-NAME``, ``do-NAME``, ``skipD-NAME``, ...)
CELL_NAMES = tuple(_BASE)

_WRAPPED = re.compile(r"^(?:(dt|dts|do)(\d*)-|(skip|delay)(\d+)-|(leaky|leakyfix)(\d+)-)(.+)$")


def make_cell(name: str, input_size: int, hidden_size: int, **kwargs) -> Cell:
    """The cell called ``name`` (see the module docstring for every name), built with
    ``input_size`` and ``hidden_size``; ``kwargs`` go to a base cell's constructor.
    A ``ValueError`` lists the valid names for an unknown one."""
    if name in _BASE:
        return _BASE[name](input_size, hidden_size, **kwargs)
    if name == "clockwork":
        return ClockworkCell(input_size, hidden_size)
    match = _WRAPPED.match(name)
    if match is None:
        raise ValueError(f"unknown cell {name!r}; valid cells: {', '.join(CELL_NAMES)}, "
                         f"clockwork, and the wrapped forms dt-CELL, dts-CELL, do-CELL (deep "
                         f"transition / with shortcut / deep output; dt2-CELL for depth 2), "
                         f"skipD-CELL and delayD-CELL (delay-D connections, e.g. skip10-rnn), "
                         f"leakyN-CELL and leakyfixN-CELL (leaky units with time constants 2..N "
                         f"steps, learned / fixed, e.g. leaky200-rnn)")
    deep, depth, skip, delay, leaky, longest, inner = match.groups()
    if leaky:
        if int(longest) < 2:
            raise ValueError(f"{name!r}: the longest time constant N of leakyN-CELL must be "
                             f"at least 2 steps")
        return LeakyCell(make_cell(inner, input_size, hidden_size),
                         LeakyCell.time_constants(hidden_size, int(longest)),
                         learn_alpha=leaky == "leaky")
    if deep:
        cell = make_cell(inner, input_size, hidden_size)
        if deep == "do":
            return DeepOutputCell(cell, int(depth or 1))
        return DeepTransitionCell(cell, int(depth or 1), shortcut=deep == "dts")
    return SkipCell.build(lambda i, h: make_cell(inner, i, h), input_size, hidden_size,
                          int(delay), unit=skip == "skip")
