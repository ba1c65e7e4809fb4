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


def run_layer(cell, xs, state, lengths, reverse, use_kernel, seed=None, **regularizers):
    """Values of a random linear loss over every output and the final state, and its
    gradients w.r.t. the input, the initial state and every parameter. ``regularizers``
    (recurrent_dropout, zoneout) go to the layer; ``seed`` seeds torch before the call, so
    that both paths draw the same masks."""
    layer = rnnlab.Recurrent(cell, reverse=reverse, use_kernel=use_kernel, **regularizers)
    inputs = [xs, *flat(state), *cell.parameters()]
    if seed is not None:
        torch.manual_seed(seed)
    ys, final = layer(xs, state, lengths)
    g = torch.Generator().manual_seed(7)
    loss = (ys * torch.randn(ys.shape, dtype=ys.dtype, generator=g)).sum()
    for s in flat(final):
        loss = loss + (s * torch.randn(s.shape, dtype=s.dtype, generator=g)).sum()
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return ys.detach(), [s.detach() for s in flat(final)], grads


def assert_fused_matches_reference(cell, xs, state, lengths, reverse, rtol, atol,
                                   allow_none: bool = False):
    """The fused kernel and the reference loop give the same outputs, final state and
    gradients (w.r.t. the input, the initial state and every parameter); a gradient may be
    None on both paths only with ``allow_none``."""
    ys_k, st_k, gr_k = run_layer(cell, xs, state, lengths, reverse, use_kernel=True)
    ys_r, st_r, gr_r = run_layer(cell, xs, state, lengths, reverse, use_kernel=False)
    torch.testing.assert_close(ys_k, ys_r, rtol=rtol, atol=atol)
    for a, b in zip(st_k, st_r):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    assert len(gr_k) == len(gr_r) == 1 + len(st_k) + len(list(cell.parameters()))
    for a, b in zip(gr_k, gr_r):
        assert (a is None) == (b is None) and (allow_none or a is not None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def rebuild(like, tensors):
    """A state of ``like``'s structure (tensor or NamedTuple) made of ``tensors``."""
    return type(like)(*tensors) if isinstance(like, tuple) else tensors[0]


def assert_fused_gradcheck(cell, xs, state, lengths, reverse, fast_mode=False):
    """torch.autograd.gradcheck of the fused layer as a function of its input, its initial
    state and every parameter of the cell (float64): the kernel's hand-derived BPTT against
    finite differences."""
    layer = rnnlab.Recurrent(cell, reverse=reverse)
    assert layer.path == "fused"
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in layer.parameters()]
    states = [s.detach().clone().requires_grad_(True) for s in flat(state)]

    def fused(x, *rest):
        s = rebuild(state, rest[:len(states)])
        weights = dict(zip(names, rest[len(states):]))
        ys, final = torch.func.functional_call(layer, weights, (x, s, lengths))
        return (ys, *flat(final))

    x = xs.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(fused, (x, *states, *params), fast_mode=fast_mode)
