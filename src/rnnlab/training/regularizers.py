"""The vanishing-gradient regulariser of Pascanu, Mikolov & Bengio 2013 ("On the difficulty of
training recurrent neural networks", section 3.3, eq. 9), book section 10.11:

    r_k = ‖ (∂L/∂h_{k+1}) ∂h_{k+1}/∂h_k ‖ / ‖ ∂L/∂h_{k+1} ‖        Ω = mean_k (r_k − 1)²

r_k is how much one step of back-propagation through time shrinks (r < 1) or grows (r > 1)
the error signal it passes back; Ω asks every step to preserve its norm, so that the
gradient neither vanishes nor explodes on its way from the loss to the early steps.

    rnnlab train temporal-order --set train.pascanu=2.0

Computation: one traced forward (:func:`rnnlab.trace.tracing`, the reference loop) gives
every state h_k; one backward gives every ∂L/∂h_{k+1} (held constant, as in the paper);
then all one-step vector-Jacobian products are taken at once over the (T·B) stacked pairs
(h_k, x_{k+1}), the pair of the initial state included. Steps where ∂L/∂h_{k+1} is zero
(past a sequence's length, or before the loss reads anything) are left out, and so are the
steps past each sequence's length in a ragged batch.

Two choices follow the authors' code (github.com/pascanur/trainingRNNs) where the paper's
eq. 9 leaves them open:

- **scale**: Ω is the *mean* of (r_k − 1)² over the live (step, sequence) pairs, not their
  sum, so the weight does not grow with T and the paper's weights (2 in the code, 4 in the
  text) carry over;
- **which derivative**: for the Elman cell (tanh or relu), ∂Ω/∂θ is the paper's
  "immediate" derivative (eq. 10): h_k, h_{k+1} and ∂L/∂h_{k+1} are held constant, so
  r_k = ‖(v ⊙ f'(a_{k+1})) W_hh‖ / ‖v‖ varies only through W_hh. Any other cell re-runs
  its step on the detached h_k and differentiates through the whole step (no cell-agnostic
  way to hold its gate derivatives constant exists).

The value r_k is eq. 9 for every cell (plain norms; the authors' code squares both norms,
which near r = 1 amounts to four times the weight).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..cells import ElmanCell
from ..trace import LayerTrace, tracing
from ..unroll import state_fields as _fields

__all__ = ["step_ratios", "pascanu_penalty", "with_pascanu"]


def step_ratios(loss: Tensor, traces: list[LayerTrace], eps: float = 1e-12) -> list[Tensor]:
    """r_k for every live (step, sequence) pair of each traced recurrent layer: one 1-D
    tensor per layer (empty where nothing is live), differentiable with respect to the
    weights as described in the module docstring. ``loss`` must still have its graph."""
    out = []
    for trace in traces:
        steps = trace.by_time()
        if trace.layer.reverse:
            steps = steps[::-1]                      # the order the layer ran them
        afters = [f for _, _, after in steps for f in _fields(after)]
        needs = [f for f in afters if f.requires_grad]
        if not steps or not needs:
            out.append(loss.new_zeros(0))
            continue
        grads = torch.autograd.grad(loss, needs, retain_graph=True, allow_unused=True)
        by_tensor = {id(t): g for t, g in zip(needs, grads)}
        n_fields = len(_fields(steps[0][2]))
        # pairs (h_k, x_{k+1}) -> h_{k+1}, with v = ∂L/∂h_{k+1} held constant
        v = [torch.cat([_grad_or_zero(by_tensor, _fields(after)[f]) for _, _, after in steps])
             for f in range(n_fields)]                                  # (T·B, ·) each
        vjp = _one_step_vjp(trace, steps, v)
        v_norm = torch.cat(v, 1).norm(dim=1)                            # (T·B,)
        vjp_norm = torch.cat(vjp, 1).norm(dim=1)
        live = v_norm > eps
        if trace.lengths is not None:                # step k+1 must be a real step of b
            t_next = torch.tensor([t for t, _, _ in steps])
            valid = t_next[:, None] < trace.lengths.cpu()[None, :]     # (T, B)
            live = live & valid.flatten().to(live.device)
        out.append(vjp_norm[live] / v_norm[live])
    return out


def _one_step_vjp(trace: LayerTrace, steps: list, v: list[Tensor]) -> list[Tensor]:
    """(∂L/∂h_{k+1}) ∂h_{k+1}/∂h_k for all pairs at once, one tensor per state field."""
    cell = trace.layer.cell
    if isinstance(cell, ElmanCell):                  # the paper's immediate derivative
        h_next = torch.cat([after.detach() for _, _, after in steps])    # (T·B, H)
        if cell.nonlinearity == "tanh":
            slope = 1 - h_next * h_next                                  # tanh'(a_{k+1})
        else:
            slope = (h_next > 0).to(h_next.dtype)                        # relu'(a_{k+1})
        return [(v[0] * slope) @ cell.W_hh]                              # (T·B, H)
    prev = [torch.cat([_fields(before)[f].detach() for _, before, _ in steps])
            for f in range(len(v))]
    xs = torch.cat([trace.xs[t] for t, _, _ in steps])                  # (T·B, I)
    prev = [p.requires_grad_() for p in prev]
    like = steps[0][1]
    state = type(like)(*prev) if isinstance(like, tuple) else prev[0]
    new, _ = cell(state, xs)
    return list(torch.autograd.grad(_fields(new), prev, grad_outputs=v, create_graph=True,
                                    allow_unused=True, materialize_grads=True))


def pascanu_penalty(loss: Tensor, traces: list[LayerTrace], eps: float = 1e-12) -> Tensor:
    """Ω for the recurrent layers recorded in ``traces`` during the forward that gave
    ``loss``: the mean of (r_k − 1)² over each layer's live pairs, averaged over layers; a
    differentiable scalar (0 when there is nothing to regularise)."""
    terms = [(r - 1).pow(2).mean() for r in step_ratios(loss, traces, eps) if r.numel()]
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
    ``pascanu_omega``, the mean ratio r_k as ``pascanu_ratio``. With ``weight`` 0 the
    objective is the loss and nothing is traced."""
    if weight <= 0:
        def plain(model, batch):
            loss, metrics = loss_fn(model, batch)
            return loss, loss, metrics
        return plain

    def regularized(model, batch):
        with tracing(model) as traces:
            loss, metrics = loss_fn(model, batch)
        ratios = [r for r in step_ratios(loss, traces) if r.numel()]
        if ratios:
            omega = torch.stack([(r - 1).pow(2).mean() for r in ratios]).mean()
            ratio = torch.cat(ratios).mean().item()
        else:
            omega, ratio = loss.new_zeros(()), float("nan")
        return loss, loss + weight * omega, {**metrics, "pascanu_omega": omega.item(),
                                              "pascanu_ratio": ratio}
    return regularized
