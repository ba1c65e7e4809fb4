"""Leaky units, book section 10.9.2."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import final

import torch
from torch import Tensor, nn

from .base import Cell

__all__ = ["LeakyCell"]


@final
class LeakyCell(Cell):
    """Leaky units, book section 10.9.2 (Mozer 1992; Jaeger et al. 2007): wraps any cell
    and makes every state tensor a running average of the wrapped cell's update,

        h(t) = α ⊙ h(t-1) + (1 - α) ⊙ f(h(t-1), x(t))

    with α ∈ (0, 1) per unit, fixed (``learn_alpha=False``) or learned
    (α = sigmoid(ρ) with ρ a parameter). α near 1 gives a long time constant,
    about 1 / (1 - α) steps. ``alpha`` is one value for every unit or one per unit
    (a sequence or 1-D tensor of ``hidden_size`` values): groups of units at different
    fixed time scales (Mozer 1992; book 10.9.3), e.g. :meth:`time_constants`. The output
    y(t) is the leaky state's hidden part (the state itself, or its first field for a
    structured state).

    Shapes: as the wrapped cell, whose output and state must have ``hidden_size`` units.
    """

    def __init__(self, cell: Cell, alpha: float | Sequence[float] | Tensor = 0.5,
                 learn_alpha: bool = False):
        super().__init__()
        if not isinstance(cell, Cell):
            raise TypeError(f"LeakyCell wraps an rnnlab Cell, got {type(cell).__name__}")
        if cell.output_size != cell.hidden_size:
            raise ValueError("LeakyCell needs a cell whose output and state have the same "
                             f"size; {type(cell).__name__} has output {cell.output_size}, "
                             f"state {cell.hidden_size}")
        p = next(cell.parameters())
        values = torch.as_tensor(alpha, dtype=torch.float64).flatten()
        if values.numel() not in (1, cell.hidden_size):
            raise ValueError(f"alpha must be one value or one per unit ({cell.hidden_size}), "
                             f"got {values.numel()} values")
        if not bool(((values > 0) & (values < 1)).all()):
            raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
        self.cell = cell
        self.regularizable = cell.regularizable
        self.input_size, self.hidden_size = cell.input_size, cell.hidden_size
        self.output_size = cell.output_size
        rho = torch.log(values / (1 - values)).expand(cell.hidden_size)   # logit(α), (H,)
        rho = rho.to(device=p.device, dtype=p.dtype).clone()
        if learn_alpha:
            self.rho = nn.Parameter(rho)
        else:
            self.register_buffer("rho", rho)

    @staticmethod
    def time_constants(hidden_size: int, longest: float, shortest: float = 2.0) -> Tensor:
        """Per-unit α = 1 - 1/τ with τ spaced geometrically from ``shortest`` to ``longest``
        steps, one value per unit (H,): a bank of fixed time scales for ``alpha``."""
        if not 1.0 < shortest <= longest:
            raise ValueError(f"time constants need 1 < shortest <= longest, got "
                             f"shortest={shortest}, longest={longest}")
        tau = torch.logspace(math.log10(shortest), math.log10(longest), hidden_size,
                             dtype=torch.float64)
        return 1.0 - 1.0 / tau

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
