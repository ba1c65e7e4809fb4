"""The vanishing-gradient regulariser of Pascanu, Mikolov & Bengio 2013 ("On the difficulty of
training recurrent neural networks", section 3.3, eq. 9), book section 10.11:

    Ω = Σ_k ( ‖ (∂L/∂h_{k+1}) ∂h_{k+1}/∂h_k ‖ / ‖ ∂L/∂h_{k+1} ‖ − 1 )²

It asks every step of back-propagation through time to preserve the norm of the error
signal it passes back, so that the gradient neither vanishes nor explodes on its way from
the loss to the early steps. As in the paper, ∂L/∂h_{k+1} is held constant (the penalty
differentiates only the one-step Jacobian ∂h_{k+1}/∂h_k, through the weights).

    rnnlab train adding --set model.cell=rnn train.pascanu=2.0

Computation: one traced forward (:func:`rnnlab.trace.tracing`, the reference loop) gives
every state h_k; one backward gives every ∂L/∂h_k; then all one-step vector-Jacobian
products are taken at once by re-running the cell once on the (T·B) stacked pairs
(h_k detached, x_{k+1}) and differentiating with ``create_graph`` so Ω has a gradient with
respect to the weights. The norms are per sequence, Ω is summed over steps and averaged
over sequences and recurrent layers; steps where ∂L/∂h_{k+1} is zero (past a sequence's
length, or before the loss reads anything) are left out, and so are the steps past each
sequence's length in a ragged batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..trace import LayerTrace, tracing
from ..unroll import state_fields as _fields

__all__ = ["pascanu_penalty", "with_pascanu"]


def pascanu_penalty(loss: Tensor, traces: list[LayerTrace], eps: float = 1e-12) -> Tensor:
    """Ω for the recurrent layers recorded in ``traces`` during the forward that gave
    ``loss``; a differentiable scalar (0 when there is nothing to regularise)."""
    terms = []
    for trace in traces:
        steps = [s for s in trace.by_time()]
        if trace.layer.reverse:
            steps = steps[::-1]                      # the order the layer ran them
        if len(steps) < 2:
            continue
        afters = [f for _, _, after in steps for f in _fields(after)]
        needs = [f for f in afters if f.requires_grad]
        if not needs:
            continue
        grads = torch.autograd.grad(loss, needs, retain_graph=True, allow_unused=True)
        by_tensor = {id(t): g for t, g in zip(needs, grads)}
        n_fields = len(_fields(steps[0][2]))
        # pairs (h_k, x_{k+1}) -> h_{k+1}, with v = ∂L/∂h_{k+1} held constant
        prev = [torch.cat([_fields(steps[k][2])[f].detach() for k in range(len(steps) - 1)])
                for f in range(n_fields)]
        v = [torch.cat([_grad_or_zero(by_tensor, _fields(steps[k][2])[f])
                        for k in range(1, len(steps))]) for f in range(n_fields)]
        xs = torch.cat([trace.xs[steps[k][0]] for k in range(1, len(steps))])
        prev = [p.requires_grad_() for p in prev]
        like = steps[0][2]
        state = type(like)(*prev) if isinstance(like, tuple) else prev[0]
        new, _ = trace.layer.cell(state, xs)
        vjp = torch.autograd.grad(_fields(new), prev, grad_outputs=v, create_graph=True)
        v_norm = torch.cat(v, 1).norm(dim=1)                          # (T-1)·B
        vjp_norm = torch.cat(vjp, 1).norm(dim=1)
        live = v_norm > eps
        if trace.lengths is not None:                # step k+1 must be a real step of b
            t_next = torch.tensor([steps[k][0] for k in range(1, len(steps))])
            valid = t_next[:, None] < trace.lengths.cpu()[None, :]   # (T-1, B)
            live = live & valid.flatten().to(live.device)
        if live.any():
            ratio = vjp_norm[live] / v_norm[live]
            B = trace.xs.shape[1]
            terms.append((ratio - 1).pow(2).sum() / B)
    if not terms:
        return loss.new_zeros(())
    return torch.stack(terms).mean()


def _grad_or_zero(by_tensor: dict, tensor: Tensor) -> Tensor:
    g = by_tensor.get(id(tensor))
    return torch.zeros_like(tensor) if g is None else g.detach()


def with_pascanu(loss_fn, weight: float):
    """A task's ``loss_fn(model, batch) -> (loss, metrics)`` made into
    ``(model, batch) -> (loss, objective, metrics)`` with objective = loss + weight · Ω: the
    forward is traced (:func:`rnnlab.trace.tracing`) and Ω joins the metrics as
    ``pascanu_omega``. With ``weight`` 0 the objective is the loss and nothing is traced."""
    if weight <= 0:
        def plain(model, batch):
            loss, metrics = loss_fn(model, batch)
            return loss, loss, metrics
        return plain

    def regularized(model, batch):
        with tracing(model) as traces:
            loss, metrics = loss_fn(model, batch)
        omega = pascanu_penalty(loss, traces)
        return loss, loss + weight * omega, {**metrics, "pascanu_omega": omega.item()}
    return regularized
