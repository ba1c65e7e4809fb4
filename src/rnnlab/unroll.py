"""The reference time loop: a cell unrolled over a sequence (book section 10.1, Fig. 10.2).

This is the one place where the reference path iterates over time. Fused kernels
(:mod:`rnnlab.kernels`) have their own loops and are tested against this one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .cells.base import map_state, state_fields

__all__ = ["unroll", "check_sequence", "length_mask", "map_state", "state_fields"]


def check_sequence(xs, input_size: int) -> tuple[int, int]:
    """Check a time-major batch ``xs`` (T, B, I) and return (T, B); a clear error otherwise."""
    if not isinstance(xs, Tensor):
        raise TypeError(f"expected a tensor of shape (T, B, {input_size}) (time, batch, "
                        f"features), got {type(xs).__name__}")
    if xs.dim() != 3:
        raise ValueError(f"expected input of shape (T, B, {input_size}) (time, batch, "
                         f"features), got a {xs.dim()}-D tensor of shape {tuple(xs.shape)}")
    T, B, size = xs.shape
    if size != input_size:
        raise ValueError(f"expected {input_size} input features (last dimension of "
                         f"(T, B, {input_size})), got shape {tuple(xs.shape)}")
    if B == 0:
        raise ValueError(f"empty batch: input of shape {tuple(xs.shape)} has B = 0 sequences")
    if T == 0:
        raise ValueError(f"empty sequence: input of shape {tuple(xs.shape)} has T = 0 steps")
    if not xs.is_floating_point():
        raise TypeError(f"expected a floating-point input, got dtype {xs.dtype}")
    return T, B


def length_mask(lengths, T: int, B: int, device=None) -> Tensor | None:
    """Validate ``lengths`` (B,) and return the boolean mask (T, B, 1) of valid steps.

    ``None`` means every sequence is T long (no mask). A length of 0 is legal.
    """
    if lengths is None:
        return None
    if not isinstance(lengths, Tensor):
        try:
            lengths = torch.as_tensor(lengths)
        except (TypeError, ValueError) as e:
            raise TypeError(f"lengths must be a 1-D sequence of {B} ints, got {lengths!r}") from e
    if lengths.dim() != 1 or lengths.shape[0] != B:
        raise ValueError(f"lengths must have shape ({B},), one length per sequence of the "
                         f"batch; got shape {tuple(lengths.shape)}")
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must be integers, got dtype {lengths.dtype}")
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo < 0 or hi > T:
        bad = lo if lo < 0 else hi
        raise ValueError(f"lengths must lie in [0, T] = [0, {T}]; got {bad}")
    steps = torch.arange(T, device=device)
    return (steps[:, None] < lengths.to(device)[None, :]).unsqueeze(-1)


def unroll(cell, xs: Tensor, state=None, lengths=None, reverse: bool = False,
           trace: list | None = None, drop: Tensor | None = None, zone=None):
    """Run ``cell`` over a sequence, one step at a time (the reference path).

    ::

        state = cell.init_state(B) if state is None
        for t in (0, ..., T-1)   (or T-1, ..., 0 when reverse):
            new, y = cell(state, xs[t])                       (cell(state, xs[t], drop=d))
            new    = z ⊙ state + (1 - z) ⊙ new;  y = new[0]   (zoneout only)
            state  = new         where t < lengths, else unchanged
            ys[t]  = y           where t < lengths, else 0

    **Arguments:**
    - ``cell``: an :class:`rnnlab.Cell`.
    - ``xs``: (T, B, I) time-major input.
    - ``state``: initial state (tensor (B, H) or NamedTuple), zeros by default.
    - ``lengths``: (B,) ints in [0, T]; past its length a sequence's state is frozen and its
      outputs are zero. In reverse, each sequence's valid part is read backwards from its
      own last step, so the padding never enters the state.
    - ``reverse``: run from the last step to the first.
    - ``trace``: a list to receive ``(t, state_before, new_state)`` for every step, in the
      order the steps run; ``new_state`` is the cell's result before the length mask, the
      tensor both the output and the next step read on valid steps, so its gradient is the
      total ∂L/∂h_t there (the diagnostics read gradients and Jacobians off these).
    - ``drop``: recurrent dropout mask (B, output_size), one per sequence, passed to the
      cell's step (Gal & Ghahramani 2016); the cell must be ``regularizable``.
    - ``zone``: zoneout weights, one (T, B, size) tensor per state field (Krueger et al.
      2017): 0/1 masks in training, the rate itself at test time. Each unit keeps its
      previous value with weight z; the output is the zoned state's first field.

    **Returns:** ``(ys, state)`` with ys (T, B, O) and the final state.
    """
    T, B = check_sequence(xs, cell.input_size)
    mask = length_mask(lengths, T, B, xs.device)
    if state is None:
        state = cell.init_state(B, xs.device, xs.dtype)
    x_steps = xs.unbind(0)  # views made once: x[t] in a loop costs O(T^2) in backward
    ys: list[Tensor | None] = [None] * T
    for t in (reversed(range(T)) if reverse else range(T)):
        before = state
        new, y = cell(state, x_steps[t]) if drop is None else cell(state, x_steps[t], drop=drop)
        if zone is not None:
            fields = [torch.lerp(n, s, z[t]) for n, s, z in
                      zip(state_fields(new), state_fields(state), zone)]
            new = type(new)(*fields) if isinstance(new, tuple) else fields[0]
            y = fields[0]
        if mask is not None:
            keep = mask[t]
            state = map_state(lambda n, s, keep=keep: torch.where(keep, n, s), new, state)
            y = y.masked_fill(~keep, 0.0)
        else:
            state = new
        ys[t] = y
        if trace is not None:
            trace.append((t, before, new))
    return torch.stack(ys), state
