"""The generic path's time loops in C: a traced step (:mod:`rnnlab.fast`) turned into C code,
with the loop over time inside it, compiled once per cell by the system's C compiler.

The generic path runs a cell's traced step graphs once per time step from Python, one ATen
op per node: at small batches the dispatch of those ops, not their arithmetic, is what a
step costs (benchmarks/RESULTS-generic.md). Here each of the two per-step graphs (the
forward step and the backward loop's step) becomes a C function that runs all T steps:
every elementwise node a vectorised loop over the (B, W) block, every matrix product a call
of the BLAS ``sgemm_`` / ``dgemm_`` that torch's own library exports, views as pointer
arithmetic. One call per sequence and direction replaces T × (nodes) ATen calls; the
prologue (the input-only work) and the deferred gradients stay ATen GEMMs over all T·B
rows, as before.

    program = fast.step_program(...)
    loops = compile_loops(program, params, fields, x, drop)   # or Unsupported (below)
    loops.forward(...); loops.backward(...)

What it takes: the graphs' nodes among :data:`POINTWISE`, matrix products, views along the
last dimension, ``cat`` along it; float32 or float64 on CPU; a C compiler (``$CC`` or
``cc``). Anything else raises :class:`Unsupported` and the generic path runs its graphs
from Python as before; without a working compiler (:class:`NoCompiler`) a one-line warning
says so, once per cell. The compiled library
is cached on disk (``$RNNLAB_CACHE`` or ``~/.cache/rnnlab``), keyed by the generated
source, the compiler and the CPU, so a new process with the same cell compiles nothing.
Batch size and length are arguments of the compiled code: any B and T reuse it.

The code is compiled with ``-O3 -march=native -ffast-math`` (vectorised exp and tanh):
results agree with ATen's to rounding (the tests compare in float64 and, with the
documented tolerance, in float32), and the loops assume finite values, as fast-math does.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import operator
import os
import shutil
import subprocess
import tempfile
import threading
import weakref
from pathlib import Path

import torch
from torch import Tensor, fx

__all__ = ["compile_loops", "Loops", "Unsupported", "NoCompiler", "POINTWISE", "cache_dir",
           "compiler", "Pool", "POOL"]

FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp-simd", "-fPIC",
         "-Werror=implicit-function-declaration"]
# Linked apart from the compile: a library linked with -ffast-math gets crtfastmath.o, which
# sets flush-to-zero and denormals-are-zero for the whole process when it is loaded
LINK = ["-shared", "-Wl,--no-undefined"]


class Unsupported(Exception):
    """The graphs hold something the C generator does not translate."""


class NoCompiler(Unsupported):
    """There is no C compiler, or it failed."""


aten = torch.ops.aten

POINTWISE = {
    aten.add.Tensor: lambda a, b, alpha=1: f"({a} + {_num(alpha)} * {b})",
    aten.sub.Tensor: lambda a, b, alpha=1: f"({a} - {_num(alpha)} * {b})",
    aten.mul.Tensor: lambda a, b: f"({a} * {b})",
    aten.div.Tensor: lambda a, b: f"({a} / {b})",
    aten.add.Scalar: lambda a, b, alpha=1: f"({a} + {_num(alpha)} * {b})",
    aten.mul.Scalar: lambda a, b: f"({a} * {b})",
    aten.sub.Scalar: lambda a, b, alpha=1: f"({a} - {_num(alpha)} * {b})",
    aten.div.Scalar: lambda a, b: f"({a} / {b})",
    aten.rsub.Scalar: lambda a, b, alpha=1: f"({b} - {_num(alpha)} * {a})",
    aten.neg.default: lambda a: f"(-{a})",
    aten.sigmoid.default: lambda a: f"((real)1 / ((real)1 + EXP(-{a})))",
    aten.tanh.default: lambda a: f"TANH({a})",
    aten.exp.default: lambda a: f"EXP({a})",
    aten.relu.default: lambda a: f"({a} > (real)0 ? {a} : (real)0)",
    aten.sigmoid_backward.default: lambda g, y: f"({g} * {y} * ((real)1 - {y}))",
    aten.tanh_backward.default: lambda g, y: f"({g} * ((real)1 - {y} * {y}))",
    aten.threshold_backward.default:
        lambda g, x, th: f"({x} <= {th} ? (real)0 : {g})",
    aten.clone.default: lambda a: a,
    aten.sqrt.default: lambda a: f"SQRT({a})",
    aten.rsqrt.default: lambda a: f"((real)1 / SQRT({a}))",
    aten.reciprocal.default: lambda a: f"((real)1 / {a})",
    aten.pow.Tensor_Scalar: lambda a, e: (f"({a} * {a})" if e == _num(2) else
                                          f"{a}" if e == _num(1) else f"POW({a}, {e})"),
    aten.abs.default: lambda a: f"FABS({a})",
    aten.remainder.Tensor: lambda a, b: f"({a} - FLOOR({a} / {b}) * {b})",
    aten.remainder.Scalar: lambda a, b: f"({a} - FLOOR({a} / {b}) * {b})",
    aten.where.self: lambda c, a, b: f"({c} != (real)0 ? {a} : {b})",
}
"""The elementwise ATen ops the generator translates: op -> a function of the operands' C
expressions (and scalar arguments) giving the result's C expression. A comparison's result
(bool in ATen) is a real 0 or 1 in the generated code."""
for _name, _op in (("eq", "=="), ("ne", "!="), ("lt", "<"), ("le", "<="), ("gt", ">"),
                   ("ge", ">=")):
    for _overload in ("Scalar", "Tensor"):
        POINTWISE[getattr(getattr(aten, _name), _overload)] = \
            (lambda op: lambda a, b: f"(real)({a} {op} {b})")(_op)

_INT_OPS = {operator.add: operator.add, operator.sub: operator.sub,
            operator.mul: operator.mul, operator.floordiv: operator.floordiv}


def _num(x) -> str:
    return f"(real){float(x)!r}"


def cache_dir() -> Path:
    return Path(os.environ.get("RNNLAB_CACHE") or Path.home() / ".cache" / "rnnlab")


def _cpu() -> str:
    """What identifies this CPU's instruction set: its model and feature flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform
        return platform.processor() + platform.machine()
    return "\n".join(sorted({line for line in text.splitlines()
                             if line.startswith(("model name", "flags"))}))


def compiler() -> str | None:
    """The C compiler to use, or None."""
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


# ---- values ------------------------------------------------------------------------------

class _T:
    """A tensor value in the generated code: ``ptr`` a C pointer expression; ``rows``:
    "B" (the batch), or an int (a parameter's rows; 1 for a vector); ``cols`` its last
    dimension; ``rs``, ``cs``: row and column strides in elements (rs 0: broadcast rows)."""

    def __init__(self, ptr: str, rows, cols: int, rs, cs: int = 1):
        self.ptr, self.rows, self.cols, self.rs, self.cs = ptr, rows, cols, rs, cs

    def at(self) -> str:
        row = "" if self.rs == 0 else f"b * {self.rs}"
        col = "" if self.cs == 0 else "j" if self.cs == 1 else f"j * {self.cs}"
        return f"{self.ptr}[{' + '.join(x for x in (row, col) if x) or '0'}]"

    def column(self, cols: int) -> _T:
        """This (rows, 1) value read by every column of a (rows, cols) block."""
        return _T(self.ptr, self.rows, cols, self.rs, 0)


def _whole(start, end, step) -> bool:
    """Whether a slice takes every row: from 0 to the end (the batch size, or the int64
    maximum that a slice to the end traces to), step 1."""
    return (start or 0) == 0 and step == 1 and (end == "B" or
                                                 (isinstance(end, int) and end >= 2**62))


class _Lazy(_T):
    """An elementwise value not stored: its C expression, inlined into its one reader (an
    elementwise node over the same (B, W) block), so a chain of them is one loop."""

    def __init__(self, expr: str, cols: int):
        super().__init__("", "B", cols, cols)
        self.expr = expr

    def at(self) -> str:
        return f"({self.expr})"


class _Missing:
    """An output of a node the generator does not compute (a layer norm's parameter
    gradients in the backward step: the deferred part computes those)."""


class _Gen:
    """C code of one graph's step: ``lines`` reading the inputs' pointers (``in[k]``) and
    writing each output into ``out[k]`` (a (B, W) block, row stride W)."""

    def __init__(self, gm: fx.GraphModule, shapes: dict, batch: dict, name: str):
        self.gm, self.shapes, self.batch, self.name = gm, shapes, batch, name
        self.lines: list[str] = []
        self.scratch: list[int] = []          # widths of the (B, W) scratch blocks
        self.values: dict = {}

    def alloc(self, cols: int, node: fx.Node | None = None) -> _T:
        """A (B, cols) block for ``node``'s value: the step's output slot when the step
        returns it (no copy at the end), else scratch."""
        if node is not None and node in self.slots:
            return _T(f"out[{self.slots[node]}]", "B", cols, cols)
        k = len(self.scratch)
        self.scratch.append(cols)
        return _T(f"{self.name}_s{k}", "B", cols, cols)

    def emit(self) -> list[_T]:
        # out[k]: the k-th returned (B, W) block; a node returned twice fills the first
        returned = self.gm.graph.find_nodes(op="output")[0].args[0]
        self.slots: dict = {}
        k = 0
        for node in returned:
            if isinstance(node, fx.Node) and self.batch.get(node.name):
                self.slots.setdefault(node, k)
                k += 1
        k_in = 0
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                shape = self.shapes[node.name]
                if shape is None:
                    raise Unsupported(f"input {node.name} is not a tensor")
                self.values[node] = self._input(k_in, shape, self.batch[node.name])
                k_in += 1
            elif node.op == "call_function":
                self.values[node] = self._call(node)
            elif node.op == "output":
                return [self.values[a] for a in node.args[0]]
            else:
                raise Unsupported(f"node {node.op}")
        raise Unsupported("no output")

    def _input(self, k: int, shape, batched: bool) -> _T:
        ptr = f"((real *)in[{k}])"
        if len(shape) == 0:                      # a scalar: read by every row and column
            return _T(ptr, 1, 1, 0, 0)
        if len(shape) == 1:
            return _T(ptr, 1, shape[0], 0)
        if len(shape) != 2:
            raise Unsupported(f"a {len(shape)}-D input")
        return _T(ptr, "B" if batched else shape[0], shape[1], shape[1])

    def _arg(self, a):
        if isinstance(a, fx.Node):
            value = self.values[a]
            if isinstance(value, _Missing):
                raise Unsupported("a layer norm's parameter gradient inside the step")
            return value
        if isinstance(a, (list, tuple)):
            return [self._arg(x) for x in a]
        return a

    def _call(self, node):
        target, args = node.target, [self._arg(a) for a in node.args]
        if target in _INT_OPS:
            if not all(isinstance(a, int) for a in args):
                raise Unsupported("arithmetic on the batch size")
            return _INT_OPS[target](*args)
        if target is operator.getitem:
            return args[0][args[1]]
        if target is aten.sym_size.int:
            t, dim = args
            if not isinstance(t, _T):
                raise Unsupported("sym_size of a non-tensor")
            sizes = [t.rows, t.cols] if t.rows != 1 or t.rs else [t.cols]
            return sizes[dim]            # "B": the batch size (expand takes it)
        if target in POINTWISE:
            return self._pointwise(node, target, args)
        if target is aten.t.default:
            (a,) = args
            if a.rows in ("B", 1):
                raise Unsupported("t of a batched tensor")
            return _T(a.ptr, a.cols, a.rows, a.cs, a.rs)     # transposed view
        if target is aten.split.Tensor:
            a, size = args[0], args[1]
            dim = args[2] if len(args) > 2 else node.kwargs.get("dim", 0)
            if dim not in (-1, 1) or not isinstance(size, int):
                raise Unsupported("split not along the last dimension")
            return [_T(f"({a.ptr} + {k * a.cs})", a.rows, min(size, a.cols - k), a.rs, a.cs)
                    for k in range(0, a.cols, size)]
        if target is aten.split_with_sizes.default:
            a, sizes = args[0], list(args[1])
            dim = args[2] if len(args) > 2 else node.kwargs.get("dim", 0)
            if dim not in (-1, 1) or not all(isinstance(n, int) for n in sizes):
                raise Unsupported("split not along the last dimension")
            offsets = [sum(sizes[:k]) for k in range(len(sizes))]
            return [_T(f"({a.ptr} + {o * a.cs})", a.rows, n, a.rs, a.cs)
                    for o, n in zip(offsets, sizes)]
        if target is aten.slice.Tensor:
            a, dim = args[0], args[1] if len(args) > 1 else 0
            start = args[2] if len(args) > 2 else 0
            end = args[3] if len(args) > 3 else a.cols
            step = args[4] if len(args) > 4 else 1
            if dim == 0 and _whole(start, end, step):
                return a                          # all rows: the value itself
            if not all(isinstance(v, int) for v in (start or 0, end, step)):
                raise Unsupported("a slice bounded by the batch size")
            if dim not in (-1, 1) or step != 1:
                raise Unsupported("slice not along the last dimension")
            start, end = max(0, start or 0), min(a.cols, end)
            return _T(f"({a.ptr} + {start * a.cs})", a.rows, end - start, a.rs, a.cs)
        if target is aten.slice_backward.default:
            g, sizes, dim, start, end, step = args
            if dim == 0 and _whole(start, end, step):
                return g
            if dim not in (-1, 1) or step != 1 or not isinstance(sizes[-1], int):
                raise Unsupported("slice_backward not along the last dimension")
            out = self.alloc(sizes[-1], node)
            start = max(0, start or 0)
            self._loop(out, "(real)0")
            self._loop(_T(f"({out.ptr} + {start})", "B", g.cols, out.rs), g.at())
            return out
        if target is aten.select.int:
            a, dim, index = args
            if dim != 0 or a.rows in ("B", 1):
                raise Unsupported("select of a batched tensor")
            return _T(f"({a.ptr} + {index * a.rs})", 1, a.cols, 0, a.cs)
        if target is aten.cat.default:
            parts, dim = args[0], args[1] if len(args) > 1 else 0
            if dim not in (-1, 1):
                raise Unsupported("cat not along the last dimension")
            out = self.alloc(sum(p.cols for p in parts), node)
            off = 0
            for p in parts:
                view = _T(f"({out.ptr} + {off})", "B", p.cols, out.rs)
                self._loop(view, p.at())
                off += p.cols
            return out
        if target in (aten.mm.default, aten.addmm.default):
            return self._gemm(node, target, args)
        if target is aten.expand.default:
            a, sizes = args[0], list(args[1])
            if len(sizes) != 2 or sizes[0] not in ("B", -1, a.rows) or a.rows in (1,):
                raise Unsupported("expand other than of a (B, 1) column")
            if a.cols == sizes[1] or sizes[1] == -1:
                return a
            if a.cols != 1:
                raise Unsupported("expand other than of a (B, 1) column")
            return a.column(sizes[1])
        if target in (aten.sum.dim_IntList, aten.mean.dim):
            return self._row_sum(node, target, args)
        if target is aten.native_layer_norm.default:
            return self._layer_norm(node, args)
        if target is aten.native_layer_norm_backward.default:
            return self._layer_norm_backward(node, args)
        raise Unsupported(f"{target}")

    def _rows(self, lines: list[str]) -> None:
        """``lines`` once per row b."""
        self.lines += ["for (long b = 0; b < B; b++) {", *("  " + x for x in lines), "}"]

    @staticmethod
    def _sum(acc: str, n: int, expr: str) -> list[str]:
        return [f"real {acc} = 0;", f"#pragma omp simd reduction(+:{acc})",
                f"for (long j = 0; j < {n}; j++) {acc} += {expr};"]

    def _block(self, a, what: str) -> _T:
        if not isinstance(a, _T) or a.rows != "B":
            raise Unsupported(f"{what} of a value that is not a (B, W) block")
        return a

    def _row_sum(self, node, target, args) -> _T:
        a = self._block(args[0], "a reduction")
        dims = list(args[1]) if len(args) > 1 and args[1] is not None else None
        keep = args[2] if len(args) > 2 else node.kwargs.get("keepdim", False)
        if dims not in ([-1], [1]) or not keep or node.kwargs.get("dtype") is not None:
            raise Unsupported("a reduction other than over the last dimension, kept")
        out = self.alloc(1)
        scale = f" / (real){a.cols}" if target is aten.mean.dim else ""
        self._rows([*self._sum("acc", a.cols, a.at()), f"{out.ptr}[b] = acc{scale};"])
        return out

    def _layer_norm(self, node, args):
        """y = (x - mean) · rstd · w + bias over the last dimension; also (B, 1) mean, rstd
        (rstd = 1 / sqrt(biased variance + eps), as ATen's)."""
        x, shape, w, bias, eps = args
        x = self._block(x, "a layer norm")
        n = x.cols
        if list(shape) != [n]:
            raise Unsupported("a layer norm over more than the last dimension")
        y, mean, rstd = self.alloc(n), self.alloc(1), self.alloc(1)
        xhat = f"({x.at()} - m) * r"
        val = xhat if w is None else f"{xhat} * {w.at()}"
        val = val if bias is None else f"{val} + {bias.at()}"
        self._rows([*self._sum("s", n, x.at()), f"real m = s / (real){n};",
                    *self._sum("v", n, f"({x.at()} - m) * ({x.at()} - m)"),
                    f"real r = (real)1 / SQRT(v / (real){n} + {_num(eps)});",
                    f"{mean.ptr}[b] = m; {rstd.ptr}[b] = r;",
                    "#pragma omp simd", f"for (long j = 0; j < {n}; j++) "
                    f"{y.ptr}[b * {n} + j] = {val};"])
        return [y, mean, rstd]

    def _layer_norm_backward(self, node, args):
        """∂x of a layer norm (its parameters' gradients are left to the deferred part):
        rstd · (g - mean(g) - x̂ · mean(g · x̂)), g = ∂y · w, x̂ = (x - mean) · rstd."""
        dy, x, shape, mean, rstd, w = args[:6]
        dy, x = self._block(dy, "a layer norm"), self._block(x, "a layer norm")
        n = x.cols
        if list(shape) != [n] or dy.cols != n:
            raise Unsupported("a layer norm over more than the last dimension")
        dx = self.alloc(n)
        g = dy.at() if w is None else f"{dy.at()} * {w.at()}"
        xhat = f"(({x.at()} - m) * r)"
        self._rows([f"real m = {mean.column(n).at()}, r = {rstd.column(n).at()};",
                    *self._sum("s1", n, g), *self._sum("s2", n, f"{g} * {xhat}"),
                    "#pragma omp simd", f"for (long j = 0; j < {n}; j++) "
                    f"{dx.ptr}[b * {n} + j] = r * ({g} - s1 / (real){n} - {xhat} * s2 / "
                    f"(real){n});"])
        return [dx, _Missing(), _Missing()]

    def _loop(self, out: _T, expr: str) -> None:
        self.lines += _loop_lines(out, expr)

    def _pointwise(self, node, target, args) -> _T:
        tensors = [a for a in args if isinstance(a, _T)]
        shape = self.shapes[node.name]
        if shape is None or len(shape) != 2 or not self.batch[node.name]:
            raise Unsupported(f"{target} outside a (B, W) block")
        cols = shape[1]
        for t in tensors:
            if t.cols not in (cols, 1) or (t.rows not in ("B", 1)):
                raise Unsupported(f"{target} broadcasts other than over rows or columns")
        # a single row (a vector, or a (1, W) block) is read by every row of the output, a
        # single column (a (B, 1) block) by every column
        args = [_T(a.ptr, 1, a.cols, 0, a.cs) if isinstance(a, _T) and a.rows == 1 else a
                for a in args]
        args = [a.column(cols) if isinstance(a, _T) and a.cols == 1 and cols != 1 else a
                for a in args]
        kwargs = dict(node.kwargs)
        expr = POINTWISE[target](*[a.at() if isinstance(a, _T) else _num(a) for a in args],
                                 **kwargs)
        users = list(node.users)
        if len(users) == 1 and users[0].op == "call_function" and \
                users[0].target in POINTWISE and self.shapes.get(users[0].name) == shape \
                and self.batch.get(users[0].name) and expr.count("(") < 200:
            return _Lazy(expr, cols)          # fused into its reader's loop
        out = self.alloc(cols, node)
        self._loop(out, expr)
        return out

    def _gemm(self, node, target, args) -> _T:
        if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
            raise Unsupported("addmm with alpha or beta")
        bias, a, w = (None, *args) if target is aten.mm.default else args[:3]
        if a.rows != "B" or a.cs != 1 or w.rows in ("B",):
            raise Unsupported("a product that is not (B, K) x parameter")
        K, N = a.cols, w.cols
        if w.rows != K:
            raise Unsupported("product shapes")
        out = self.alloc(N, node)
        if bias is not None:
            if bias.cols != N:
                raise Unsupported("addmm bias shape")
            self._loop(out, bias.at())
        # row-major out (B, N) = a (B, K) w (K, N): column-major out^T = w^T a^T
        if w.cs == 1:                    # w row-major, ld = its row stride
            ta, lda = "N", w.rs
        elif w.rs == 1:                  # w a transposed view of a row-major (N, K)
            ta, lda = "T", w.cs
        else:
            raise Unsupported("a strided weight")
        beta = "one" if bias is not None else "zero"
        self.lines.append(f'{{ int m = {N}, n = (int)B, k = {K}, lda = {lda}, ldb = {a.rs}, '
                          f'ldc = {N}; gemm("{ta}", "N", &m, &n, &k, &one, {w.ptr}, &lda, '
                          f'{a.ptr}, &ldb, &{beta}, {out.ptr}, &ldc); }}')
        return out


# ---- shapes -------------------------------------------------------------------------------

def _shapes(gm: fx.GraphModule, inputs: list) -> dict:
    """Every node's shape (None for non-tensors) from running ``gm`` on ``inputs``."""
    shapes = {}

    class Rec(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            shapes[n.name] = tuple(out.shape) if isinstance(out, Tensor) else None
            return out

    Rec(gm).run(*inputs)
    return shapes


def _batched(gm: fx.GraphModule, make_inputs) -> tuple[dict, dict]:
    """Shapes at batch 5 and which nodes' first dimension is the batch (it changes at 6)."""
    a, b = _shapes(gm, make_inputs(5)), _shapes(gm, make_inputs(6))
    batch = {k: (a[k] is not None and len(a[k]) == 2 and a[k][0] != b[k][0]) for k in a}
    for k in a:
        if a[k] != b[k] and not (batch[k] and a[k][1] == b[k][1]):
            raise Unsupported(f"{k}: a value shaped by the batch other than (B, W)")
    return a, batch


# ---- the compiled loops -------------------------------------------------------------------

_HEADER = """#include <math.h>
#include <string.h>
typedef {real} real;
#define EXP {exp}
#define TANH {tanh}
#define SQRT {sqrt}
#define POW {pow}
#define FABS {fabs}
#define FLOOR {floor}
typedef void (*gemm_t)(const char *, const char *, const int *, const int *, const int *,
                       const real *, const real *, const int *, const real *, const int *,
                       const real *, real *, const int *);
static const real one = 1, zero = 0;
"""


def _mix_forward(n_par: int, widths: list[int], wy: int) -> list[str]:
    """After step t: zoneout (each unit of the new state s' keeps its old value s with
    weight z: s' + z (s - s'), and y is the zoned first field) and lengths (past its length
    a row keeps its state, and its y is 0), as :func:`rnnlab.unroll` does them."""
    lines = ["if (zone) {"]
    for f, w in enumerate(widths):
        lines += [f"  {{ real *n = out[{f}], *o = (real *)in[{n_par + f}], *z = zone[{f}] + "
                  f"t * B * {w};", "    #pragma omp simd",
                  f"    for (long i = 0; i < B * {w}; i++) n[i] += z[i] * (o[i] - n[i]); }}"]
    if wy == widths[0]:
        lines.append(f"  if (out[{len(widths)}] != out[0]) memcpy(out[{len(widths)}], out[0], "
                     f"sizeof(real) * B * {wy});")
    lines += ["}", "if (keep) for (long b = 0; b < B; b++) if (keep[t * B + b] == 0) {"]
    for f, w in enumerate(widths):
        lines.append(f"  memcpy(out[{f}] + b * {w}, (real *)in[{n_par + f}] + b * {w}, "
                     f"sizeof(real) * {w});")
    lines += [f"  memset(out[{len(widths)}] + b * {wy}, 0, sizeof(real) * {wy});", "}"]
    return lines


def _mix_backward(widths: list[int], wy: int) -> list[str]:
    """Before step t's backward: the gradients through lengths and zoneout (the reverse of
    :func:`_mix_forward`): ``carry`` what passes the step by (a frozen row's ∂state, the
    kept part z ∂s'), ``ds`` what enters it, ``dys`` (a copy of ∂y) what reaches y."""
    lines = ["if (keep || zone) {", f"  real *dy = dys + t * B * {wy};"]
    for f, w in enumerate(widths):
        lines.append(f"  memset(carry[{f}], 0, sizeof(real) * B * {w});")
    lines.append("  if (keep) for (long b = 0; b < B; b++) if (keep[t * B + b] == 0) {")
    lines.append(f"    memset(dy + b * {wy}, 0, sizeof(real) * {wy});")
    for f, w in enumerate(widths):
        lines += [f"    memcpy(carry[{f}] + b * {w}, ds[{f}] + b * {w}, sizeof(real) * {w});",
                  f"    memset(ds[{f}] + b * {w}, 0, sizeof(real) * {w});"]
    lines += ["  }", "  if (zone) {",
              f"    for (long i = 0; i < B * {wy}; i++) {{ ds[0][i] += dy[i]; dy[i] = 0; }}"]
    for f, w in enumerate(widths):
        lines += [f"    {{ real *z = zone[{f}] + t * B * {w};", "      #pragma omp simd",
                  f"      for (long i = 0; i < B * {w}; i++) {{ real k = ds[{f}][i] * z[i]; "
                  f"ds[{f}][i] -= k; carry[{f}][i] += k; }} }}"]
    lines += ["  }", "}"]
    return lines


def _step_function(name: str, gen: _Gen, outs: list[_T]) -> str:
    body = [f"static void {name}(long B, void **in, real **out, real *ws, gemm_t gemm) {{"]
    off = []
    total = 0
    for w in gen.scratch:
        off.append(total)
        total += w
    body += [f"  real *{gen.name}_s{k} = ws + B * {o};" for k, o in enumerate(off)]
    body += ["  " + line for line in gen.lines]
    for k, o in enumerate(outs):
        if o.ptr == f"out[{k}]":
            continue                             # written there
        body += [f"  {{ real *dst = out[{k}];"]
        dst = _T("dst", "B", o.cols, o.cols)
        body += ["    " + line for line in _loop_lines(dst, o.at())]
        body.append("  }")
    body.append("}")
    return "\n".join(body), total


def _loop_lines(out: _T, expr: str) -> list[str]:
    return ["for (long b = 0; b < B; b++) {", "  #pragma omp simd",
            f"  for (long j = 0; j < {out.cols}; j++) {out.at()} = {expr};", "}"]


class Loops:
    """The two compiled loops of one program, for one dtype and feature sizes:
    ``fwd_widths`` the width of each forward output (None: the same at every step, then
    ``fixed_out`` names the forward input it is, or None: computed from the weights),
    ``loop_widths`` the width of each loop output, ``fwd_dtypes`` each forward output's dtype
    in ATen (a bool is a real 0 / 1 in the loops' buffers), ``same`` {k: j} for a (B, W)
    output k that is output j's value (j < k); ``fwd_ws``, ``loop_ws`` the scratch
    each loop needs, in (B, 1) columns."""

    def __init__(self, lib, gemm, fwd_ws: int, loop_ws: int, fwd_widths: list,
                 fixed_out: dict, loop_widths: list, fwd_dtypes: list, same: dict):
        self.lib, self.gemm, self.fwd_ws, self.loop_ws = lib, gemm, fwd_ws, loop_ws
        self.fwd_widths, self.fixed_out, self.loop_widths = fwd_widths, fixed_out, loop_widths
        self.fwd_dtypes, self.same = fwd_dtypes, same

    @staticmethod
    def _ptrs(tensors) -> ctypes.Array:
        return (ctypes.c_void_p * len(tensors))(*[t.data_ptr() for t in tensors])

    def forward(self, T: int, B: int, reverse: bool, fixed: list, per_t: list, xs: Tensor,
                outs: list, like: Tensor, keep: Tensor | None = None,
                zone: list | None = None) -> None:
        """Run the forward step over all T steps: ``fixed`` the inputs that are the same
        at every step, ``per_t`` (T, B, W) buffers indexed by t; ``outs`` buffers for the
        step's outputs: per state field a (T + 1, B, W) one holding the initial state in
        row 0 (row T when ``reverse``), the state after step t written in row t + 1 (t),
        then (T, B, W) ones for y and the saved values; ``keep`` (T, B) 1 where a row is
        within its length, 0 past it, or None; ``zone`` the zoneout weights, a (T, B, W)
        buffer per state field, or None."""
        ws = POOL.take((max(1, B * self.fwd_ws),), like.dtype)
        self.lib.run_forward(T, B, int(reverse), self._ptrs(fixed), self._ptrs(per_t),
                             ctypes.c_void_p(xs.data_ptr()), self._ptrs(outs), _ptr(keep),
                             self._ptrs(zone) if zone else None,
                             ctypes.c_void_p(ws.data_ptr()), self.gemm)
        POOL.give([ws])

    def backward(self, T: int, B: int, reverse: bool, sources: list, ds: list, cots: list,
                 carried: list, like: Tensor, keep: Tensor | None = None,
                 zone: list | None = None, dys: Tensor | None = None) -> None:
        """Run the backward loop's step over all T steps in reverse order of the forward:
        ``sources`` (T, B, W) buffers (or fixed tensors) for the loop's inputs as the
        generated table says; ``ds`` the running ∂state (B, W) (in: at the end; out: at
        the start); ``cots`` (T, B, W) written with ∂state entering each step; ``carried``
        (T, B, W) buffers for the step's other outputs. With ``keep`` or ``zone`` (as in
        :meth:`forward`), ``dys`` is the (T, B, W) ∂y the loop reads, rewritten in place
        with what reaches each step's y."""
        ws = POOL.take((max(1, B * self.loop_ws),), like.dtype)
        carry = [POOL.take(d.shape, d.dtype) for d in ds] if keep is not None or zone else []
        self.lib.run_loop(T, B, int(reverse), self._ptrs(sources), self._ptrs(ds),
                          self._ptrs(cots), self._ptrs(carried), _ptr(keep),
                          self._ptrs(zone) if zone else None, _ptr(dys), self._ptrs(carry),
                          ctypes.c_void_p(ws.data_ptr()), self.gemm)
        POOL.give([ws, *carry])


# ---- buffers kept between calls -------------------------------------------------------------

class Pool:
    """The C loops' (T, B, W) buffers, kept for the next call once they are free.

    A fresh buffer of tens of MB costs more to touch (the kernel maps and zeroes every page
    on first write: about 0.45 ms per MB on the development machine, against 0.04 ms per MB
    for memory already mapped) than the arithmetic the loops then do in it: 140,000 page
    faults, a third of an LN-LSTM training step at the ``medium`` size. So the buffers a call
    made go back here when it is done (the backward's at its end, the forward's when its
    autograd node has released its saved tensors, so never while ``retain_graph`` may still
    read them), and the next call of any cell takes them, as PyTorch's CUDA caching allocator
    does. A buffer is reused for a request of at least half its size. At most ``limit`` bytes
    are kept (``RNNLAB_POOL_MB``, default 1024; 0 keeps none); :meth:`empty` frees them."""

    def __init__(self, limit: int):
        self.limit = limit
        self.free: list[Tensor] = []            # flat blocks, smallest first
        self.pending: list = []                 # (weakref to an autograd node, blocks)
        self.lock = threading.Lock()

    def take(self, shape, dtype) -> Tensor:
        n = math.prod(shape)
        with self.lock:
            block = self._find(n, dtype)
            if block is None and self.pending:       # only then look at the autograd nodes
                self._collect()
                block = self._find(n, dtype)
        return block[:n].view(shape) if block is not None else torch.empty(shape, dtype=dtype)

    def give(self, tensors, node=None, keep=()) -> None:
        """Return ``tensors`` (taken here) once ``node`` (an autograd node's context, or
        None: now) has released its saved tensors; not one sharing memory with ``keep``."""
        if not self.limit:
            return
        kept = {t.untyped_storage().data_ptr() for t in keep if t is not None}
        blocks = []
        for t in tensors:
            storage = t.untyped_storage()
            if storage.data_ptr() in kept or t.storage_offset() or not t.is_contiguous():
                continue
            blocks.append(torch.empty(0, dtype=t.dtype).set_(storage))
        with self.lock:
            if node is None:
                self._add(blocks)
            else:                                # once per forward: the earlier ones freed
                self._collect()
                self.pending.append((weakref.ref(node), blocks))

    def _find(self, n: int, dtype) -> Tensor | None:
        for k, block in enumerate(self.free):
            if block.dtype == dtype and n <= block.numel() <= 2 * n + 4096:
                return self.free.pop(k)
        return None

    def _collect(self) -> None:
        """Move the blocks of the nodes autograd has released (or that are gone) to free."""
        still, done = [], []
        for ref, blocks in self.pending:
            node = ref()
            if node is not None and not _released(node):
                still.append((ref, blocks))
            else:
                done += blocks
        self.pending = still
        self._add(done)

    def _add(self, blocks: list) -> None:
        """Blocks into free, smallest first, then the largest dropped past ``limit``."""
        self.free += blocks
        self.free.sort(key=Tensor.numel)
        total = sum(b.numel() * b.element_size() for b in self.free)
        while self.free and total > self.limit:
            total -= self.free[-1].numel() * self.free[-1].element_size()
            self.free.pop()

    def empty(self) -> None:
        """Free every kept buffer."""
        with self.lock:
            self.free.clear()


def _released(node) -> bool:
    try:
        _ = node.saved_tensors
    except RuntimeError:                     # "Trying to backward through the graph a second
        return True                          # time": autograd has freed them
    return False


POOL = Pool(int(float(os.environ.get("RNNLAB_POOL_MB", "1024")) * 2**20))


def _ptr(t: Tensor | None):
    return ctypes.c_void_p(t.data_ptr()) if t is not None else None


def _gemm_pointer(dtype):
    lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib",
                                   "libtorch_cpu.so"))
    name = "sgemm_" if dtype == torch.float32 else "dgemm_"
    try:
        return ctypes.cast(getattr(lib, name), ctypes.c_void_p)
    except AttributeError:
        raise Unsupported(f"torch's library exports no {name}") from None


def _build(source: str) -> ctypes.CDLL:
    cc = compiler()
    if cc is None:
        raise NoCompiler("no C compiler (set CC, or install cc or gcc)")
    # -march=native: the code is this CPU's, so the key names the CPU too (a cache folder
    # shared between machines must not hand one CPU's instructions to another)
    key = hashlib.sha256((source + cc + " ".join(FLAGS + LINK) + _cpu()).encode()
                         ).hexdigest()[:24]
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:                       # a read-only home: this process's temporary folder
        folder = Path(tempfile.gettempdir()) / f"rnnlab-cache-{os.getuid()}"
        folder.mkdir(parents=True, exist_ok=True)
    lib = folder / f"rnnlab_loops_{key}.so"
    if not lib.exists():
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            src = Path(tmp) / "loops.c"
            src.write_text(source)
            obj, out = Path(tmp) / "loops.o", Path(tmp) / "loops.so"
            for argv in ([cc, *FLAGS, "-c", str(src), "-o", str(obj)],
                         [cc, *LINK, str(obj), "-o", str(out), "-lm"]):
                done = subprocess.run(argv, capture_output=True, text=True)
                if done.returncode:
                    raise NoCompiler(f"the C compiler failed: {done.stderr.strip()[:300]}")
            os.replace(out, lib)            # atomic: another process may build the same
    try:
        return ctypes.CDLL(str(lib))
    except OSError as e:                    # a damaged cache file, a foreign one
        raise NoCompiler(f"the compiled loops could not be loaded: {e}") from None


def _example(program, params: list, fields: list, x: Tensor, drop, B: int):
    """The forward graph's inputs and the loop graph's for one step at batch ``B``, and the
    widths of the forward's per-step values (random values: only shapes matter)."""
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=x.dtype)

    s = [rand(B, *f.shape[1:]) for f in fields]
    xt = rand(B, *x.shape[1:])
    extra = [rand(B, *drop.shape[1:])] if drop is not None else []
    invariant, per_t = [], []
    if program.prologue is not None:
        hoisted = program.prologue(*params, xt.unsqueeze(0), *extra)
        invariant = list(hoisted[:program.n_invariant])
        per_t = [v[0] for v in hoisted[program.n_invariant:]]
    fwd_in = [*params, *s, xt, *extra, *invariant, *per_t]
    out = program.forward(*fwd_in)
    cot = [rand(*o.shape).to(o.dtype) for o in out[:program.n_out]]
    parts = {"primal": (*params, *s, xt, *extra), "forward": out[program.n_out:],
             "cotangent": cot}
    loop_in = [parts[w][i] for w, i in program.loop_in]
    return fwd_in, loop_in, [o.dtype for o in out]


def compile_loops(program, params: list, fields: list, x: Tensor, drop) -> Loops:
    """The C loops of ``program`` for these parameters' dtype and these feature sizes
    (``fields``, ``x``: a state and an input step, any batch). Raises :class:`Unsupported`
    where the generator does not apply."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        raise Unsupported("CPU float32 / float64 only")
    fwd_gm, loop_gm = program.forward.__self__, program.loop.__self__
    examples = {B: _example(program, params, fields, x, drop, B) for B in (5, 6)}
    fwd_shapes, fwd_batch = _batched(fwd_gm, lambda B: examples[B][0])
    loop_shapes, loop_batch = _batched(loop_gm, lambda B: examples[B][1])
    fwd = _Gen(fwd_gm, fwd_shapes, fwd_batch, "f")
    fwd_outs = fwd.emit()
    loop = _Gen(loop_gm, loop_shapes, loop_batch, "l")
    loop_outs = loop.emit()
    n_par, n_state = len(params), len(fields)
    has_drop = drop is not None
    n_inv = program.n_invariant
    fwd_in, fwd_dtypes = examples[5][0], examples[5][2]
    if any(d not in (x.dtype, torch.bool) for d in fwd_dtypes):
        raise Unsupported("a step value neither of the input's dtype nor bool")
    n_per_t = len(fwd_in) - n_par - n_state - 1 - has_drop - n_inv
    # a forward output the same at every step is one of the step's fixed inputs (a weight,
    # an invariant) passed on to the backward: it is not written per step
    placeholders = [n for n in fwd_gm.graph.nodes if n.op == "placeholder"]
    returned = fwd_gm.graph.find_nodes(op="output")[0].args[0]
    fixed_in = set(range(n_par)) | set(range(n_par + n_state + 1, len(fwd_in) - n_per_t))
    fixed_out = {}
    for k, (o, node) in enumerate(zip(fwd_outs, returned)):
        if isinstance(o, _T) and o.rows == "B":
            continue
        where = placeholders.index(node) if node in placeholders else None
        if where is not None and where not in fixed_in:
            raise Unsupported("a step output that is not a (B, W) block")
        fixed_out[k] = where          # None: computed from the weights in the step
    # a (B, W) output that is the same value as an earlier one (y = h, a saved c): its buffer
    # may be the earlier one's, where nothing mixes the state after the step
    same = {k: returned.index(node) for k, node in enumerate(returned)
            if k not in fixed_out and returned.index(node) != k}
    for o in loop_outs:
        if not isinstance(o, _T) or o.rows != "B":
            raise Unsupported("a loop output that is not a (B, W) block")
    width = [t.shape[-1] if t.dim() else 1 for t in fwd_in]
    real = "float" if x.dtype == torch.float32 else "double"
    f = "f" if real == "float" else ""
    src = [_HEADER.format(real=real, exp="exp" + f, tanh="tanh" + f, sqrt="sqrt" + f,
                          pow="pow" + f, fabs="fabs" + f, floor="floor" + f)]
    fwd_fn, fwd_ws = _step_function("fwd_step", fwd, [o for k, o in enumerate(fwd_outs)
                                                       if k not in fixed_out])
    loop_fn, loop_ws = _step_function("loop_step", loop, loop_outs)
    src += [fwd_fn, loop_fn]
    # the forward over T: inputs (params, s, x, drop, invariants: fixed; values at t)
    ws_state = [fields[i].shape[-1] for i in range(n_state)]
    lines = ["void run_forward(long T, long B, int reverse, void **fixed, void **per_t, "
             "real *xs, real **outs, real *keep, real **zone, real *ws, gemm_t gemm) {",
             f"  void *in[{len(fwd_in)}]; real *out[{len(fwd_outs)}];",
             "  for (long k = 0; k < T; k++) {",
             "    long t = reverse ? T - 1 - k : k, before = reverse ? t + 1 : t, "
             "after = reverse ? t : t + 1;"]
    fixed_k = 0
    for i in range(len(fwd_in)):
        if i < n_par:
            lines.append(f"    in[{i}] = fixed[{fixed_k}];")
            fixed_k += 1
        elif i < n_par + n_state:
            f = i - n_par
            lines.append(f"    in[{i}] = outs[{f}] + before * B * {ws_state[f]};")
        elif i == n_par + n_state:
            lines.append(f"    in[{i}] = xs + t * B * {width[i]};")
        elif i < n_par + n_state + 1 + has_drop + n_inv:
            lines.append(f"    in[{i}] = fixed[{fixed_k}];")
            fixed_k += 1
        else:
            k = i - (len(fwd_in) - n_per_t)
            lines.append(f"    in[{i}] = (real *)per_t[{k}] + t * B * {width[i]};")
    for j, k in enumerate(k for k in range(len(fwd_outs)) if k not in fixed_out):
        row = "after" if j < n_state else "t"
        lines.append(f"    out[{j}] = outs[{j}] + {row} * B * {fwd_outs[k].cols};")
    lines.append("    fwd_step(B, in, out, ws, gemm);")
    lines += ["    " + x for x in _mix_forward(n_par, ws_state, fwd_outs[n_state].cols)]
    lines += ["  }", "}"]
    src.append("\n".join(lines))
    # the backward loop over T, in reverse order of the forward
    lines = ["void run_loop(long T, long B, int reverse, void **src, real **ds, real **cots, "
             "real **carried, real *keep, real **zone, real *dys, real **carry, real *ws, "
             "gemm_t gemm) {",
             f"  void *in[{len(program.loop_in)}]; real *out[{len(loop_outs)}];",
             f"  real *tmp = ws + B * {loop_ws};",
             "  for (long k = 0; k < T; k++) {",
             "    long t = reverse ? k : T - 1 - k;"]
    for k, (where, i) in enumerate(program.loop_in):
        per_step = not ((where == "primal" and (i < n_par or i == n_par + n_state + 1))
                        or (where == "cotangent" and i < n_state)
                        or (where == "forward" and program.n_out + i in fixed_out))
        w = examples[5][1][k].shape[-1] if examples[5][1][k].dim() else 1
        if where == "cotangent" and i < n_state:
            lines.append(f"    in[{k}] = ds[{i}];")
        elif per_step:
            lines.append(f"    in[{k}] = (real *)src[{k}] + t * B * {w};")
        else:
            lines.append(f"    in[{k}] = src[{k}];")
    lines += ["    " + x for x in _mix_backward(ws_state, fwd_outs[n_state].cols)]
    for f in range(n_state):
        lines.append(f"    memcpy(cots[{f}] + t * B * {ws_state[f]}, ds[{f}], "
                     f"sizeof(real) * B * {ws_state[f]});")
    tmp_off = 0
    for k, o in enumerate(loop_outs):
        if k < n_state:
            lines.append(f"    out[{k}] = tmp + B * {tmp_off};")
            tmp_off += o.cols
        else:
            lines.append(f"    out[{k}] = carried[{k - n_state}] + t * B * {o.cols};")
    lines.append("    loop_step(B, in, out, ws, gemm);")
    for f in range(n_state):
        w = ws_state[f]
        lines += [f"    if (keep || zone) for (long i = 0; i < B * {w}; i++) "
                  f"ds[{f}][i] = out[{f}][i] + carry[{f}][i];",
                  f"    else memcpy(ds[{f}], out[{f}], sizeof(real) * B * {w});"]
    lines += ["  }", "}"]
    src.append("\n".join(lines))
    lib = _build("\n\n".join(src) + "\n")
    lib.run_forward.restype = None
    lib.run_loop.restype = None
    return Loops(lib, _gemm_pointer(x.dtype), fwd_ws, loop_ws + tmp_off,
                 [None if k in fixed_out else o.cols for k, o in enumerate(fwd_outs)],
                 fixed_out, [o.cols for o in loop_outs], fwd_dtypes, same)
