"""Helpers for the gradient-triangle tests: one layer run, its values and its gradients."""

import torch

import rnnlab
from rnnlab.unroll import map_state


def flat(state):
    """A state (tensor or NamedTuple of tensors) as a list of tensors."""
    return list(state) if isinstance(state, tuple) else [state]


def random_state(cell, batch: int, generator: torch.Generator):
    """A random state of the cell's shape and dtype."""
    return map_state(lambda s: torch.randn(s.shape, dtype=s.dtype, generator=generator),
                     cell.init_state(batch))


def run_layer(cell, xs, state, lengths, reverse, use_kernel):
    """Values of a random linear loss over every output and the final state, and its
    gradients w.r.t. the input, the initial state and every parameter."""
    layer = rnnlab.Recurrent(cell, reverse=reverse, use_kernel=use_kernel)
    inputs = [xs, *flat(state), *cell.parameters()]
    ys, final = layer(xs, state, lengths)
    g = torch.Generator().manual_seed(7)
    loss = (ys * torch.randn(ys.shape, dtype=ys.dtype, generator=g)).sum()
    for s in flat(final):
        loss = loss + (s * torch.randn(s.shape, dtype=s.dtype, generator=g)).sum()
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return ys.detach(), [s.detach() for s in flat(final)], grads
