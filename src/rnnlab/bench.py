"""Speed and memory of every rnnlab cell family against torch.nn and the autograd loop
(protocol: benchmarks/README.md). ``rnnlab bench`` and ``benchmarks/kernels.py`` call
this module; it prints nothing itself except from its worker processes.

Every (cell, config, threads) runs in fresh subprocesses (``python -m rnnlab.bench
--worker ...``):

- one that first checks correctness, then times. Checks: rnnlab's default path
  (:class:`rnnlab.Recurrent`, which takes the fused kernel when
  :func:`rnnlab.find_kernel` has one) against the reference loop (``use_kernel=False``),
  and, where torch.nn has the same model, the torch.nn-compatible ``rnnlab.RNN / LSTM /
  GRU`` against ``torch.nn`` with copied state dicts: outputs, final state, input and
  every parameter gradient. Then it times, alternating, (a) ``torch.nn.X`` where it exists,
  (b) the autograd loop a user writes — ``nn.XCell`` over ``x.unbind(0)`` then
  ``torch.stack`` where torch has the cell, else autograd through rnnlab's reference step
  (``use_kernel=False``) — and (c) rnnlab;
- one per implementation for activation memory: the growth of peak RSS over the timed
  training loop, after a warm-up at T = 2 that loads the libraries without the activations.

"train" configs time forward + backward with a random upstream gradient on all outputs;
"infer" (stream) times inference (``torch.no_grad()``) over the whole sequence in one call,
per step. GEMM efficiency = GEMM FLOPs of an rnnlab training step / time / peak, where the
peak is a 2048³ ``torch.matmul`` at the same thread count, in the same process, best of 3
before and 3 after the timings (the machine is shared: a peak from another moment would
mislead). Nothing here asserts a time.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from . import fast
from .cells import CELL_NAMES, Cell, GRUCell, OutputFeedbackCell, make_cell
from .cells.examples import HandGRU, IndRNNCell, MyCell, PeepholeLSTM
from .compat import GRU, LSTM, RNN
from .layers import Recurrent

__all__ = ["CONFIGS", "DEFAULT_CONFIGS", "CELLS", "Config", "Row", "run", "tables",
           "results_markdown", "to_json", "failures", "machine"]


@dataclass(frozen=True)
class Config:
    """One benchmark shape (benchmarks/README.md, "Configurations"). A ``smoke`` size checks and
    times only: no peak-RSS processes and no GEMM peak (its activations are below RSS
    resolution and its GEMMs take microseconds)."""

    B: int
    T: int
    I: int
    H: int
    mode: str                   # "train" or "infer"
    smoke: bool = False


CONFIGS = {
    "small": Config(32, 100, 64, 128, "train"),
    "medium": Config(64, 200, 128, 256, "train"),
    "long": Config(16, 1000, 32, 64, "train"),
    "stream": Config(1, 1000, 32, 128, "infer"),
    "tiny": Config(2, 5, 3, 4, "train", smoke=True),     # tests only; not in the default set
}
DEFAULT_CONFIGS = ("small", "medium", "long", "stream")

# Every cell family of rnnlab.make_cell, plus the LSTM with a projection (proj_size = H/2)
# and the cells make_cell does not name: "feedback", the output-to-hidden recurrence of
# Fig. 10.4 (OutputFeedbackCell with output size H, tanh, identity feedback, free-running).
EXTRA_CELLS = {"feedback": lambda I, H: OutputFeedbackCell(I, H, H)}
# Regularised variants, "CELL+rd" and "CELL+zo": the cell under recurrent dropout 0.25 or
# zoneout 0.1 (rnnlab.Recurrent options; training mode, fresh masks every step). Neither
# torch.nn nor its cells have these; the loop column is rnnlab's reference loop with them.
REGULARIZERS = {"rd": {"recurrent_dropout": 0.25}, "zo": {"zoneout": 0.1}}
REGULARIZED = ("rnn+rd", "lstm+rd", "lstm+zo", "gru+rd", "gru+zo")
# Custom cells, written as a user writes one (rnnlab.cells.examples): no kernel, so
# Recurrent runs them on the generic path (rnnlab.fast). "hand-gru" is also timed against
# the gru kernel on the same weights ("kernel" column).
CUSTOM_CELLS = {"my-cell": MyCell, "hand-gru": HandGRU, "peephole-lstm": PeepholeLSTM,
                "indrnn": IndRNNCell}
# "CELL@generic": a cell that has a kernel, run on the generic path instead (wrapped in a cell
# find_kernel does not know); the LSTM variants are also timed against nn.LSTM ("nn.LSTM"
# column, same B, T, I, H), the target of issue 14.
GENERIC = ("ln-lstm@generic", "lstm+rd@generic", "lstm+zo@generic", "lstm-proj@generic",
           "min-gru@generic", "min-lstm@generic")
CELLS = (*CELL_NAMES, "lstm-proj", *EXTRA_CELLS, *REGULARIZED, *CUSTOM_CELLS, *GENERIC)


@dataclass(frozen=True)
class TorchModel:
    """Where torch.nn has the same model: its layer, its cell (None when torch has no cell
    for it), rnnlab's torch.nn-compatible layer, their shared options, and the rnnlab cell
    (``make_cell`` name and options) that the fused kernel runs."""

    layer: Callable[..., nn.Module]
    cell: Callable[..., nn.Module] | None
    compat: Callable[..., nn.Module]
    rnnlab_cell: str
    options: Callable[[int], dict] = field(default=lambda H: {})
    cell_options: Callable[[int], dict] = field(default=lambda H: {})


TORCH = {
    "rnn": TorchModel(nn.RNN, nn.RNNCell, RNN, "rnn", lambda H: {"nonlinearity": "tanh"}),
    "relu": TorchModel(nn.RNN, nn.RNNCell, RNN, "relu", lambda H: {"nonlinearity": "relu"}),
    "lstm": TorchModel(nn.LSTM, nn.LSTMCell, LSTM, "lstm"),
    "lstm-proj": TorchModel(nn.LSTM, None, LSTM, "lstm", lambda H: {"proj_size": H // 2},
                            lambda H: {"proj_size": H // 2}),
    "gru": TorchModel(nn.GRU, nn.GRUCell, GRU, "gru"),
}
# rnnlab cell parameter -> torch.nn's name for it in a one-layer module
TORCH_NAMES = {"W_xh": "weight_ih_l0", "W_hh": "weight_hh_l0", "b_xh": "bias_ih_l0",
               "b_hh": "bias_hh_l0", "W_hr": "weight_hr_l0"}
IMPLS = ("torch", "loop", "rnnlab", "compat", "kernel", "lstm")    # timed, in this order
MEMORY_IMPLS = ("torch", "loop", "rnnlab")
RTOL, ATOL = 1e-7, 1e-9          # float64 (check_float64)
CHECK_STEPS = 100               # the correctness check runs the first steps, in float64
TARGET_SAMPLE_S = 0.05          # each timed sample repeats the step to last about this long


# -- the implementations --------------------------------------------------------------------


class UnbindLoop(nn.Module):
    """The autograd loop users write over a torch cell: (T, B, I) -> ((T, B, H), None)."""

    def __init__(self, step: nn.Module):
        super().__init__()
        self.step = step

    def forward(self, xs: Tensor):
        state = None
        ys = []
        for x in xs.unbind(0):
            state = self.step(x, state)
            ys.append(state[0] if isinstance(state, tuple) else state)
        return torch.stack(ys), None


class NoKernel(Cell):
    """``cell`` under another name, so that :func:`rnnlab.find_kernel` finds no kernel and
    :class:`Recurrent` runs it on the generic path (the ``@generic`` rows)."""

    def __init__(self, cell: Cell):
        super().__init__()
        self.cell = cell
        self.input_size, self.hidden_size = cell.input_size, cell.hidden_size
        self.output_size, self.regularizable = cell.output_size, cell.regularizable

    def init_state(self, batch_size: int, device=None, dtype=None):
        return self.cell.init_state(batch_size, device, dtype)

    def forward(self, state, x: Tensor, **drop):
        return self.cell(state, x, **drop)


def build(cell: str, cfg: Config, T: int | None = None, seed: int = 0):
    """The implementations of ``cell`` with the same weights, an input and an upstream grad.

    **Returns:** ``(models, xs, d_ys)``: models maps "rnnlab" (``Recurrent(cell)``, rnnlab's
    default path), "reference" (the same cell with ``use_kernel=False``), "loop" (the
    autograd loop a user writes) and, where torch.nn has the model, "torch" (torch.nn) and
    "compat" (``rnnlab.RNN / LSTM / GRU``, default options), to modules whose
    ``forward(xs (T, B, I))`` returns ``(ys (T, B, O), state)``.
    """
    T = cfg.T if T is None else T
    torch.manual_seed(seed)
    models: dict[str, nn.Module] = {}
    cell, generic, rest = cell.partition("@")
    if generic and rest != "generic":
        raise ValueError(f"unknown path suffix {'@' + rest!r}; valid: @generic")
    spec = TORCH.get(cell) if not generic else None
    base, _, reg = cell.partition("+")
    if generic:
        opts = REGULARIZERS[reg] if reg else {}
        inner = make_cell(spec_cell(base, cfg), cfg.I, cfg.H, **spec_options(base, cfg))
        models["rnnlab"] = Recurrent(NoKernel(inner), **opts)
        models["reference"] = Recurrent(copy.deepcopy(models["rnnlab"].cell), use_kernel=False,
                                        **opts)
        models["loop"] = models["reference"]
        if base.startswith("lstm") or base == "ln-lstm":
            models["lstm"] = nn.LSTM(cfg.I, cfg.H, **spec_options(base, cfg))
    elif cell in CUSTOM_CELLS:
        models["rnnlab"] = Recurrent(CUSTOM_CELLS[cell](cfg.I, cfg.H))
        if cell == "hand-gru":
            kernel = GRUCell(cfg.I, cfg.H)
            kernel.load_state_dict(models["rnnlab"].cell.state_dict())
            models["kernel"] = Recurrent(kernel)
    elif reg:
        if reg not in REGULARIZERS:
            raise ValueError(f"unknown regulariser suffix {reg!r} in {cell!r}; valid: "
                             f"{', '.join('+' + k for k in REGULARIZERS)}")
        opts = REGULARIZERS[reg]
        models["rnnlab"] = Recurrent(make_cell(base, cfg.I, cfg.H), **opts)
        models["reference"] = Recurrent(copy.deepcopy(models["rnnlab"].cell), use_kernel=False,
                                        **opts)
        models["loop"] = models["reference"]
    elif spec is not None:
        options = spec.options(cfg.H)
        ref = spec.layer(cfg.I, cfg.H, **options)
        state = ref.state_dict()
        models["torch"] = ref
        models["compat"] = spec.compat(cfg.I, cfg.H, **options)
        models["compat"].load_state_dict(state)
        ours = make_cell(spec.rnnlab_cell, cfg.I, cfg.H, **spec.cell_options(cfg.H))
        ours.load_state_dict({attr: state[name] for attr, name in TORCH_NAMES.items()
                              if name in state})
        models["rnnlab"] = Recurrent(ours)
        if spec.cell is not None:
            step = spec.cell(cfg.I, cfg.H, **options)
            step.load_state_dict({k.removesuffix("_l0"): v for k, v in state.items()})
            models["loop"] = UnbindLoop(step)
    else:
        extra = EXTRA_CELLS.get(cell)
        models["rnnlab"] = Recurrent(extra(cfg.I, cfg.H) if extra is not None
                                     else make_cell(cell, cfg.I, cfg.H))
    if "reference" not in models:
        models["reference"] = Recurrent(copy.deepcopy(models["rnnlab"].cell), use_kernel=False)
    if "loop" not in models:
        models["loop"] = Recurrent(copy.deepcopy(models["rnnlab"].cell), use_kernel=False)
    xs = torch.randn(T, cfg.B, cfg.I)                          # (T, B, I)
    d_ys = torch.randn(T, cfg.B, models["rnnlab"].output_size)   # upstream grad on all outputs
    return models, xs, d_ys


def spec_cell(base: str, cfg: Config) -> str:
    """The make_cell name of a benchmark cell name (``lstm-proj`` is the LSTM with
    ``proj_size`` = H/2)."""
    return "lstm" if base == "lstm-proj" else base


def spec_options(base: str, cfg: Config) -> dict:
    return {"proj_size": cfg.H // 2} if base == "lstm-proj" else {}


def train_step(module: nn.Module, xs: Tensor, d_ys: Tensor) -> None:
    module.zero_grad(set_to_none=True)
    xs.grad = None
    module(xs)[0].backward(d_ys)


def infer_sequence(module: nn.Module, xs: Tensor) -> None:
    with torch.no_grad():
        module(xs)


def make_step(module: nn.Module, xs: Tensor, d_ys: Tensor, mode: str) -> Callable[[], None]:
    if mode == "infer":
        return lambda: infer_sequence(module, xs)
    x = xs.clone().requires_grad_(True)
    return lambda: train_step(module, x, d_ys)


# -- checks and measurements (run inside the subprocesses) ----------------------------------


def _tensors(state) -> list[Tensor]:
    if isinstance(state, Tensor):
        return [state.flatten()]          # torch.nn's (1, B, H) and rnnlab's (B, H) alike
    return [t for s in (state or ()) for t in _tensors(s)]


def outputs_and_grads(module: nn.Module, xs: Tensor, d_ys: Tensor,
                      torch_names: bool = False) -> dict[str, Tensor]:
    """Outputs, final state, d xs and every parameter gradient of one training step
    (parameters of a ``Recurrent`` under torch.nn's names with ``torch_names``)."""
    x = xs.clone().requires_grad_(True)
    module.zero_grad(set_to_none=True)
    ys, state = module(x)
    ys.backward(d_ys)
    out = {"output": ys.detach(), "d_input": x.grad}
    out.update({f"state[{k}]": s.detach() for k, s in enumerate(_tensors(state))})
    for name, p in module.named_parameters():
        if torch_names:
            name = TORCH_NAMES[name.removeprefix("cell.")]
        out[f"d_{name}"] = p.grad
    return out


def compare(ours: dict[str, Tensor], ref: dict[str, Tensor]) -> dict:
    """Tolerance ``max |ours - ref| <= ATOL + RTOL * max |ref|`` on every tensor.
    Returns ok and the worst relative error with the tensor it came from."""
    if ours.keys() != ref.keys():
        return {"ok": False, "worst_rel_err": float("inf"),
                "worst_tensor": f"names differ: {sorted(ours.keys() ^ ref.keys())}"}
    worst, worst_name, ok = 0.0, "", True
    for name, r in ref.items():
        o = ours[name]
        if o is None or r is None or o.shape != r.shape:
            return {"ok": False, "worst_rel_err": float("inf"), "worst_tensor": name}
        err = (o - r).abs().max().item()
        scale = r.abs().max().item()
        ok &= err <= ATOL + RTOL * scale
        rel = err / max(scale, 1e-30)
        if rel >= worst:
            worst, worst_name = rel, name
    return {"ok": bool(ok), "worst_rel_err": worst, "worst_tensor": worst_name}


def check(models: dict[str, nn.Module], xs: Tensor, d_ys: Tensor) -> dict:
    """rnnlab's default path vs its reference loop; where torch.nn has the model, the same
    path vs torch.nn, and rnnlab's torch.nn-compatible module vs torch.nn."""
    torch.manual_seed(0)                 # the same regulariser masks for both paths
    ours = outputs_and_grads(models["rnnlab"], xs, d_ys)
    torch.manual_seed(0)
    result = {"vs_reference": compare(ours, outputs_and_grads(models["reference"], xs, d_ys)),
              "vs_torch": None, "compat_vs_torch": None}
    if "torch" in models:
        ref = outputs_and_grads(models["torch"], xs, d_ys)
        ours = outputs_and_grads(models["rnnlab"], xs, d_ys, torch_names=True)
        result["vs_torch"] = compare(ours, ref)
        result["compat_vs_torch"] = compare(outputs_and_grads(models["compat"], xs, d_ys), ref)
    result["ok"] = all(c["ok"] for c in result.values() if c is not None)
    return result


def check_float64(cell: str, cfg: Config) -> dict:
    """:func:`check` on float64 copies over the first ``CHECK_STEPS`` steps: it tests the
    kernels' mathematics, which float32 rounding cannot: at its default initialisation
    and N(0, 1) inputs the layer-normalised LSTM is chaotic, and rounding alone moves
    even its float32 reference loop by 1e-4 (T = 100) to 0.2 (T = 300) against float64.
    The float32 agreement of every kernel is tested in tests/test_kernels*.py."""
    models, xs, d_ys = build(cell, cfg, T=min(cfg.T, CHECK_STEPS))
    for m in models.values():
        m.double()
    saved = fast.ENABLED, fast.WARMUP, fast.MIN_STEPS
    fast.ENABLED, fast.WARMUP, fast.MIN_STEPS = True, 0, 0   # generic on the checked call
    try:
        return check(models, xs.double(), d_ys.double())
    finally:
        fast.ENABLED, fast.WARMUP, fast.MIN_STEPS = saved


def time_alternating(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each step, samples taken in turn (a, b, c, a, b, c, ...)."""
    inner = {}
    for name, step in steps.items():                       # warm-up and calls per sample
        step()
        t0 = time.perf_counter()
        step()
        inner[name] = max(1, round(TARGET_SAMPLE_S / max(time.perf_counter() - t0, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                step()
            samples[name].append((time.perf_counter() - t0) / inner[name])
    return {name: statistics.median(s) for name, s in samples.items()}


def gemm_flops(model: nn.Module, cfg: Config) -> float:
    """GEMM FLOPs of one training step: every weight matrix (rows × cols) meets all T·B rows
    once in forward (2·T·B·rows·cols) and twice in backward (d input, d weight), so the total
    is 6·T·B·Σ rows·cols; for the plain cells 6·T·B·G·H·(I + H) with G gates."""
    weights = sum(p.numel() for p in model.parameters() if p.dim() == 2)
    return 6.0 * cfg.T * cfg.B * weights


def gemm_peak(samples: int = 3) -> float:
    """GFLOP/s of a 2048³ ``torch.matmul``, best of ``samples`` (the machine is shared)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(samples):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * 2048**3 / best / 1e9


def _cell_of(layer):
    cell = getattr(layer, "cell", None)
    return cell if cell is not None else layer


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0     # Linux: KiB


def worker_time(cell: str, config: str, repeats: int) -> dict:
    cfg = CONFIGS[config]
    first = build(cell, cfg, T=1)[0]["rnnlab"]
    trace = None
    if first.path == "generic":
        # the generic path traces a cell's step on its first training call: the first call
        # of this (new) process, imports included, and then a new cell in the warm process
        trace = {"cold": _first_call(first, cfg)}
        trace["warm"] = _first_call(build(cell, cfg, T=1, seed=1)[0]["rnnlab"], cfg)
    result = {"check": check_float64(cell, cfg), "trace_s": trace}
    models, xs, d_ys = build(cell, cfg)
    result["path"] = models["rnnlab"].path
    steps = {impl: make_step(models[impl], xs, d_ys, cfg.mode)
             for impl in IMPLS if impl in models}
    gemm = cfg.mode == "train" and not cfg.smoke
    peak = gemm_peak() if gemm else None                     # before and after the timings
    result["seconds"] = time_alternating(steps, repeats)
    compiled = fast._C_LOOPS.get(_cell_of(models["rnnlab"]), {})
    if any(v is not None for v in compiled.values()):
        result["path"] += " (C)"      # its time loops in compiled C (a kernel's hand-over)
    if gemm:
        result["peak_gflops"] = max(peak, gemm_peak())
        result["gemm_gflops"] = (gemm_flops(models["rnnlab"], cfg)
                                 / result["seconds"]["rnnlab"] / 1e9)
    return result


def _first_call(layer: Recurrent, cfg: Config) -> float:
    """Seconds of a layer's first training step at T = 1."""
    t0 = time.perf_counter()
    train_step(layer, torch.randn(1, cfg.B, cfg.I, requires_grad=True),
               torch.randn(1, cfg.B, layer.output_size))
    return time.perf_counter() - t0


def worker_memory(cell: str, config: str, impl: str) -> dict:
    cfg = CONFIGS[config]
    warm, xs_warm, d_warm = build(cell, cfg, T=2)           # loads kernels, not activations
    make_step(warm[impl], xs_warm, d_warm, cfg.mode)()
    models, xs, d_ys = build(cell, cfg)
    step = make_step(models[impl], xs, d_ys, cfg.mode)
    before = rss_mb()
    for _ in range(3):
        step()
    return {"act_mb": rss_mb() - before}


def worker(argv: list[str]) -> None:
    """Subprocess entry: ``time THREADS CELL CONFIG REPEATS`` or ``memory THREADS CELL
    CONFIG IMPL``; prints one JSON line."""
    kind, threads, *rest = argv
    torch.set_num_threads(int(threads))
    # the generic path on every training call (checks, T = 1)
    fast.ENABLED, fast.WARMUP, fast.MIN_STEPS = True, 0, 0
    if kind == "time":
        out = worker_time(rest[0], rest[1], int(rest[2]))
    else:
        out = worker_memory(*rest)
    print(json.dumps(out))


# -- the driver -----------------------------------------------------------------------------


def spawn(*args) -> dict:
    cmd = [sys.executable, "-m", "rnnlab.bench", "--worker", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class Row:
    cell: str
    config: str
    threads: int
    path: str                    # rnnlab's path: "fused", "generic" or "reference"
    ms: dict                     # impl -> ms per training step (µs per step for stream)
    act_mb: dict                 # impl -> MB, train configs (not smoke)
    peak_gflops: float | None    # 2048³ matmul in the same process, train configs (not smoke)
    gemm_pct: float | None
    check: dict
    note: str = ""
    trace_s: dict | None = None  # generic path: first training call, cold and warm process


def measure(cell: str, config: str, threads: int, repeats: int,
            one_thread: Row | None = None) -> Row:
    """One row: a timing process (checks first) and one memory process per implementation."""
    cfg = CONFIGS[config]
    reps = repeats if config in ("small", "stream", "tiny") else max(min(repeats, 5),
                                                                      repeats // 2)
    scale = 1e3 if cfg.mode == "train" else 1e6 / cfg.T    # ms per step, or µs per stream step
    timed = spawn("time", threads, cell, config, reps)
    note = ""
    if one_thread is not None and any(timed["seconds"][k] * scale > 5 * one_thread.ms[k]
                                      for k in one_thread.ms):   # a stall: measure once more
        timed, note = spawn("time", threads, cell, config, reps), "re-measured (>5x 1-thread)"
    ms = {k: v * scale for k, v in timed["seconds"].items()}
    act_mb = {}
    if cfg.mode == "train" and not cfg.smoke:
        act_mb = {impl: spawn("memory", threads, cell, config, impl)["act_mb"]
                  for impl in MEMORY_IMPLS if impl in ms}
    gemm, peak = timed.get("gemm_gflops"), timed.get("peak_gflops")
    return Row(cell, config, threads, timed["path"], ms, act_mb, peak,
               None if gemm is None else 100 * gemm / peak, timed["check"], note,
               timed.get("trace_s"))


def run(cells, configs, threads, repeats: int, log: Callable[[str], None] | None = None):
    """Measure every (threads, cell, config); 2-thread rows re-measure a >5× stall against
    the 1-thread row when there is one. Returns the rows in that order."""
    rows: list[Row] = []
    by_key: dict[tuple[str, str, int], Row] = {}
    for n in threads:
        for cell in cells:
            for config in configs:
                base = by_key.get((cell, config, 1)) if n > 1 else None
                row = measure(cell, config, n, repeats, base)
                by_key[(cell, config, n)] = row
                rows.append(row)
                if log is not None:
                    log(f"  measured {cell} {config} at {n} thread(s): {row.path}, "
                        f"{'PASS' if row.check['ok'] else 'FAIL'}")
    return rows


def failures(rows: list[Row]) -> list[str]:
    """One line per row whose correctness check failed."""
    lines = []
    for r in rows:
        for against in ("vs_reference", "vs_torch", "compat_vs_torch"):
            c = r.check[against]
            if c is not None and not c["ok"]:
                lines.append(f"FAIL: {r.cell} {r.config} {r.threads} thread(s) {against}: "
                             f"{c['worst_tensor']} rel. err {c['worst_rel_err']:.2e}")
    return lines


def _num(x: float | None, spec: str, suffix: str = "", missing: str = "") -> str:
    return missing if x is None else format(x, spec) + suffix


def _correct(check: dict) -> str:
    errors = [f"{label} {check[key]['worst_rel_err']:.1e}"
              for label, key in (("ref", "vs_reference"), ("nn", "vs_torch"),
                                 ("compat", "compat_vs_torch")) if check[key] is not None]
    return f"{'PASS' if check['ok'] else 'FAIL'} ({', '.join(errors)})"


def tables(rows: list[Row], threads: int) -> str:
    """The markdown table of the rows at ``threads``."""
    rows = [r for r in rows if r.threads == threads]
    peaks = [r.peak_gflops for r in rows if r.peak_gflops is not None]
    peak = (f", GEMM peak {min(peaks):.0f}–{max(peaks):.0f} GFLOP/s (2048³ matmul, best of 6 "
            "in each row's process)") if peaks else ""
    lines = [f"### {threads} thread{'s' if threads > 1 else ''}{peak}", "",
             "| cell | config | rnnlab path | torch.nn | autograd loop | rnnlab | "
             "rnnlab / torch.nn | speedup vs loop | rnnlab.X / torch.nn | act. MB torch.nn | "
             "act. MB loop | act. MB rnnlab | MB ratio | GEMM eff. | correct | "
             "rnnlab / kernel | rnnlab / nn.LSTM | first call s (new / warm process) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cfg = CONFIGS[r.config]
        unit = " ms" if cfg.mode == "train" else " µs/step"
        ms, mem = r.ms, r.act_mb
        # "—": not measured in this mode; empty: no such baseline
        measured = "—" if cfg.mode != "train" or cfg.smoke else ""
        ratio = mem["rnnlab"] / mem["torch"] if mem.get("torch") else None
        lines.append(
            f"| {r.cell} | {r.config} | {r.path} | {_num(ms.get('torch'), '.3f', unit)} | "
            f"{_num(ms['loop'], '.3f', unit)} | {_num(ms['rnnlab'], '.3f', unit)} | "
            f"{_num(ms['rnnlab'] / ms['torch'] if 'torch' in ms else None, '.2f', '×')} | "
            f"{_num(ms['loop'] / ms['rnnlab'], '.2f', '×')} | "
            f"{_num(ms['compat'] / ms['torch'] if 'compat' in ms else None, '.2f', '×')} | "
            f"{_num(mem.get('torch'), '.1f', missing=measured)} | "
            f"{_num(mem.get('loop'), '.1f', missing='—')} | "
            f"{_num(mem.get('rnnlab'), '.1f', missing='—')} | "
            f"{_num(ratio, '.2f', '×', missing=measured)} | "
            f"{_num(r.gemm_pct, '.0f', '%', missing='—')} | "
            f"{_correct(r.check)}{' ' + r.note if r.note else ''} | "
            f"{_num(ms['rnnlab'] / ms['kernel'] if 'kernel' in ms else None, '.2f', '×')} | "
            f"{_num(ms['rnnlab'] / ms['lstm'] if 'lstm' in ms else None, '.2f', '×')} | "
            + (f"{r.trace_s['cold']:.1f} / {r.trace_s['warm']:.1f} |" if r.trace_s else " |"))
    return "\n".join(lines)


def machine() -> dict:
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(),
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def results_markdown(rows: list[Row], threads, info: dict, command: str) -> str:
    """benchmarks/RESULTS.md: how it was measured, then one table per thread count."""
    header = [
        "# rnnlab kernel benchmark", "",
        f"- machine: {info['cpu']}, {info['cores']} cores (shared, noisy: the ratios "
        "measured side by side are the figures that count)",
        f"- torch {info['torch']}, Python {info['python']}, {info['date']}",
        f"- threads: {', '.join(map(str, threads))}",
        f"- command: `{command}`", "",
        "Train configs: ms per training step (forward + backward, random upstream gradient, "
        "float32), medians, implementations timed in turn. stream: µs per step of inference "
        "over T = 1000 in one call under `torch.no_grad()`. rnnlab: `rnnlab.Recurrent(cell)` "
        "(with torch.nn's weights where torch.nn has the model); rnnlab path: `fused` when "
        "`rnnlab.find_kernel` has a kernel for the cell, else `generic` (the cell's traced "
        "step, `rnnlab.fast`), or `reference` (autograd through rnnlab's step); `(C)`: the "
        "training steps ran in the generic path's compiled C loops (`rnnlab.fast_c`; for a "
        "kernel, its hand-over, `rnnlab.kernels.compiled_first`). torch.nn: `nn.RNN` (tanh, "
        "relu), `nn.LSTM` (lstm; lstm-proj with "
        "`proj_size` = H/2), `nn.GRU`; empty where torch.nn has no such model. autograd loop: "
        "`nn.*Cell` over `x.unbind(0)` where torch has the cell, else rnnlab with "
        "`use_kernel=False`. rnnlab.X / torch.nn: the torch.nn-compatible `rnnlab.RNN / LSTM "
        "/ GRU` with default options (whichever path it picks), timed in the same turns. "
        "act. MB: growth of peak RSS over the training loop, each implementation in its own "
        "process; MB ratio = rnnlab / torch.nn. GEMM eff.: rnnlab's training GEMM FLOPs "
        "(6·T·B·Σ rows·cols of the weight matrices) / time / GEMM peak. correct: rnnlab vs "
        "its reference loop (ref), rnnlab vs torch.nn with copied weights (nn) and rnnlab.X "
        "vs torch.nn (compat): outputs, final state and all gradients over the first "
        f"{CHECK_STEPS} steps in float64, max |Δ| <= {ATOL:g} + {RTOL:g}·max |ref| (worst "
        "relative error); float32 agreement is tested in tests/test_kernels*.py.", "", "",
    ]
    body = "\n\n".join(tables(rows, n) for n in threads)
    return "\n".join(header) + body + "\n"


def to_json(rows: list[Row], info: dict) -> str:
    """One line: ``{"machine": ..., "rows": [...]}``."""
    return json.dumps({"machine": info, "rows": [asdict(r) for r in rows]})


if __name__ == "__main__":
    if sys.argv[1:2] != ["--worker"]:
        sys.exit("usage: python -m rnnlab.bench --worker ... (run `rnnlab bench` instead)")
    worker(sys.argv[2:])
