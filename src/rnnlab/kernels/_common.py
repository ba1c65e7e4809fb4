"""Pieces shared by the kernels: the tanh through the sigmoid, bias folding, the states
before each step, and the skeleton of every backward.

The skeleton, written once here and used by every kernel:

- :class:`Kernel`, the base of every kernel, written like a ``torch.autograd.Function``
  (forward and backward with a ctx) and registered as two ``torch.library`` operators
  (:func:`register`); its subclass's ``Inputs`` is a NamedTuple over the forward's
  arguments, by name;
- :class:`Options`, the per-call non-tensor options (direction, activation, ...) as one
  tuple on the context, and :func:`save` / :func:`unpack`: the saved tensors by name (a
  kernel's own NamedTuple), the options, and which inputs need a gradient, by name;
- :class:`Walk`, the prologue of the backward loop (∂L/∂y(t), masks and zoneout weights as
  per-step views, the order of the steps) and its :meth:`Walk.enter`, the split of a state's
  gradient at a step under ragged lengths or zoneout;
- :func:`input_grads`, the epilogue's GEMMs over all T·B rows for the input projection,
  and :func:`grads`, the gradients by input name at the forward's positions.
"""

from __future__ import annotations

import inspect
from collections import namedtuple
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..unroll import unroll

# On CPU, torch's tanh costs several times its sigmoid per element past about a thousand
# elements; there tanh(x) = 2σ(2x) - 1 wins (absolute error ~2e-7 in float32, ~1e-16 in
# float64). Blocks of up to this many elements keep torch's tanh: measured at 1 thread,
# 16 x 64 = 1024 elements, torch's tanh 3.5 µs against 5.5-5.7 µs for σ and the affine op
# (folded or not, LSTM's 5.1 µs against 6.5 µs), and from 1280 elements on the sigmoid wins
# (3.6-5.0 µs against 6.2 µs). Every kernel and :func:`tanh_`, :func:`tanh`,
# :func:`tanh_into`, :func:`sigmoid_tanh` read this one constant.
SIGMOID_TANH_ABOVE = 1024


def sigmoid_tanh(block: Tensor) -> bool:
    """Whether tanh takes the sigmoid for blocks shaped like ``block``: a kernel that knows
    it in advance can fold tanh(a) = 2σ(2a) - 1's inner 2 into its weights."""
    return block.device.type == "cpu" and block.numel() > SIGMOID_TANH_ABOVE


def tanh_(x: Tensor) -> Tensor:
    """In-place tanh, through the sigmoid where that is faster."""
    if sigmoid_tanh(x):
        return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)
    return x.tanh_()


def tanh(x: Tensor) -> Tensor:
    """Out-of-place :func:`tanh_`."""
    if sigmoid_tanh(x):
        return torch.mul(x, 2.0).sigmoid_().mul_(2.0).sub_(1.0)
    return torch.tanh(x)


def tanh_into(x: Tensor, out: Tensor, neg_ones: Tensor) -> Tensor:
    """``out = tanh(x)``, through 2σ(2x) - 1 as three scalar-free ops (2x as x + x, σ in
    place, -1 + 2σ with alpha=2; a Python scalar operand costs a conversion of ~2 µs per op)
    where that is faster. ``neg_ones``: -1 of ``out``'s shape."""
    if sigmoid_tanh(x):
        torch.add(x, x, out=out).sigmoid_()
        return torch.add(neg_ones, out, alpha=2.0, out=out)
    return torch.tanh(x, out=out)


# ---- the backward skeleton -------------------------------------------------------------

class Options(NamedTuple):
    """A kernel call's non-tensor options, one tuple on ``ctx.opts`` for its backward."""
    reverse: bool = False
    relu: bool = False                   # Elman, leaky, feedback: relu instead of tanh
    feedback: str = "identity"           # output feedback: f of ŷ = f(o)
    chunk: int | None = None             # chunked scan: the chunk length L


class Kernel:
    """A fused kernel, registered with ``torch.library`` as two PyTorch operators.

    A subclass writes ``forward(ctx, *inputs)`` and ``backward(ctx, *output_grads)`` as it
    would for a ``torch.autograd.Function`` (:func:`save` / :func:`unpack` for what passes
    between them) and declares:

    - ``name``: the operators are ``torch.ops.rnnlab.<name>`` (the forward: the public
      outputs followed by the tensors the backward reads) and ``rnnlab::<name>_backward``
      (the hand-derived BPTT);
    - ``schema``: the forward's arguments in ``torch.library`` schema syntax;
    - ``Saved``: its NamedTuple of saved tensors. A field named like an input is that input;
      ``from_outputs`` maps a field to the public output it is; every other field is an
      extra output of the forward operator (an empty placeholder where it is None);
    - ``outputs``: how many public outputs;
    - ``fake(*inputs) -> (public outputs, {extra field: tensor or None})``: the shapes, for
      ``torch.compile`` / ``torch.export`` (the meta kernel);
    - ``reference(*inputs) -> public outputs``: the same computation in plain
      differentiable torch ops (the cells' reference steps), which double backward
      differentiates (:func:`register`).

    ``Kernel.apply(*inputs)`` calls the forward operator and returns the public outputs
    (one tensor, or a tuple), like ``torch.autograd.Function.apply``. ``Inputs`` is a
    NamedTuple over the forward's arguments (all but ctx), by name, for :func:`unpack` and
    :func:`grads`.
    """

    Inputs: type
    Saved: type
    name: str
    schema: str
    outputs: int = 2
    from_outputs: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        params = list(inspect.signature(cls.forward).parameters.values())[1:]
        cls.Inputs = namedtuple(cls.__name__ + "Inputs", [p.name for p in params],
                                defaults=[None if p.default is p.empty else p.default
                                          for p in params])
        register(cls)

    @classmethod
    def apply(cls, *inputs):
        """The public outputs of the forward operator (the extra ones are for backward)."""
        out = cls.overload(*inputs)
        if cls.outputs == 1:
            return out[0] if isinstance(out, (tuple, list)) else out
        return tuple(out[:cls.outputs])


class _Context:
    """What a kernel's forward and backward see as ``ctx`` inside the operators."""

    def __init__(self, saved=None, opts=None, need=None):
        self.saved, self.opts, self.need = saved, opts, need


def save(ctx, saved: tuple | None, opts: Options) -> None:
    """Keep ``saved`` (a kernel's NamedTuple of tensors, or None: no backward will run) and
    the options for the backward."""
    ctx.saved, ctx.opts = saved, opts


def unpack(ctx):
    """The backward's prologue: ``(saved, opts, need)``: the saved tensors by name, the
    :class:`Options`, and which of the forward's inputs need a gradient, by name."""
    return ctx.saved, ctx.opts, ctx.need


def grads(need: tuple, **named) -> tuple:
    """The backward's return value: the gradients by input name, at the forward's positions;
    None for every input that ``need`` (from :func:`unpack`) says needs none."""
    return tuple(g if n else None for g, n in zip(type(need)(**named), need))


class Walk(NamedTuple):
    """The backward loop's common part, for a state that is also the output, y(t) = h(t):
    the steps in backward order with the step after each (:func:`backward_steps`), ∂L/∂y(t),
    the mask as 0/1 and the zoneout weights of h, each as per-step views (or None)."""
    order: list
    dy_t: tuple
    m_t: tuple | None
    z_t: tuple | None

    @classmethod
    def of(cls, d_ys: Tensor | None, ys: Tensor, mask: Tensor | None, zone: Tensor | None,
           reverse: bool) -> Walk:
        d_ys = zeros_if_none(d_ys, ys)
        return cls(backward_steps(ys.shape[0], reverse), d_ys.unbind(0),
                   None if mask is None else mask.to(ys.dtype).unbind(0),
                   None if zone is None else zone.unbind(0))

    def start(self, d_hT: Tensor | None, h0: Tensor) -> Tensor:
        """∇h(τ) entering the first backward step: the given ∂L/∂h(τ) (a copy: the loop may
        work on it in place), plus ∂L/∂y(τ) unless :meth:`enter` adds it at the step."""
        dh = zeros_if_none(d_hT, h0).clone()
        if self.m_t is None and self.z_t is None:
            dh = dh + self.dy_t[self.order[0][0]]
        return dh

    def enter(self, dh: Tensor, t: int, nxt, out: Tensor | None = None):
        """``(entering, passed_on)`` of h's gradient at backward step t: :func:`enter_step`
        (ragged lengths) or, with zoneout, :func:`zone_step`."""
        if self.z_t is None:
            return enter_step(dh, self.dy_t, self.m_t, t, nxt, out)
        return zone_step(dh, self.dy_t, self.z_t, t, out)

    def enter_cell(self, dc: Tensor, t: int, nxt, zc_t):
        """The same for a state with no output of its own (the LSTM's c), zoneout ``zc_t``."""
        if zc_t is None:
            return enter_step(dc, None, self.m_t, t, nxt)
        return zone_step(dc, None, zc_t, t)


def input_grads(dX: Tensor, xs: Tensor, W: Tensor, need_xs: bool, need_W: bool,
                need_b: bool):
    """The epilogue's gradients of the input projection X = U x(t) + b, from ∇X (T, B, G)
    of every step, one GEMM (or reduction) each over all T·B rows: ``(∇x (T, B, I) =
    Uᵀ ∇X(t), ∇U = Σ_t ∇X(t) x(t)ᵀ, ∇b = Σ_t ∇X(t))``, None where not needed."""
    T, B, I = xs.shape
    dX2 = dX.view(T * B, -1)
    d_xs = (dX2 @ W).view(T, B, I) if need_xs else None
    d_W = dX2.t() @ xs.reshape(T * B, I) if need_W else None
    d_b = dX2.sum(0) if need_b else None
    return d_xs, d_W, d_b


def states_after(ys: Tensor, states: Tensor | None) -> Tensor:
    """h(t) after every step: the outputs, or with ragged lengths the frozen states."""
    return ys if states is None else states


def ifog(w: Tensor | None, H: int) -> Tensor | None:
    """torch.nn's LSTM gate rows i, f, g, o -> the kernels' i, f, o, g."""
    if w is None:
        return None
    return torch.cat([w[:2 * H], w[3 * H:], w[2 * H:3 * H]], dim=0)


# ---- pieces --------------------------------------------------------------------------------

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


def previous_chunk(S: Tensor, s0: Tensor, lo: int, hi: int, reverse: bool) -> Tensor:
    """The states before steps lo..hi-1 in the order they ran, (hi - lo, B, H): a view of
    ``S`` where it can be, :func:`previous_states`' rows lo..hi-1 otherwise."""
    T = S.shape[0]
    if not reverse:
        return S[lo - 1:hi - 1] if lo >= 1 else torch.cat([s0.unsqueeze(0), S[:hi - 1]])
    return S[lo + 1:hi + 1] if hi <= T - 1 else torch.cat([S[lo + 1:], s0.unsqueeze(0)])


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


def enter_step(dh, dy_t, m_t, t: int, nxt, out: Tensor | None = None):
    """Split the gradient of a state at backward step t.

    Returns ``(entering, passed_on)``: the gradient that enters step t's derivatives, and
    what goes straight to the state at t-1 besides them (None: nothing). Without a mask,
    ∂L/∂y(t) already rode in with the previous backward step and ∂L/∂y(t-1) is what passes
    on (in the bias slot of the next addmm). With a mask, a step past its sequence's length
    froze the state: (∇ + ∂L/∂y(t)) ⊙ m enters and ∇ ⊙ (1 - m) passes on unchanged.
    ``dy_t`` None: a state with no output of its own (the LSTM's c). ``out``: where the
    entering gradient goes under a mask (else a new tensor).
    """
    if m_t is None:
        return dh, (None if nxt is None or dy_t is None else dy_t[nxt])
    m = m_t[t]
    if dy_t is None:
        return torch.mul(dh, m, out=out), dh - dh * m
    return torch.add(dh, dy_t[t], out=out).mul_(m), dh - dh * m


def zone_step(dh: Tensor, dy_t, z_t, t: int, out: Tensor | None = None):
    """Split the gradient of a zoned-out state at backward step t (Krueger et al. 2017).

    The state after step t is ``h(t) = z ⊙ h(t-1) + (1 - z) ⊙ h̃(t)`` and it is also the
    output, so with ∇ = ∇h(t) + ∂L/∂y(t): ``∇ ⊙ (1 - z)`` enters the derivatives of h̃(t)
    and ``∇ ⊙ z`` goes straight to h(t-1). Returns ``(entering, passed_on)``.
    ``dy_t`` None: a state with no output of its own (the LSTM's c). ``out``: where the
    entering gradient goes (else a new tensor).
    """
    total = dh if dy_t is None else dh + dy_t[t]
    passed = total * z_t[t]
    return torch.sub(total, passed, out=out), passed


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
                   drop: Tensor | None, out: Tensor | None = None,
                   addcmul: bool = False) -> Tensor:
    """∇h(t-1) = Wᵀ ∇G, times the recurrent dropout mask, plus what passed on directly;
    into ``out`` if given. Under dropout the sum is in place on Wᵀ ∇G, or with ``addcmul``
    (the LN kernels) one addcmul: the two round differently, so each kernel keeps its own."""
    if drop is None:
        return (torch.mm(dG, W, out=out) if passed_on is None
                else torch.addmm(passed_on, dG, W, out=out))
    back = torch.mm(dG, W)
    if passed_on is None:
        return torch.mul(back, drop, out=out) if addcmul or out is not None else back.mul_(drop)
    if addcmul:
        return torch.addcmul(passed_on, back, drop, out=out)
    return torch.add(back.mul_(drop), passed_on, out=out)


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


def previous_views(states: Tensor, h0: Tensor, reverse: bool) -> list[Tensor]:
    """h(t-1) of every step t as views of the states (T, B, H) and h0 (B, H), indexed by t:
    what :func:`previous_states` gives, without its (T, B, H) copy."""
    views = list(states.unbind(0))
    return views[1:] + [h0] if reverse else [h0] + views[:-1]


# ---- the kernels as torch.library operators ----------------------------------------------
#
# ``Kernel.__init_subclass__`` calls :func:`register`, which makes each kernel two custom
# operators with everything torch needs to treat them as its own: a meta (fake) kernel for
# torch.compile / torch.export's shape propagation, the registered autograd (the forward
# saves what the backward reads; the backward is the second operator), and an autocast
# rule. A sequence kernel runs its recurrence in float32 under bf16/fp16 autocast: the
# state and its gradient accumulate over T steps, and in 8-bit-mantissa arithmetic the
# error grows with T (torch's autocast keeps its own accumulating ops, e.g. layer_norm and
# the losses, in float32 for the same reason); the outputs are float32 and the next
# autocast op casts them down.

LIBRARY = "rnnlab"
#: every operator's Python implementation, by qualified name (for tools that look inside)
IMPLEMENTATIONS: dict = {}
_BACKWARD_SCHEMA = ("(Tensor?[] inputs, Tensor?[] outputs, Tensor?[] grads, bool[] need, "
                    "bool reverse, bool relu, str feedback, SymInt? chunk) -> Tensor[]")


def _absent(like: Tensor) -> Tensor:
    """The placeholder an operator returns where a kernel has None (ops return tensors)."""
    return like.new_empty(0)


def _present(t: Tensor) -> Tensor | None:
    """The inverse of :func:`_absent` (no real kernel tensor is 1-D and empty: T >= 1)."""
    return None if t.dim() == 1 and t.shape[0] == 0 else t


def _check_devices(qualname: str, inputs) -> None:
    """torch.nn's error for weights on another device than the input (e.g. a cell built on
    the meta device)."""
    tensors = [t for t in inputs if isinstance(t, Tensor)]
    device = tensors[0].device
    for t in tensors[1:]:
        if t.device != device:
            raise RuntimeError(f"Input and parameter tensors are not at the same device, "
                               f"found input tensor at {device} and parameter tensor at "
                               f"{t.device} ({qualname})")


def register(cls) -> None:
    """Define ``rnnlab::<cls.name>`` and ``rnnlab::<cls.name>_backward`` (see
    :class:`Kernel`): implementations, fake kernels, autograd, autocast."""
    names = cls.Inputs._fields
    extra = tuple(f for f in cls.Saved._fields if f not in names and f not in cls.from_outputs)
    n_out = cls.outputs + len(extra)
    returns = "Tensor" if n_out == 1 else "(" + ", ".join(["Tensor"] * n_out) + ")"
    qualname = f"{LIBRARY}::{cls.name}"

    def join(outs, extras):
        outs = outs if isinstance(outs, tuple) else (outs,)
        if len(outs) != cls.outputs:                  # (the dispatcher trusts the count)
            raise RuntimeError(f"{qualname} returned {len(outs)} outputs, declared "
                               f"{cls.outputs}")
        flat = (*outs, *(_absent(outs[0]) if e is None else e for e in extras))
        return flat[0] if n_out == 1 else flat

    def forward_impl(*inputs):
        _check_devices(qualname, inputs)
        ctx = _Context()
        outs = cls.forward(ctx, *inputs)
        return join(outs, [None if ctx.saved is None else getattr(ctx.saved, f) for f in extra])

    def forward_fake(*inputs):
        # a meta weight beside a real input dispatches here (the meta key wins): without the
        # check the outputs would be the input's device's uninitialised memory
        _check_devices(qualname, inputs)
        outs, extras = cls.fake(*cls.Inputs(*inputs))
        return join(outs, [extras.get(f) for f in extra])

    def backward_impl(inputs, outputs, grads, need, reverse, relu, feedback, chunk):
        inputs = cls.Inputs(*inputs)
        public, extras = outputs[:cls.outputs], outputs[cls.outputs:]
        saved = cls.Saved(**{f: getattr(inputs, f) if f in names else
                             public[cls.from_outputs[f]] if f in cls.from_outputs else
                             extras[extra.index(f)] for f in cls.Saved._fields})
        ctx = _Context(saved, Options(reverse, relu, feedback, chunk), cls.Inputs(*need))
        got = cls.backward(ctx, *grads)
        like = next(t for t in inputs if isinstance(t, Tensor))
        return [_absent(like) if g is None else g.contiguous() for g in got]

    def backward_fake(inputs, outputs, grads, need, reverse, relu, feedback, chunk):
        like = next(t for t in inputs if t is not None)
        return [x.new_empty(x.shape) if n and x is not None else _absent(like)
                for x, n in zip(inputs, need)]

    def setup_context(ctx, inputs, output):
        ctx.set_materialize_grads(False)              # no zeros for the extra outputs
        full = cls.Inputs(*inputs)
        outs = output if isinstance(output, tuple) else (output,)
        slots = (*full, *outs[:cls.outputs], *(_present(t) for t in outs[cls.outputs:]))
        ctx.tensor_at = [isinstance(s, Tensor) for s in slots]
        ctx.constants = [None if t else s for s, t in zip(slots, ctx.tensor_at)]
        ctx.save_for_backward(*(s for s in slots if isinstance(s, Tensor)))

    def backward(ctx, *grads):
        stored = iter(ctx.saved_tensors)
        slots = [next(stored) if t else c for t, c in zip(ctx.tensor_at, ctx.constants)]
        inputs, outputs = cls.Inputs(*slots[:len(names)]), slots[len(names):]
        grads = [torch.zeros_like(o) if g is None else g        # as autograd.Function does
                 for g, o in zip(grads[:cls.outputs], outputs)]
        given = len(ctx.needs_input_grad)             # trailing defaults may be left out
        need = [*ctx.needs_input_grad, *[False] * (len(names) - given)]
        if torch.is_grad_enabled():                   # create_graph=True: double backward
            got = _reference_grads(cls, inputs, grads, need)
        else:
            opts = Options(**{f: getattr(inputs, f) for f in Options._fields if f in names})
            got = [_present(g) for g in cls.backward_op(
                [x if isinstance(x, Tensor) else None for x in inputs], outputs, grads, need,
                *opts)]
        return tuple(got[:given])

    IMPLEMENTATIONS.update({qualname: forward_impl, qualname + "_backward": backward_impl})
    cls.op = torch.library.custom_op(qualname, forward_impl, mutates_args=(),
                                     schema=f"({cls.schema}) -> {returns}")
    cls.op.register_fake(forward_fake)
    cls.overload = getattr(getattr(torch.ops, LIBRARY), cls.name).default   # the OpOverload
    cls.backward_op = torch.library.custom_op(qualname + "_backward", backward_impl,
                                              mutates_args=(), schema=_BACKWARD_SCHEMA)
    cls.backward_op.register_fake(backward_fake)
    cls.op.register_autograd(backward, setup_context=setup_context)
    for device in ("cpu", "cuda"):
        if torch.amp.is_autocast_available(device):
            cls.op.register_autocast(device, torch.float32)


def _reference_grads(cls, inputs, grads: list, need: list) -> list:
    """The backward when autograd records it (``create_graph=True``): recompute the outputs
    with the plain-ops ``cls.reference`` and differentiate that, so that the gradients are
    themselves differentiable (double backward, to any order)."""
    wrt = [i for i, n in enumerate(need) if n]
    with torch.enable_grad():
        outs = cls.reference(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
    got = torch.autograd.grad([o for o, _ in pairs], [inputs[i] for i in wrt],
                              [g for _, g in pairs], create_graph=True, allow_unused=True)
    result: list = [None] * len(inputs)
    for i, g in zip(wrt, got):
        result[i] = torch.zeros_like(inputs[i]) if g is None else g
    return result


class _Unrolled(nn.Module):
    """:func:`rnnlab.unroll` over a cell, as a module for ``torch.func.functional_call``."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def forward(self, xs, state, lengths, reverse, drop, zone):
        return unroll(self.cell, xs, state, lengths, reverse, drop=drop, zone=zone)


def unrolled(cell, params: dict, xs: Tensor, state, mask: Tensor | None, reverse: bool,
             drop: Tensor | None = None, zone: tuple | None = None):
    """A kernel's plain-ops reference: :func:`rnnlab.unroll` over ``cell`` (built on the
    meta device: only its structure is used) with its parameters taken from ``params`` by
    name (zeros for those missing or None: a bias the kernel call folded away), the mask
    (T, B, 1) as lengths. Differentiable to any order."""
    given = {}
    for name, p in cell.named_parameters():
        value = params.get(name)
        given["cell." + name] = (value if value is not None else
                                 torch.zeros(p.shape, dtype=xs.dtype, device=xs.device))
    lengths = None if mask is None else mask[..., 0].sum(0)
    return torch.func.functional_call(_Unrolled(cell), given,
                                      (xs, state, lengths, reverse, drop, zone))
