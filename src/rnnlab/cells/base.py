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
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["Cell", "LSTMState", "state_fields", "map_state", "check_sizes", "uniform_",
           "dropped", "ACTIVATIONS"]


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


def dropped(h: Tensor, drop: Tensor | None) -> Tensor:
    return h if drop is None else h * drop


def uniform_(params, hidden_size: int) -> None:
    """torch.nn's default: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    for p in params:
        nn.init.uniform_(p, -bound, bound)


def check_sizes(input_size: int, hidden_size: int) -> None:
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


def map_state(fn, *states):
    """Apply ``fn`` field by field to states that are tensors or NamedTuples of tensors."""
    first = states[0]
    if isinstance(first, tuple):
        return type(first)(*(fn(*fields) for fields in zip(*states)))
    return fn(*states)


def state_fields(state) -> tuple[Tensor, ...]:
    """The tensors of a state: its fields for a NamedTuple, else the tensor alone."""
    return tuple(state) if isinstance(state, tuple) else (state,)
