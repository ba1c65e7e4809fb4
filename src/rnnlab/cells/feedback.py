"""The output-to-hidden recurrence of book Fig. 10.4 (Jordan 1986)."""

from __future__ import annotations

from typing import final

import torch
from torch import Tensor, nn

from .base import ACTIVATIONS, Cell, check_sizes, uniform_

__all__ = ["OutputFeedbackCell"]


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
        check_sizes(input_size, hidden_size)
        check_sizes(output_size, hidden_size)
        if nonlinearity not in ACTIVATIONS:
            raise ValueError(f"nonlinearity must be one of {sorted(ACTIVATIONS)}, "
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
        uniform_(self.parameters(), hidden_size)

    def init_state(self, batch_size: int, device=None, dtype=None) -> Tensor:
        return self._zeros(batch_size, self.output_size, device, dtype)

    def _output(self, x: Tensor, y_prev: Tensor) -> Tensor:
        a = nn.functional.linear(x, self.W_xh, self.b_h) + nn.functional.linear(y_prev, self.W_yh)
        return nn.functional.linear(ACTIVATIONS[self.nonlinearity](a), self.W_hy, self.b_y)

    def forward(self, y_prev: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        o = self._output(x, y_prev)
        return _FEEDBACK[self.feedback](o), o

    def check_targets(self, xs: Tensor, targets: Tensor) -> None:
        """A clear error unless ``targets`` is (T, B, O) matching ``xs`` (T, B, I)."""
        if targets.shape[:2] != xs.shape[:2] or targets.shape[-1] != self.output_size:
            raise ValueError(f"targets must have shape (T, B, {self.output_size}) matching "
                             f"xs {tuple(xs.shape)}; got {tuple(targets.shape)}")

    def teacher_forced(self, xs: Tensor, targets: Tensor, y0: Tensor | None = None) -> Tensor:
        """Outputs o(t) for all t with the ground truth fed back (teacher forcing), in plain
        torch ops: the reference of the hand-written backward that
        :meth:`rnnlab.Recurrent.teacher_forced` runs (:mod:`rnnlab.kernels.feedback`).

        **Arguments:** ``xs`` (T, B, I); ``targets`` (T, B, O), the ground truth y(t) in the
        space the model feeds back (one-hot for ``softmax``); ``y0`` (B, O) the value fed
        at t = 0 (zeros by default).
        **Returns:** o (T, B, O), computed for every step at once.
        """
        self.check_targets(xs, targets)
        if y0 is None:
            y0 = targets.new_zeros(targets.shape[1:])
        y_prev = torch.cat([y0.unsqueeze(0), targets[:-1]], dim=0)  # y(t-1) for every t
        return self._output(xs, y_prev)
