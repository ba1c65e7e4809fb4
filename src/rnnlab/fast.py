"""The generic path: any cell's step traced once into ATen graphs and run in one time loop
inside one ``torch.autograd.Function`` (BPTT for any cell, no hand code). On by default
(:data:`ENABLED`), the two time loops run as C generated from the graphs
(:mod:`rnnlab.fast_c`); where that does not apply, the reference loop runs, or with
:data:`GRAPHS` the graphs from Python.

A cell that follows the contract (:mod:`rnnlab.cells.base`) is plain torch ops, so its step
``(state, x) -> (state', y)`` can be traced to ATen ops (``make_fx``, symbolic sizes: one
trace serves every T and B):

    joint(θ, s, x, ∂s', ∂y) = (s', y, ∂s, ∂θ, ∂x)     the step and its vector-Jacobian product
    prologue(θ, xs) -> per-step values                 the nodes that read only θ and x(t):
                                                       once, over all T (one GEMM, not T)
    forward(θ, s, x, values(t)) -> (s', y, saved)      the other nodes without a cotangent
    loop(saved, ∂s', ∂y) -> (∂s, carried)              what ∂s needs: the sequential part
    deferred(saved, carried over all T·B rows) -> (∂θ, ∂x)   the rest, once after the loop

The sequence then runs as (book 10.2.2: BPTT is the forward loop, then the same steps in
reverse order):

    forward:   values = prologue(θ, xs); for t: s(t), y(t), saved(t) = forward(...)
    backward:  for t = T..1: ∂s(t-1), carried(t) = loop(saved(t), ∂s(t), ∂y(t))
               ∂θ, ∂x = deferred(every step's rows stacked): the parameter gradients as
               GEMMs over all T·B rows, as the hand kernels do

with no autograd tape in either loop. Lengths, reverse, recurrent dropout and zoneout are
the loop's business, exactly as in :func:`rnnlab.unroll` (the reference this path is tested
against). The deferred part treats the T·B rows of all steps as one batch, as the cell
contract does (a step maps each row of the batch on its own; a step that mixes the rows of
a batch, e.g. a batch norm inside the cell, must run with ``use_kernel=False``).
"""

from __future__ import annotations

import os
import time
import warnings
import weakref
from typing import NamedTuple

import torch
from torch import Tensor, fx
from torch.fx.experimental.proxy_tensor import make_fx

from . import fast_c
from .cells.base import state_fields

__all__ = ["StepProgram", "step_program", "fast_unroll", "Unsupported", "supports",
           "engage", "ENABLED", "GRAPHS", "C_LOOPS", "WARMUP", "MIN_STEPS"]

ENABLED = os.environ.get("RNNLAB_GENERIC", "1") == "1"
"""The switch of the generic path, on by default: a cell without a kernel trains through its
traced step (in compiled C loops where :mod:`rnnlab.fast_c` applies). ``RNNLAB_GENERIC=0``
in the environment, or ``rnnlab.fast.ENABLED = False``, turns it off; then
:class:`rnnlab.Recurrent` runs the reference loop for cells without a kernel (less memory:
the generic path keeps its steps' values in (T, B, W) buffers, benchmarks/RESULTS.md)."""
GRAPHS = os.environ.get("RNNLAB_GENERIC_GRAPHS", "0") == "1"
"""Where the C loops do not apply (a step the generator does not translate, no compiler,
another device or dtype, :data:`C_LOOPS` off), whether the generic path runs its traced
graphs from Python (``RNNLAB_GENERIC_GRAPHS=1``) or, by default, leaves the call to the
reference loop: from Python the graphs ran at 0.7-1.8x the autograd loop's speed
(benchmarks/RESULTS-generic.md), not a gain to count on."""
C_LOOPS = os.environ.get("RNNLAB_GENERIC_C", "1") == "1"
"""Whether the generic path runs its time loops as compiled C (:mod:`rnnlab.fast_c`) where
it can: CPU, float32 / float64, no lengths or zoneout, a C compiler present. Off
(``RNNLAB_GENERIC_C=0``), or where it cannot, the traced graphs run from Python."""
WARMUP = 1
"""Training calls of a cell that run the reference loop before its step is traced: a
one-off call (a test, a diagnostic) does not pay for the trace, a training loop does once."""
MIN_STEPS = 16
"""Shorter sequences run the reference loop: the generic path's fixed cost per call (the
prologue, the deferred gradients) outweighs its per-step gain below about this many steps
(a training step of a depth-2 deep-transition Elman cell, B 4, I 3, H 4, float64, 1 thread:
1.3 ms against 0.8 ms at T = 5, 2.2 against 2.7 at T = 20, 3.9 against 6.5 at T = 50)."""


class Unsupported(Exception):
    """The cell's step cannot be traced into a fixed graph (the fast path does not apply)."""


class StepProgram(NamedTuple):
    """One cell's traced step: the graphs and how the loop feeds them."""
    prologue: object           # (params..., xs (T, B, I)[, drop]) -> (invariants...,
                               # per-step values (T, ...)...), or None
    n_invariant: int
    forward: object            # (params..., s..., x[, drop], invariants..., values at t...)
                               # -> (s'..., y, saved...)
    loop: object               # (loop_in...) -> (∂s..., carried to the deferred part...)
    deferred: object           # (deferred_in..., all T·B rows) -> (∂params..., ∂x)
    loop_in: tuple             # where each input of loop / deferred comes from (see
    deferred_in: tuple         # _partition)
    deferred_invariant: tuple  # which deferred inputs are the same at every step
    unread: tuple              # which state fields the step does not read
    n_state: int
    n_out: int                 # the forward's outputs before the saved tensors
    state_type: type | None    # the NamedTuple of the state, or None for one tensor
    names: tuple               # the parameter and buffer names: the graphs' first inputs
    seconds: float             # time taken to trace
    read: tuple = ()           # per parameter: whether the step reads it (else no gradient)


# ---- tracing ---------------------------------------------------------------------------

def _step_function(cell, names, n_state, state_type, has_drop):
    """The cell's step as a function of flat tensors ``(params..., s..., x[, drop])`` ->
    ``(s'..., y)``."""
    n_par = len(names)

    def step(*flat):
        weights = dict(zip(names, flat[:n_par]))
        fields = flat[n_par:n_par + n_state]
        state = state_type(*fields) if state_type is not None else fields[0]
        x = flat[n_par + n_state]
        kw = {"drop": flat[n_par + n_state + 1]} if has_drop else {}
        new, y = torch.func.functional_call(cell, weights, (state, x), kw, strict=True)
        new = state_fields(new)
        if len(new) != n_state:
            raise Unsupported(f"the step returned {len(new)} state fields, its state has "
                              f"{n_state}")
        return (*new, y)

    return step


def _joint(step, n_par, n_state, n_primal):
    """(primals..., ∂s'..., ∂y) -> (s'..., y, ∂s..., ∂params..., ∂x): the step and its
    vector-Jacobian product in the state, the parameters and the input."""

    def joint(*flat):
        primals, cot = flat[:n_primal], flat[n_primal:]
        pre, fields, x, post = primals[:n_par], primals[n_par:n_par + n_state], \
            primals[n_par + n_state], primals[n_par + n_state + 1:]
        out, vjp = torch.func.vjp(lambda p, s, x: step(*p, *s, x, *post),
                                  tuple(pre), tuple(fields), x)
        d_par, d_state, d_x = vjp(tuple(cot))
        return (*out, *d_state, *d_par, d_x)

    return joint


def _is_tensor(n) -> bool:
    return isinstance(n, fx.Node) and (n.op == "placeholder" or
                                       isinstance(n.meta.get("val"), Tensor))


def _subgraph(parent: fx.GraphModule, inputs, nodes, outputs) -> fx.GraphModule:
    """A graph of ``nodes`` (in ``parent``'s order) reading ``inputs`` and returning
    ``outputs``; the non-tensor nodes it reads (symbolic sizes) are recomputed in it."""
    graph, env = fx.Graph(), {}
    for n in inputs:
        env[n] = graph.placeholder(n.name)
        env[n].meta = dict(n.meta)
    for n in nodes:
        _copy(graph, env, n)
    graph.output(tuple(_copy(graph, env, o) if isinstance(o, fx.Node) else o
                       for o in outputs))
    graph.eliminate_dead_code()
    return fx.GraphModule(parent, graph)


def _partition(joint: fx.GraphModule, n_par: int, n_primal: int, n_out: int, n_state: int):
    """Split the joint graph three ways (see the module docstring):

    - forward: the nodes that read no cotangent;
    - loop: the nodes that read one and that ∂s (the state's gradient) needs: the
      backward's only sequential part;
    - deferred: the rest, that only ∂params and ∂x need: run once after the loop over all
      T·B rows at once (the parameter gradients as GEMMs over every step's rows).

    Returns ``(forward, loop, deferred, loop_in, deferred_in, invariant, unread)`` where
    ``loop_in`` and ``deferred_in`` list the tensors each backward part reads from the
    parts before it, as ``("primal", i)``, ``("forward", k)`` (the forward's k-th extra
    output), ``("loop", k)`` (the loop's k-th extra output) or ``("cotangent", i)``, and
    ``invariant`` says which
    of the deferred part's inputs depend on the parameters only (the same at every step),
    and ``unread`` which state fields the step does not read (their ∂ is zero).
    """
    nodes = list(joint.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    primals, cots = placeholders[:n_primal], placeholders[n_primal:]
    outs = list(nodes[-1].args[0])
    step_outs, d_state, d_rest = outs[:n_out], outs[n_out:n_out + n_state], \
        outs[n_out + n_state:]
    late = set(cots)
    for n in nodes:
        if n.op == "call_function" and any(a in late for a in n.all_input_nodes):
            late.add(n)
    order = {n: i for i, n in enumerate(nodes)}

    def ancestors(roots, within):
        found, todo = set(), [r for r in roots if isinstance(r, fx.Node)]
        while todo:
            n = todo.pop()
            if n in found or n not in within:
                continue
            found.add(n)
            todo.extend(n.all_input_nodes)
        return found

    loop = ancestors(d_state, late) - set(cots)
    deferred = ancestors(d_rest, late) - loop - set(cots)

    def reads(part, extra_outputs):
        """Tensors outside ``part`` its nodes (and outputs) read, in graph order; non-tensor
        nodes are followed to the tensors they come from."""
        found, seen = set(), set()

        def need(n):
            if n in seen or n in part:
                return
            seen.add(n)
            if _is_tensor(n):
                found.add(n)
            else:
                for a in n.all_input_nodes:
                    need(a)

        for n in part:
            for a in n.all_input_nodes:
                need(a)
        for o in extra_outputs:
            if isinstance(o, fx.Node):
                need(o)
        return sorted(found, key=order.__getitem__)

    loop_reads = reads(loop, d_state)
    deferred_reads = reads(deferred, d_rest)
    primal_index = {p: i for i, p in enumerate(primals)}
    cot_index = {c: i for i, c in enumerate(cots)}
    fwd_extra = [n for n in loop_reads + deferred_reads
                 if n not in late and n not in primal_index]
    fwd_extra = sorted(set(fwd_extra), key=order.__getitem__)
    fwd_index = {n: k for k, n in enumerate(fwd_extra)}
    loop_extra = [n for n in deferred_reads if n in loop]
    loop_index = {n: k for k, n in enumerate(loop_extra)}

    def source(n):
        if n in primal_index:
            return ("primal", primal_index[n])
        if n in cot_index:
            return ("cotangent", cot_index[n])
        if n in loop_index:
            return ("loop", loop_index[n])
        return ("forward", fwd_index[n])

    early = [n for n in nodes if n.op == "call_function" and n not in late]
    forward = _subgraph(joint, primals, early, step_outs + fwd_extra)
    loop_graph = _subgraph(joint, loop_reads, sorted(loop, key=order.__getitem__),
                           d_state + loop_extra)
    deferred_graph = _subgraph(joint, deferred_reads, sorted(deferred, key=order.__getitem__),
                               d_rest)
    row = set(primals[n_par:]) | set(cots)          # what varies with the batch row
    for n in nodes:
        if n.op == "call_function" and any(a in row for a in n.all_input_nodes):
            row.add(n)
    return (forward, loop_graph, deferred_graph, tuple(source(n) for n in loop_reads),
            tuple(source(n) for n in deferred_reads),
            tuple(n not in row for n in deferred_reads),
            tuple(not (isinstance(d, fx.Node) and d in late) for d in d_state))


def _copy(graph: fx.Graph, env: dict, node: fx.Node) -> fx.Node:
    """Copy ``node`` into ``graph``, first the non-tensor nodes (symbolic sizes) it reads
    that ``graph`` lacks, recursively."""
    if node not in env:
        for a in node.all_input_nodes:
            _copy(graph, env, a)
        env[node] = graph.node_copy(node, env.__getitem__)
    return env[node]


def _hoist(forward: fx.GraphModule, n_par: int, n_state: int, n_primal: int):
    """Split the forward step into a prologue over all steps at once and the loop's step.

    The nodes that read no state (only parameters, the input x(t) and the dropout mask)
    do not belong in the loop: the prologue computes them for all T at once (vmapped over
    time: the input projection of every step is one GEMM over T·B rows, the loop-invariant
    work runs once). Returns ``(prologue, step, n_invariant)``: ``prologue(params..., xs,
    [drop]) -> (invariants..., per-step values (T, ...)...)`` and ``step(primals...,
    invariants..., values at t...)`` with the forward's outputs; None, forward, 0 when
    nothing is worth hoisting."""
    nodes = list(forward.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    kind = {}                                     # "c": invariant, "x": per step, "s": state
    for i, n in enumerate(placeholders):
        kind[n] = "s" if n_par <= i < n_par + n_state else \
            "x" if i == n_par + n_state else "c"
    for n in nodes:
        if n.op == "call_function":
            kinds = {kind[a] for a in n.all_input_nodes}
            kind[n] = "s" if "s" in kinds else "x" if "x" in kinds else "c"
    output = nodes[-1]
    hoisted = [n for n in nodes if n.op == "call_function" and kind[n] != "s"
               and isinstance(n.meta.get("val"), Tensor)]
    hoisted_set = set(hoisted)
    frontier = [n for n in hoisted if any(u not in hoisted_set for u in n.users)]
    computes = any(n.target not in _VIEWS for n in hoisted if kind[n] == "x")
    if not computes:
        return None, forward, 0
    const = [n for n in frontier if kind[n] == "c"]
    per_step = [n for n in frontier if kind[n] == "x"]

    pg, penv = fx.Graph(), {}
    for n in placeholders:
        if kind[n] != "s":
            penv[n] = pg.node_copy(n)
    for n in nodes:
        if n in hoisted_set:
            _copy(pg, penv, n)
    pg.output(tuple(penv[n] for n in const + per_step))
    pg.eliminate_dead_code()

    sg, senv = fx.Graph(), {}
    for n in placeholders:
        senv[n] = sg.node_copy(n)
    for n in const + per_step:
        senv[n] = sg.placeholder(n.name + "_hoisted")
        senv[n].meta = dict(n.meta)
    for n in nodes:
        if n.op == "call_function" and n not in hoisted_set:
            _copy(sg, senv, n)
    sg.output(tuple(_copy(sg, senv, o) if isinstance(o, fx.Node) else o
                    for o in output.args[0]))
    sg.eliminate_dead_code()
    return fx.GraphModule(forward, pg), fx.GraphModule(forward, sg), len(const)


_VIEWS = {torch.ops.aten.t.default, torch.ops.aten.view.default,
          torch.ops.aten.select.int, torch.ops.aten.slice.Tensor,
          torch.ops.aten.split.Tensor, torch.ops.aten.unsqueeze.default,
          torch.ops.aten.squeeze.dim, torch.ops.aten.expand.default,
          torch.ops.aten.permute.default, torch.ops.aten.transpose.int,
          torch.ops.aten.alias.default, torch.ops.aten._unsafe_view.default}


def _is_random(gm: fx.GraphModule) -> bool:
    return any(n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload)
               and torch.Tag.nondeterministic_seeded in n.target.tags
               for n in gm.graph.nodes)


_PROGRAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def step_program(cell, state, x: Tensor, drop: Tensor | None = None) -> StepProgram:
    """The traced step of ``cell`` for states like ``state`` and inputs like ``x`` (B, I),
    made once per cell, dtype, device, state structure and mode, for any batch size.
    Raises :class:`Unsupported` when the step cannot be traced into one fixed graph
    (data-dependent Python control flow, random ops inside the step, ...)."""
    fields = state_fields(state)
    state_type = type(state) if isinstance(state, tuple) else None
    key = (x.dtype, x.device, state_type, tuple(f.shape[1:] for f in fields),
           tuple(f.dtype for f in fields), drop is not None, cell.training)
    per_cell = _PROGRAMS.setdefault(cell, {})
    if key in per_cell:
        return per_cell[key]
    start = time.perf_counter()
    tensors = dict(cell.named_parameters())
    tensors.update(cell.named_buffers())
    names = tuple(tensors)
    n_par, n_state = len(names), len(fields)
    step = _step_function(cell, names, n_state, state_type, drop is not None)
    # example inputs of batch 3 (symbolic: the graphs take any B)
    B = 3

    def like(t: Tensor) -> Tensor:
        return torch.zeros((B, *t.shape[1:]), dtype=t.dtype, device=t.device)

    primals = [t.detach() for t in tensors.values()] + [like(f) for f in fields] + \
        [like(x)] + ([like(drop)] if drop is not None else [])
    with torch.no_grad():
        outs = step(*primals)
    read = _read_parameters(step, primals, n_par)
    cot = [torch.zeros_like(o) for o in outs]
    n_primal = len(primals)
    try:
        with _no_duck_shapes():
            joint = make_fx(_joint(step, n_par, n_state, n_primal),
                            tracing_mode="symbolic")(*primals, *cot)
    except Unsupported:
        raise
    except Exception as e:                      # data-dependent control flow and the like
        raise Unsupported(f"{type(cell).__name__}'s step could not be traced "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from e
    if _is_random(joint):
        raise Unsupported(f"{type(cell).__name__}'s step draws random numbers")
    forward, loop, deferred, loop_in, deferred_in, invariant, unread = \
        _partition(joint, n_par, n_primal, len(outs), n_state)
    _prune_outputs(deferred)
    prologue, forward, n_invariant = _hoist(forward, n_par, n_state, n_primal)
    if prologue is not None:
        n_hoisted = len(prologue.graph.find_nodes(op="output")[0].args[0])
        dims = (None,) * n_par + (0,) + ((None,) if drop is not None else ())
        prologue = torch.func.vmap(prologue.forward, in_dims=dims,
                                   out_dims=(None,) * n_invariant + (0,) * (n_hoisted -
                                                                          n_invariant))
    program = StepProgram(prologue, n_invariant, forward.forward, loop.forward,
                          deferred.forward, loop_in, deferred_in, invariant, unread, n_state,
                          len(outs),
                          state_type, names, time.perf_counter() - start, read)
    per_cell[key] = program
    return program


_MASKED = {torch.ops.aten.native_layer_norm_backward.default: 7}


def _prune_outputs(gm: fx.GraphModule) -> None:
    """Turn off the outputs no node reads of an op that takes an output mask: the deferred
    part reads a layer norm's parameter gradients, the loop has already used its input
    gradient (which, over all T·B rows, costs as much as the rest)."""
    for node in gm.graph.nodes:
        where = _MASKED.get(node.target)
        if where is None:
            continue
        used = {u.args[1] for u in node.users}
        mask = list(node.args[where])
        node.update_arg(where, [m and i in used for i, m in enumerate(mask)])
    gm.recompile()


def _read_parameters(step, primals, n_par) -> tuple:
    """Per parameter, whether the step's outputs depend on it (a parameter only the initial
    state reads, like learned initial reads, gets no gradient from the loop)."""
    params = [p.detach().requires_grad_(p.is_floating_point()) for p in primals[:n_par]]
    with torch.enable_grad():
        outs = step(*params, *primals[n_par:])
        total = sum(o.sum() for o in outs if o.requires_grad)
    wrt = [p for p in params if p.requires_grad]
    if not wrt or not isinstance(total, Tensor):
        return tuple(False for _ in params)
    grads = iter(torch.autograd.grad(total, wrt, allow_unused=True))
    return tuple(next(grads) is not None if p.requires_grad else False for p in params)


class _no_duck_shapes:
    """Give every size its own symbol while tracing: with torch's default duck shapes, a
    batch size equal to a feature size would be traced as the same symbol."""

    def __enter__(self):
        from torch.fx.experimental import _config
        self.old, _config.use_duck_shape = _config.use_duck_shape, False

    def __exit__(self, *exc):
        from torch.fx.experimental import _config
        _config.use_duck_shape = self.old


# ---- the sequence ----------------------------------------------------------------------

class _Sequence(torch.autograd.Function):
    """The loop over time of a traced step (see :func:`fast_unroll`)."""

    @staticmethod
    def forward(ctx, cell, program, reverse, xs, mask, drop, zone, n_state, *flat):
        init, params = flat[:n_state], flat[n_state:]
        T = xs.shape[0]
        extra = (drop,) if drop is not None else ()
        loops = _loops_for(cell, program, params, init, xs, drop, zone)
        if loops is not None:
            return _c_forward(ctx, loops, cell, program, reverse, xs, drop, init, params,
                              mask, zone)
        x_t = xs.unbind(0)
        m_t = mask.unbind(0) if mask is not None else None
        z_t = [z.unbind(0) for z in zone] if zone is not None else None
        befores: list = [None] * T
        saved: list = [None] * T
        ys: list = [None] * T
        s = tuple(init)
        fwd, n_out = program.forward, program.n_out
        invariant, per_t = (), ()
        if program.prologue is not None:
            hoisted = program.prologue(*params, xs, *extra)
            invariant = hoisted[:program.n_invariant]
            per_t = [v.unbind(0) for v in hoisted[program.n_invariant:]]
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            out = fwd(*params, *s, x_t[t], *extra, *invariant, *(v[t] for v in per_t))
            new, y = out[:n_state], out[n_state]
            if z_t is not None:         # zoneout: each unit keeps its value with weight z
                new = tuple(torch.lerp(n, o, z[t]) for n, o, z in zip(new, s, z_t))
                y = new[0]
            if m_t is not None:         # past its length a sequence's state is frozen
                keep = m_t[t]
                new = tuple(torch.where(keep, n, o) for n, o in zip(new, s))
                y = y.masked_fill(~keep, 0.0)
            befores[t], saved[t], ys[t] = s, out[n_out:], y
            s = new
        ctx.cell, ctx.program, ctx.reverse, ctx.n_state = cell, program, reverse, n_state
        ctx.befores, ctx.saved = befores, saved
        ctx.save_for_backward(xs, mask, drop, *params, *init)
        ctx.zone = zone
        return (torch.stack(ys), *s)

    @staticmethod
    def backward(ctx, dys, *dfinal):
        if torch.is_grad_enabled():             # create_graph=True: a differentiable backward
            return _reference_backward(ctx, dys, dfinal)
        if getattr(ctx, "c", None) is not None:
            return _c_backward(ctx, dys, dfinal)
        program, n_state, reverse = ctx.program, ctx.n_state, ctx.reverse
        xs, mask, drop, params, _ = _saved(ctx)
        zone = ctx.zone
        T, B = xs.shape[:2]
        befores, saved = ctx.befores, ctx.saved
        x_t = xs.unbind(0)
        extra = (drop,) if drop is not None else ()
        m_t = mask.unbind(0) if mask is not None else None
        z_t = [z.unbind(0) for z in zone] if zone is not None else None
        dy_t = dys.unbind(0)
        cots: list = [None] * T           # ∂L/∂(the step's outputs) at each step
        carried: list = [None] * T        # what the loop passes to the deferred part
        first = 0 if not reverse else T - 1
        ds = tuple(d if d is not None else torch.zeros_like(b)
                   for d, b in zip(dfinal, befores[first]))
        loop, loop_in = program.loop, program.loop_in
        for t in (range(T) if reverse else range(T - 1, -1, -1)):
            s, dy = befores[t], dy_t[t]
            carry = None
            if m_t is not None:
                keep = m_t[t]
                dy = dy.masked_fill(~keep, 0.0)
                carry = tuple(torch.where(keep, 0.0, d) for d in ds)   # frozen: straight on
                ds = tuple(torch.where(keep, d, 0.0) for d in ds)      # into the step
            if z_t is not None:                 # zoned = lerp(new, s, z); y = zoned[0]
                ds = (ds[0] + dy, *ds[1:])
                dy = torch.zeros_like(dy)
                kept = tuple(d * z[t] for d, z in zip(ds, z_t))
                ds = tuple(d - k for d, k in zip(ds, kept))            # (1 - z) ∂
                carry = kept if carry is None else tuple(map(torch.add, carry, kept))
            cot = (*ds, dy)
            primals = (*params, *s, x_t[t], *extra)
            parts = {"primal": primals, "forward": saved[t], "cotangent": cot}
            out = loop(*(parts[w][i] for w, i in loop_in))
            ds = out[:n_state] if carry is None else tuple(map(torch.add, out[:n_state], carry))
            cots[t], carried[t] = cot, out[n_state:]
        # ∂params and ∂x: the deferred part once, over all T·B rows
        def at(where, i, t):
            return _pick(where, i, t, params, befores, x_t, extra, saved, carried, cots)

        dxs, dparams = _deferred_grads(ctx, program, params, xs, lambda w, i: at(w, i, 0),
                                       lambda w, i: torch.cat([at(w, i, t) for t in range(T)]))
        if mask is None and zone is None:     # a field the step never reads has no gradient
            ds = tuple(None if u else d for d, u in zip(ds, program.unread))
        return (None, None, None, dxs, None, None, None, None, *ds, *dparams)


def _saved(ctx) -> tuple:
    """``(xs, mask, drop, params, init)`` as the forward saved them."""
    tensors, n_state = ctx.saved_tensors, ctx.n_state
    return (*tensors[:3], tensors[3:len(tensors) - n_state], tensors[len(tensors) - n_state:])


def _reference_backward(ctx, dys, dfinal):
    """The backward when autograd records it (``create_graph=True``, e.g. a gradient
    penalty): the sequence recomputed by :func:`rnnlab.unroll` through the cell's own step
    and differentiated, so that the gradients are differentiable in turn, as the kernels'
    are (:mod:`rnnlab.kernels`)."""
    from .kernels._common import unrolled

    program, n_state, zone = ctx.program, ctx.n_state, ctx.zone
    xs, mask, drop, params, init = _saved(ctx)
    state = program.state_type(*init) if program.state_type is not None else init[0]
    with torch.enable_grad():
        ys, final = unrolled(ctx.cell, dict(zip(program.names, params)), xs, state, mask,
                             ctx.reverse, drop, None if zone is None else tuple(zone))
    outs = [ys, *state_fields(final)]
    pairs = [(o, g) for o, g in zip(outs, (dys, *dfinal)) if g is not None and o.requires_grad]
    inputs = [xs, *init, *params]
    need = [ctx.needs_input_grad[3], *ctx.needs_input_grad[8:8 + n_state],
            *ctx.needs_input_grad[8 + n_state:]]
    wrt = [i for i, n in enumerate(need) if n]
    got = torch.autograd.grad([o for o, _ in pairs], [inputs[i] for i in wrt],
                              [g for _, g in pairs], create_graph=True, allow_unused=True)
    grads: list = [None] * len(inputs)
    for i, g in zip(wrt, got):
        grads[i] = g
    return (None, None, None, grads[0], None, None, None, None, *grads[1:])


def _deferred_grads(ctx, program, params, xs, first, rows):
    """∂x and ∂params by the deferred graph, once over all T·B rows: ``first(where, i)`` a
    deferred input's value at t = 0 (for those the same at every step), ``rows(where, i)``
    its values at every step as (T·B, ...) rows."""
    n_par, n_state = len(params), ctx.n_state
    T, B = xs.shape[:2]
    need_x = ctx.needs_input_grad[3]
    need_p = ctx.needs_input_grad[8 + n_state:]
    if not (need_x or any(need_p)):
        return None, [None] * n_par
    inputs = []
    for (where, i), same in zip(program.deferred_in, program.deferred_invariant):
        if where == "primal" and i < n_par:
            inputs.append(params[i])
        elif same:
            inputs.append(first(where, i))
        elif where == "primal" and i == n_par + n_state:
            inputs.append(xs.reshape(T * B, *xs.shape[2:]))
        else:
            inputs.append(rows(where, i))
    out = program.deferred(*inputs)
    dparams = [g if n and r else None for g, n, r in zip(out[:n_par], need_p, program.read)]
    return (out[n_par].reshape(xs.shape) if need_x else None), dparams


# ---- the same loops in C (rnnlab.fast_c) -----------------------------------------------

_C_LOOPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_C_WHY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()    # why not, per cell


def _c_loops(cell, program, params, init, xs: Tensor, drop, quiet: bool = False):
    """The compiled C loops of ``program`` for this dtype and these sizes, or None: off
    (:data:`C_LOOPS`), not for this program, or no compiler (then a one-line warning,
    once per cell and sizes)."""
    if not C_LOOPS or xs.device.type != "cpu":
        return None

    key = (program, xs.dtype, xs.shape[2:], tuple(f.shape[1:] for f in init))
    per_cell = _C_LOOPS.setdefault(cell, {})
    if key not in per_cell:
        try:
            per_cell[key] = fast_c.compile_loops(program, list(params), list(init), xs[0],
                                                 drop)
        except fast_c.Unsupported as e:    # a graph it does not translate: the graphs run
            per_cell[key] = None               # from Python, or the reference loop (GRAPHS)
            _C_WHY[cell] = f"its step is not compiled to C: {e}"
            if isinstance(e, fast_c.NoCompiler) and not quiet:
                runs = "its step graphs from Python" if GRAPHS else "the reference loop"
                warnings.warn(f"rnnlab: {type(cell).__name__} runs {runs}, not compiled C "
                              f"loops: {e}", RuntimeWarning, stacklevel=4)
    return per_cell[key]


def _real(t: Tensor, dtype) -> Tensor:
    """``t`` as the compiled loops read it: contiguous, of the sequence's dtype (a bool or
    integer tensor as 0 / 1, or its integers)."""
    return t.detach().to(dtype).contiguous()


def _loops_for(cell, program, params, init, xs: Tensor, drop, zone, quiet: bool = False):
    """:func:`_c_loops`, or None where they apply but not to this call: zoneout, whose y is
    the first state field, of a step whose y is not."""
    loops = _c_loops(cell, program, params, init, xs, drop, quiet)
    if loops is not None and zone is not None and \
            loops.fwd_widths[len(init)] != init[0].shape[-1]:
        return None
    return loops


def _c_forward(ctx, loops, cell, program, reverse, xs, drop, init, params, mask, zone):
    T, B = xs.shape[:2]
    keep = mask.reshape(T, B).to(xs.dtype) if mask is not None else None
    zone = [z.to(xs.dtype).contiguous() for z in zone] if zone is not None else None
    n_state, extra = len(init), (drop,) if drop is not None else ()
    xs = xs.contiguous()
    invariant, per_t = [], []
    if program.prologue is not None:
        hoisted = program.prologue(*params, xs, *extra)
        invariant = [v.contiguous() for v in hoisted[:program.n_invariant]]
        per_t = [v.contiguous() for v in hoisted[program.n_invariant:]]
    real = [_real(t, xs.dtype) for t in (*params, *extra, *invariant)]   # what the C reads
    first = T - 1 if reverse else 0
    step_in = [*params, *init, xs[first], *extra, *invariant, *(v[first] for v in per_t)]
    computed = None
    if any(i is None for i in loops.fixed_out.values()):   # weights-only values the step
        computed = program.forward(*step_in)                # made: one step from Python
    take = fast_c.POOL.take
    # each state field in one (T + 1, B, W) buffer: the initial state, then after each step
    states = [take((T + 1, B, *f.shape[1:]), xs.dtype) for f in init]
    for s, f in zip(states, init):
        s[T if reverse else 0].copy_(f)
    befores = [s[1:] if reverse else s[:T] for s in states]
    outs = [(s[:T] if reverse else s[1:]) for s in states]
    # an output that is an earlier one's value shares its buffer, unless lengths or zoneout
    # change the state after the step (then y and the saved raw values differ from it)
    same = loops.same if mask is None and zone is None else {}
    for k, w in enumerate(loops.fwd_widths):
        if k < n_state:
            continue
        if w is None:                    # the same tensor at every step
            fixed_k = loops.fixed_out[k]
            outs.append(step_in[fixed_k] if fixed_k is not None else computed[k])
        elif k in same:
            outs.append(outs[same[k]])
        else:                            # y (k = n_state): the caller's, never pooled
            outs.append(xs.new_empty(T, B, w) if k == n_state else take((T, B, w), xs.dtype))
    loops.forward(T, B, reverse, real, [_real(v, xs.dtype) for v in per_t], xs,
                  [*states, *(o for k, (o, w) in enumerate(zip(outs, loops.fwd_widths))
                              if w is not None and k >= n_state)], xs, keep, zone)
    last = 0 if reverse else T - 1
    ctx.cell, ctx.program, ctx.reverse, ctx.n_state = cell, program, reverse, n_state
    ctx.c = (loops, outs, befores, keep, zone)
    ctx.save_for_backward(xs, mask, drop, *params, *init)
    ctx.zone = zone
    # the forward's buffers go back to the pool once autograd has freed this node's saved
    # tensors (after its backward, or never while retain_graph keeps them)
    y_in = same.get(n_state)             # y is state field y_in's buffer: the caller's
    fast_c.POOL.give([*(s for f, s in enumerate(states) if f != y_in),
                      *(o for k, (o, w) in enumerate(zip(outs, loops.fwd_widths))
                        if w is not None and k > n_state and k not in same)], node=ctx)
    return (outs[n_state], *(o[last].clone() for o in outs[:n_state]))


def _c_backward(ctx, dys, dfinal):
    program, n_state, reverse = ctx.program, ctx.n_state, ctx.reverse
    loops, outs, befores, keep, zone = ctx.c
    xs, _, drop, params, _ = _saved(ctx)
    T, B = xs.shape[:2]
    n_par, n_out = len(params), program.n_out
    mixed = keep is not None or zone is not None
    take = fast_c.POOL.take
    if mixed:                             # rewritten in place by the loop
        dys = take(dys.shape, dys.dtype).copy_(dys)
    else:
        dys = dys.contiguous()
    ds = [d.contiguous().clone() if d is not None else torch.zeros_like(b[0])
          for d, b in zip(dfinal, befores)]
    cots = [take(b.shape, b.dtype) for b in befores]
    carried = [take((T, B, w), xs.dtype) for w in loops.loop_widths[n_state:]]

    def buffer(where, i):
        """The (T, B, ...) buffer of a step input or output, or a tensor fixed over t."""
        if where == "primal":
            if i < n_par:
                return params[i]
            if i < n_par + n_state:
                return befores[i - n_par]
            return xs if i == n_par + n_state else drop
        if where == "forward":
            return outs[n_out + i]
        if where == "loop":
            return carried[i]
        return cots[i] if i < n_state else dys

    src = [ds[i] if w == "cotangent" and i < n_state else _real(buffer(w, i), xs.dtype)
           for w, i in program.loop_in]
    loops.backward(T, B, reverse, src, ds, cots, carried, xs, keep, zone,
                   dys if mixed else None)
    def fixed(where, i):                      # the same tensor at every step
        return ((where == "primal" and (i < n_par or i == n_par + n_state + 1))
                or (where == "forward" and n_out + i in loops.fixed_out))

    def typed(where, i):                      # a comparison's 0 / 1 back to ATen's bool
        value = buffer(where, i)
        if where == "forward" and loops.fwd_dtypes[n_out + i] == torch.bool \
                and value.dtype != torch.bool:
            value = value != 0
        return value

    def first(where, i):
        return typed(where, i) if fixed(where, i) else typed(where, i)[0]

    def rows(where, i):
        value = typed(where, i)
        return value if fixed(where, i) else value.reshape(T * B, *value.shape[2:])

    dxs, dparams = _deferred_grads(ctx, program, params, xs, first, rows)
    fast_c.POOL.give([*cots, *carried, *([dys] if mixed else [])], keep=[dxs, *dparams])
    if not mixed:                         # a field the step never reads has no gradient
        ds = tuple(None if u else d for d, u in zip(ds, program.unread))
    return (None, None, None, dxs, None, None, None, None, *ds, *dparams)


def _pick(where, i, t, params, befores, x_t, extra, saved, carried, cots):
    """Step t's value of a deferred input (see :func:`_partition`)."""
    if where == "primal":
        primals = (*params, *befores[t], x_t[t], *extra)
        return primals[i]
    if where == "forward":
        return saved[t][i]
    if where == "loop":
        return carried[t][i]
    return cots[t][i]


_UNSUPPORTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def supports(cell) -> bool:
    """Whether ``cell`` may take the generic path: on (:data:`ENABLED`), and its step was
    not found untraceable before."""
    return ENABLED and cell not in _UNSUPPORTED


_CALLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def engage(cell, xs: Tensor, state) -> bool:
    """Whether this call of ``cell`` takes the generic path: it needs gradients (without
    them the reference loop is as fast: the generic path's gain is a backward without
    autograd's tape), it is not being traced (``torch.compile``, ``torch.export``) nor
    transformed (``torch.func``), which see the reference loop, the sequence has at least
    :data:`MIN_STEPS` steps, and the cell has had :data:`WARMUP` such calls before."""
    if not torch.is_grad_enabled() or torch.compiler.is_compiling() or \
            torch._C._functorch.peek_interpreter_stack() is not None:
        return False                    # torch.compile / export and torch.func see the loop
    if xs.shape[0] < MIN_STEPS:
        return False
    if not (xs.requires_grad or any(p.requires_grad for p in cell.parameters()) or
            (state is not None and any(f.requires_grad for f in state_fields(state)))):
        return False
    calls = _CALLS.get(cell, 0)
    if calls < WARMUP:
        _CALLS[cell] = calls + 1
        return False
    return True


def fast_unroll(cell, xs: Tensor, state, mask: Tensor | None = None, reverse: bool = False,
                drop: Tensor | None = None, zone=None, compiled_only: bool = False):
    """:func:`rnnlab.unroll` of ``cell`` through its traced step: the same values and
    gradients. ``state``: the initial state (not None); ``mask`` (T, B, 1) bool of valid
    steps or None; ``drop``, ``zone``: the regularisers' masks as in :func:`rnnlab.unroll`.

    Returns ``(ys, state)``, or None when the reference loop is to run instead: the step
    cannot be traced (the cell is then marked, :func:`supports` turns False, after a
    one-line warning saying why), or the C loops do not apply and :data:`GRAPHS` is off
    (marked too where that holds for the cell, not just this call's device or dtype). With
    ``compiled_only`` (a kernel handing over, :func:`rnnlab.kernels.compiled_first`), None
    wherever the C loops do not apply, and without a warning: the kernel then runs."""
    needs_c = compiled_only or not GRAPHS
    if needs_c and (xs.device.type != "cpu" or xs.dtype not in (torch.float32, torch.float64)
                    or torch.is_autocast_enabled(xs.device.type)):
        return None                          # the reference loop (or kernel), this call
    if compiled_only and cell in _UNSUPPORTED:
        return None
    try:
        program = step_program(cell, state, xs[0], drop)
    except Unsupported as e:
        _UNSUPPORTED[cell] = str(e)
        if not compiled_only:
            warnings.warn(f"rnnlab: {type(cell).__name__} runs the reference loop: {e}",
                          RuntimeWarning, stacklevel=3)
        return None
    fields = state_fields(state)
    tensors = dict(cell.named_parameters())
    tensors.update(cell.named_buffers())
    params = [tensors[n] for n in program.names]
    if needs_c and _loops_for(cell, program, params, fields, xs, drop, zone,
                              compiled_only) is None:
        if not compiled_only:                # the reference loop from now on (path says so)
            _UNSUPPORTED[cell] = (
                "the C loops are off (RNNLAB_GENERIC_C=0)" if not C_LOOPS else
                _C_WHY.get(cell, "zoneout of a step whose y is not its first state field"))
        return None
    out = _Sequence.apply(cell, program, reverse, xs, mask, drop,
                          None if zone is None else tuple(zone), len(fields), *fields, *params)
    ys, final = out[0], out[1:]
    return ys, (program.state_type(*final) if program.state_type is not None else final[0])
