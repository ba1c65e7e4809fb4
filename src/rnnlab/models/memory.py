"""Models of the Neural Turing Machine tasks (Graves et al. 2014; book 10.12): an NTM cell
(:class:`rnnlab.cells.memory.NTMCell`) unrolled over the sequence, or the LSTM baseline,
a stack with a linear read-out; both map ``(T, B, I) -> (T, B, O)`` logits. The tasks are
:mod:`rnnlab.tasks.ntm`.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..cells.memory import NTMCell
from ..layers import Stack
from ..unroll import unroll

__all__ = ["MemoryModel"]


class MemoryModel(nn.Module):
    """An NTM cell unrolled, or an LSTM stack with a linear read-out: (T, B, I) -> (T, B, O)."""

    def __init__(self, arch: str, input_size: int, output_size: int, hidden: int,
                 controller: str, memory_slots: int, memory_width: int, read_heads: int,
                 num_layers: int):
        super().__init__()
        self.arch = arch
        if arch == "ntm":
            self.cell = NTMCell(input_size, output_size, controller, hidden, memory_slots,
                                memory_width, read_heads)
        else:
            self.rnn = Stack.build("lstm", input_size, hidden, num_layers)
            self.out = nn.Linear(hidden, output_size)

    def forward(self, xs: Tensor):
        if self.arch == "ntm":
            ys, state = unroll(self.cell, xs)
            return ys, state
        ys, state = self.rnn(xs)
        return self.out(ys), state
