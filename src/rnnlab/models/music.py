"""The piano-roll model of Boulanger-Lewandowski, Bengio & Vincent (2012) (book section
10.2.3: an RNN whose outputs are the parameters of a distribution over the next input):

    x(t) = v(t-1)   (x(1) = 0)
    h(t) = f(h(t-1), x(t); θ)                          Stack(cell) (T, B, H)
    p(t) = sigmoid(W h(t) + b)                         (T, B, P)

and :func:`sample_roll`, which draws each step's pitches as independent Bernoulli variables
and feeds them back. The task is :mod:`rnnlab.tasks.music`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layers import Stack

__all__ = ["MusicRNN", "sample_roll"]


class MusicRNN(nn.Module):
    """Previous step -> recurrent stack -> one logit per pitch:
    ``xs (T, B, P) -> Stack (T, B, H) -> Linear -> logits (T, B, P)``."""

    def __init__(self, pitches: int, cell: str, hidden: int, num_layers: int, dropout: float):
        super().__init__()
        self.pitches = pitches
        self.rnn = Stack.build(cell, pitches, hidden, num_layers, dropout)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(self.rnn.output_size, pitches)

    def forward(self, xs: Tensor, state=None, lengths: Tensor | None = None):
        """xs (T, B, P) binary, lengths (B,) -> logits (T, B, P), state."""
        ys, state = self.rnn(xs, state, lengths)                  # (T, B, H)
        return self.out(self.drop(ys)), state                     # (T, B, P)


@torch.no_grad()
def sample_roll(model: MusicRNN, prompt: Tensor, length: int, temperature: float,
                generator: torch.Generator, device) -> Tensor:
    """``prompt (n, P)`` binary followed by ``length`` sampled steps: ``(n + length, P)``.

    Each step: ``v ~ Bernoulli(sigmoid(logits / temperature))`` per pitch (temperature 0:
    ``logits > 0``), drawn on the CPU with ``generator``, fed back as the next input.
    """
    model.eval()
    P = prompt.shape[1]
    xs = torch.cat([torch.zeros(1, P), prompt.float()]).unsqueeze(1).to(device)  # (n+1, 1, P)
    logits, state = model(xs)
    steps = [prompt.float()]
    for _ in range(length):
        last = logits[-1, 0].float().cpu()                                      # (P,)
        if temperature == 0:
            v = (last > 0).float()
        else:
            v = torch.bernoulli(torch.sigmoid(last / temperature), generator=generator)
        steps.append(v.view(1, P))
        logits, state = model(v.view(1, 1, P).to(device), state)
    return torch.cat(steps)
