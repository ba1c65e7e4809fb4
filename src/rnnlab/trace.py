"""The reference loop, recorded step by step: every state a recurrent layer passes through,
with its gradient, for the diagnostics (:mod:`rnnlab.diagnose`) and Pascanu's regulariser
(:mod:`rnnlab.training.regularizers`).

    with tracing(model) as traces:          # every rnnlab Recurrent in model, traced
        loss = loss_fn(model(xs))
        loss.backward()
    traces[0].by_time()                     # [(t, state before, state after), ...]
    traces[0].by_time()[5][2].grad          # ∂L/∂h_5 (each field for a structured state)

A traced layer runs :func:`rnnlab.unroll` (its ``"traced"`` path, with its own recurrent
dropout and zoneout masks) instead of its fused kernel: BPTT through a kernel never
materialises the per-step state gradients. Weights and outputs are the same.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .layers import Recurrent

__all__ = ["TraceError", "LayerTrace", "tracing"]


class TraceError(ValueError):
    """A model that cannot be traced (it has no rnnlab recurrent layer)."""


@dataclass
class LayerTrace:
    """One recurrent layer's pass: its steps ``(t, state_before, state_after)``, its input."""

    name: str
    layer: Recurrent
    xs: Tensor                                        # (T, B, I)
    steps: list = field(default_factory=list)
    lengths: Tensor | None = None                     # (B,), None = all T steps valid

    def by_time(self) -> list:
        """The steps sorted by t (a reverse layer runs them backwards)."""
        return sorted(self.steps, key=lambda step: step[0])


@contextmanager
def tracing(model: nn.Module):
    """Put every :class:`Recurrent` of ``model`` on its traced path for the duration: each
    pass is recorded, step by step (states kept with ``retain_grad``), into the yielded list
    of :class:`LayerTrace`, in the order the layers ran."""
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, Recurrent)]
    if not layers:
        raise TraceError(f"the model ({type(model).__name__}) has no rnnlab Recurrent "
                         f"layer; tracing covers models built from rnnlab.layers")
    traces: list[LayerTrace] = []

    def recorder(name: str):
        def record(layer: Recurrent, xs: Tensor, lengths, steps: list) -> None:
            lengths = None if lengths is None else torch.as_tensor(lengths)
            traces.append(LayerTrace(name, layer, xs.detach(), steps, lengths))
        return record

    for name, layer in layers:
        layer.tracer = recorder(name or "rnn")
    try:
        yield traces
    finally:
        for _, layer in layers:
            layer.tracer = None
