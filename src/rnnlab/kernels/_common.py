"""Pieces shared by the kernels: bias folding and the previous-state sequence."""

from __future__ import annotations

import torch
from torch import Tensor

# On CPU, torch's tanh costs about 5x its sigmoid per element (30 us against 6 us for a
# 64 x 128 float32 block here); past about a thousand elements tanh(x) = 2 sigmoid(2x) - 1,
# four cheap ops, wins (absolute error ~2e-7 in float32). Smaller blocks keep torch's tanh.
_SIGMOID_TANH_MIN = 1024


def tanh_(x: Tensor) -> Tensor:
    """In-place tanh, through the sigmoid where that is faster."""
    if x.device.type == "cpu" and x.numel() >= _SIGMOID_TANH_MIN:
        return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)
    return x.tanh_()


def tanh(x: Tensor) -> Tensor:
    """Out-of-place :func:`tanh_`."""
    if x.device.type == "cpu" and x.numel() >= _SIGMOID_TANH_MIN:
        return torch.mul(x, 2.0).sigmoid_().mul_(2.0).sub_(1.0)
    return torch.tanh(x)


def input_projection(xs: Tensor, W: Tensor, bias: Tensor | None) -> Tensor:
    """W x(t) + bias for every step at once: one GEMM over all T·B rows -> (T, B, G)."""
    T, B, I = xs.shape
    flat = xs.reshape(T * B, I)
    out = torch.addmm(bias, flat, W.t()) if bias is not None else flat @ W.t()
    return out.view(T, B, -1)


def previous_states(states: Tensor, h0: Tensor, reverse: bool) -> Tensor:
    """h(t-1) for every t, in the order the steps ran: states (T, B, H) -> (T, B, H)."""
    if reverse:
        return torch.cat([states[1:], h0.unsqueeze(0)], dim=0)
    return torch.cat([h0.unsqueeze(0), states[:-1]], dim=0)


def sum_bias(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    if a is None:
        return b
    return a if b is None else a + b


def steps(T: int, reverse: bool):
    return range(T - 1, -1, -1) if reverse else range(T)


def backward_steps(T: int, reverse: bool):
    """The steps of the backward loop, each with the step that follows it there (or None):
    lets ∂L/∂y of the next step ride in the bias slot of this step's addmm."""
    order = list(steps(T, not reverse))
    return list(zip(order, order[1:] + [None]))


def frozen_states(like: Tensor, mask: Tensor | None):
    """For ragged lengths: a (T, B, H) buffer for the state after each forward step, its
    per-step views and the mask's per-step views; all None without a mask."""
    if mask is None:
        return None, None, None
    states = torch.empty_like(like)
    return states, states.unbind(0), mask.unbind(0)


def leave_step(h_new: Tensor, h: Tensor, m_t, s_t, t: int) -> Tensor:
    """The state after forward step t. With a mask, a sequence past its length keeps h
    (written into ``s_t[t]``) and its output ``h_new`` is zeroed in place."""
    if m_t is None:
        return h_new
    h = torch.where(m_t[t], h_new, h, out=s_t[t])
    h_new.mul_(m_t[t])
    return h


def enter_step(dh, dy_t, m_t, t: int, nxt):
    """Split the gradient of a state at backward step t.

    Returns ``(entering, passed_on)``: the gradient that enters step t's derivatives, and
    what goes straight to the state at t-1 besides them (None: nothing). Without a mask,
    ∂L/∂y(t) already rode in with the previous backward step and ∂L/∂y(t-1) is what passes
    on (in the bias slot of the next addmm). With a mask, a step past its sequence's length
    froze the state: (∇ + ∂L/∂y(t)) ⊙ m enters and ∇ ⊙ (1 - m) passes on unchanged.
    ``dy_t`` None: a state with no output of its own (the LSTM's c).
    """
    if m_t is None:
        return dh, (None if nxt is None or dy_t is None else dy_t[nxt])
    m = m_t[t]
    return (dh if dy_t is None else dh + dy_t[t]) * m, dh - dh * m


def zone_step(dh: Tensor, dy_t, z_t, t: int):
    """Split the gradient of a zoned-out state at backward step t (Krueger et al. 2017).

    The state after step t is ``h(t) = z ⊙ h(t-1) + (1 - z) ⊙ h̃(t)`` and it is also the
    output, so with ∇ = ∇h(t) + ∂L/∂y(t): ``∇ ⊙ (1 - z)`` enters the derivatives of h̃(t)
    and ``∇ ⊙ z`` goes straight to h(t-1). Returns ``(entering, passed_on)``.
    ``dy_t`` None: a state with no output of its own (the LSTM's c).
    """
    total = dh if dy_t is None else dh + dy_t[t]
    passed = total * z_t[t]
    return total - passed, passed


def zoned(h_new: Tensor, h: Tensor, z_t, t: int, out: Tensor) -> Tensor:
    """The zoned-out state after forward step t: h̃ + z ⊙ (h(t-1) - h̃), into ``out``."""
    return torch.lerp(h_new, h, z_t[t], out=out)


def fold_lengths(zone: Tensor, mask: Tensor | None) -> Tensor:
    """Zoneout weights (T, B, S) with ragged lengths folded in: past its length a sequence
    keeps its whole state, which is zoneout with z = 1."""
    return zone if mask is None else torch.where(mask, zone, torch.ones_like(zone))


def run_zoned(run, mask: Tensor | None, zone):
    """Every kernel's zoneout convention around ``run(mask, zone) -> (ys, *states)``: without
    zoneout, ``run(mask, None)``; with it, the lengths folded into the weights
    (:func:`fold_lengths`), ``run(None, zone)``, and the outputs zeroed past each length."""
    if zone is None:
        return run(mask, None)
    ys, *states = run(None, tuple(fold_lengths(z, mask) for z in zone))
    return (ys if mask is None else ys * mask, *states)


def dropped(h: Tensor, drop: Tensor | None) -> Tensor:
    """The state as the recurrent weights read it: h ⊙ mask under recurrent dropout."""
    return h if drop is None else h * drop


def recurrent_grad(dG: Tensor, W: Tensor, passed_on: Tensor | None,
                   drop: Tensor | None) -> Tensor:
    """∇h(t-1) = Wᵀ ∇G, times the recurrent dropout mask, plus what passed on directly."""
    if drop is None:
        return dG @ W if passed_on is None else torch.addmm(passed_on, dG, W)
    back = (dG @ W).mul_(drop)
    return back if passed_on is None else back.add_(passed_on)


def zeros_if_none(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad


# Activation derivatives from the activation's output, into a preallocated ∇ buffer: one
# ATen op each per step, where 1 - y² or σ(1 - σ) written out costs two or three.
_tanh_backward = torch.ops.aten.tanh_backward.grad_input
_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input
_threshold_backward = torch.ops.aten.threshold_backward.grad_input


def tanh_grad(grad: Tensor, y: Tensor, out: Tensor) -> Tensor:
    """``out = grad ⊙ (1 - y²)``, the gradient of a, y = tanh(a)."""
    return _tanh_backward(grad, y, grad_input=out)


def sigmoid_grad(grad: Tensor, y: Tensor, out: Tensor) -> Tensor:
    """``out = grad ⊙ y ⊙ (1 - y)``, the gradient of a, y = σ(a) (``out`` may be ``grad``)."""
    return _sigmoid_backward(grad, y, grad_input=out)


def relu_grad(grad: Tensor, y: Tensor, out: Tensor) -> Tensor:
    """``out = grad ⊙ 1[y > 0]``, the gradient of a, y = relu(a)."""
    return _threshold_backward(grad, y, 0, grad_input=out)


def outer_previous(d: Tensor, states: Tensor, h0: Tensor, reverse: bool) -> Tensor:
    """Σ_t d(t)ᵀ h(t-1) over all T·B rows: d (T, B, G), states h(t) (T, B, H) -> (G, H).

    The gradient of a recurrent weight matrix, without the shifted (T, B, H) copy of the
    states that :func:`previous_states` makes: one GEMM over the T-1 steps whose h(t-1) is
    a state of the sequence, accumulated onto the first step's d(t)ᵀ h0. ``d`` contiguous.
    """
    T, B, G = d.shape
    if reverse:                                  # h(t-1) of step t is h(t+1) running back
        first, rest, prev = d[T - 1], d[:T - 1], states[1:]
    else:
        first, rest, prev = d[0], d[1:], states[:T - 1]
    return torch.addmm(first.t() @ h0, rest.reshape(-1, G).t(),
                       prev.reshape(-1, states.shape[-1]))


def sigmoid_tanh(block: Tensor) -> bool:
    """Whether :func:`tanh_` takes the sigmoid for blocks shaped like ``block``: a kernel
    that knows it in advance can fold tanh(a) = 2σ(2a) - 1's inner 2 into its weights."""
    return block.device.type == "cpu" and block.numel() >= _SIGMOID_TANH_MIN


def previous_views(states: Tensor, h0: Tensor, reverse: bool) -> list[Tensor]:
    """h(t-1) of every step t as views of the states (T, B, H) and h0 (B, H), indexed by t:
    what :func:`previous_states` gives, without its (T, B, H) copy."""
    views = list(states.unbind(0))
    return views[1:] + [h0] if reverse else [h0] + views[:-1]
