"""Speed and memory of rnnlab's fused RNN / GRU / LSTM kernels against torch.nn and the
autograd loop over ``nn.*Cell`` (protocol: /work/shared/BENCHMARKS.md).

    .venv/bin/python benchmarks/kernels.py [--threads 1 2] [--configs small medium long stream]
        [--cells rnn gru lstm] [--repeats N] [--json] [--out benchmarks/RESULTS.md]

Every (cell, config, threads) runs in fresh subprocesses:

- one that checks rnnlab against torch.nn (outputs, input and parameter gradients, with
  copied weights) and then times, alternating, (a) ``torch.nn.X``, (b) ``nn.XCell`` over
  ``x.unbind(0)`` then ``torch.stack`` (the loop users write for a custom cell) and
  (c) ``rnnlab.X`` (the fused kernel);
- one per implementation for activation memory: the growth of peak RSS over the timed
  training loop, after a warm-up at T = 2 that loads the libraries without the activations.

"train" configs time forward + backward with a random upstream gradient on all outputs;
"stream" times inference (``torch.no_grad()``) over the whole sequence in one call, per step.
GEMM efficiency = GEMM FLOPs of an rnnlab training step / time / peak, where the peak is a
2048³ ``torch.matmul`` at the same thread count, in the same process, best of 3 before and
3 after the timings (the machine is shared: a peak from another moment would mislead).
This script prints; it asserts no time.
"""

from __future__ import annotations

import argparse
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
from dataclasses import asdict, dataclass

import torch
from torch import nn

import rnnlab

# name -> (B, T, I, H, mode), BENCHMARKS.md "Configurations"
CONFIGS = {
    "small": (32, 100, 64, 128, "train"),
    "medium": (64, 200, 128, 256, "train"),
    "long": (16, 1000, 32, 64, "train"),
    "stream": (1, 1000, 32, 128, "infer"),
}
CELLS = {  # name -> (torch.nn layer, torch.nn cell, rnnlab layer, gates)
    "rnn": (nn.RNN, nn.RNNCell, rnnlab.RNN, 1),
    "gru": (nn.GRU, nn.GRUCell, rnnlab.GRU, 3),
    "lstm": (nn.LSTM, nn.LSTMCell, rnnlab.LSTM, 4),
}
IMPLS = ("torch", "unbind", "rnnlab")
RTOL, ATOL = 1e-4, 1e-5
TARGET_SAMPLE_S = 0.05          # each timed sample repeats the step to last about this long


# -- the three implementations --------------------------------------------------------------


def build(cell: str, B: int, T: int, I: int, H: int, seed: int = 0):
    """torch.nn.X, nn.XCell and rnnlab.X with the same weights, an input and an upstream grad."""
    torch.manual_seed(seed)
    layer_cls, cell_cls, ours_cls, _ = CELLS[cell]
    ref = layer_cls(I, H)
    ours = ours_cls(I, H)
    ours.load_state_dict(ref.state_dict())
    step = cell_cls(I, H)
    step.load_state_dict({k.removesuffix("_l0"): v for k, v in ref.state_dict().items()})
    xs = torch.randn(T, B, I)                              # (T, B, I)
    d_ys = torch.randn(T, B, H)                            # upstream gradient on all outputs
    return {"torch": ref, "unbind": step, "rnnlab": ours}, xs, d_ys


def unbind_loop(step: nn.Module, xs: torch.Tensor) -> torch.Tensor:
    """The autograd loop over a cell: (T, B, I) -> (T, B, H)."""
    state = None
    ys = []
    for x in xs.unbind(0):
        state = step(x, state)
        ys.append(state[0] if isinstance(state, tuple) else state)
    return torch.stack(ys)


def run_forward(impl: str, module: nn.Module, xs: torch.Tensor) -> torch.Tensor:
    return unbind_loop(module, xs) if impl == "unbind" else module(xs)[0]


def train_step(impl: str, module: nn.Module, xs: torch.Tensor, d_ys: torch.Tensor) -> None:
    module.zero_grad(set_to_none=True)
    xs.grad = None
    run_forward(impl, module, xs).backward(d_ys)


def infer_sequence(impl: str, module: nn.Module, xs: torch.Tensor) -> None:
    with torch.no_grad():
        run_forward(impl, module, xs)


# -- checks and measurements (run inside the subprocesses) ----------------------------------


def check(models, xs: torch.Tensor, d_ys: torch.Tensor) -> dict:
    """rnnlab vs torch.nn: outputs, d xs and every parameter gradient, float32 tolerance
    ``max |ours - ref| <= ATOL + RTOL * max |ref|``. Returns the worst relative error."""
    grads = {}
    for impl in ("torch", "rnnlab"):
        x = xs.clone().requires_grad_(True)
        models[impl].zero_grad(set_to_none=True)
        y = run_forward(impl, models[impl], x)
        y.backward(d_ys)
        grads[impl] = {"output": y.detach(), "d_input": x.grad}
        grads[impl].update({f"d_{n}": p.grad for n, p in models[impl].named_parameters()})
    worst, worst_name, ok = 0.0, "", True
    for name, ref in grads["torch"].items():
        err = (grads["rnnlab"][name] - ref).abs().max().item()
        scale = ref.abs().max().item()
        ok &= err <= ATOL + RTOL * scale
        rel = err / max(scale, 1e-30)
        if rel >= worst:
            worst, worst_name = rel, name
    cells = [layer.cell for layer in models["rnnlab"]._stack.layers]
    fused = all(rnnlab.find_kernel(c) is not None for c in cells)
    return {"ok": bool(ok), "worst_rel_err": worst, "worst_tensor": worst_name, "fused": fused}


def make_step(impl, models, xs, d_ys, mode):
    if mode == "infer":
        return lambda: infer_sequence(impl, models[impl], xs)
    x = xs.clone().requires_grad_(True)
    return lambda: train_step(impl, models[impl], x, d_ys)


def time_alternating(steps: dict, repeats: int) -> dict:
    """Median seconds per call of each step, samples taken in turn (a, b, c, a, b, c, ...)."""
    inner = {}
    for name, step in steps.items():                       # warm-up and calls per sample
        step()
        t0 = time.perf_counter()
        step()
        inner[name] = max(1, round(TARGET_SAMPLE_S / max(time.perf_counter() - t0, 1e-9)))
    samples = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                step()
            samples[name].append((time.perf_counter() - t0) / inner[name])
    return {name: statistics.median(s) for name, s in samples.items()}


def gemm_flops(cell: str, B: int, T: int, I: int, H: int) -> float:
    """GEMM FLOPs of one training step, 2·m·n·k each: forward input GEMM (T·B × I → G·H) and
    T recurrent GEMMs (B × H → G·H); backward dX, dW_ih, dW_hh over all T·B rows and T
    per-step dh GEMMs. Total 6·T·B·G·H·(I + H)."""
    G = CELLS[cell][3]
    fwd = 2 * T * B * I * G * H + T * 2 * B * H * G * H
    bwd = 2 * T * B * G * H * I * 2 + 2 * T * B * G * H * H + T * 2 * B * G * H * H
    return float(fwd + bwd)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0     # Linux: KiB


def worker_time(cell: str, config: str, repeats: int) -> dict:
    B, T, I, H, mode = CONFIGS[config]
    models, xs, d_ys = build(cell, B, T, I, H)
    result = {"check": check(models, xs, d_ys)}
    steps = {impl: make_step(impl, models, xs, d_ys, mode) for impl in IMPLS}
    peak = gemm_peak() if mode == "train" else None     # before and after the timings
    medians = time_alternating(steps, repeats)
    result["seconds"] = medians
    if mode == "train":
        result["peak_gflops"] = max(peak, gemm_peak())
        result["gemm_gflops"] = gemm_flops(cell, B, T, I, H) / medians["rnnlab"] / 1e9
    return result


def worker_memory(cell: str, config: str, impl: str) -> dict:
    B, T, I, H, mode = CONFIGS[config]
    small, xs_small, d_small = build(cell, B, 2, I, H)     # loads kernels, not activations
    make_step(impl, small, xs_small, d_small, mode)()
    models, xs, d_ys = build(cell, B, T, I, H)
    step = make_step(impl, models, xs, d_ys, mode)
    before = rss_mb()
    for _ in range(3):
        step()
    return {"act_mb": rss_mb() - before}


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


def worker(argv: list[str]) -> None:
    kind, threads, *rest = argv
    torch.set_num_threads(int(threads))
    if kind == "time":
        out = worker_time(rest[0], rest[1], int(rest[2]))
    else:
        out = worker_memory(*rest)
    print(json.dumps(out))


# -- the driver -----------------------------------------------------------------------------


def spawn(*args) -> dict:
    cmd = [sys.executable, __file__, "--worker", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class Row:
    cell: str
    config: str
    threads: int
    ms: dict                     # impl -> ms per training step (µs per step for stream)
    act_mb: dict                 # impl -> MB, train configs only
    peak_gflops: float | None    # 2048³ matmul in the same process, train configs only
    gemm_pct: float | None
    check: dict
    note: str = ""


def measure(cell: str, config: str, threads: int, repeats: int, one_thread: Row | None) -> Row:
    _, T, _, _, mode = CONFIGS[config]
    reps = repeats if config in ("small", "stream") else max(5, repeats // 2)
    scale = 1e3 if mode == "train" else 1e6 / T      # ms per step, or µs per stream step
    timed = spawn("time", threads, cell, config, reps)
    note = ""
    if one_thread is not None and any(timed["seconds"][k] * scale > 5 * one_thread.ms[k]
                                      for k in IMPLS):     # a stall: measure once more
        timed, note = spawn("time", threads, cell, config, reps), "re-measured (>5x 1-thread)"
    ms = {k: v * scale for k, v in timed["seconds"].items()}
    act_mb = {}
    if mode == "train":
        act_mb = {impl: spawn("memory", threads, cell, config, impl)["act_mb"] for impl in IMPLS}
    gemm, peak = timed.get("gemm_gflops"), timed.get("peak_gflops")
    return Row(cell, config, threads, ms, act_mb, peak,
               None if gemm is None else 100 * gemm / peak, timed["check"], note)


def fmt(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def table(rows: list[Row], threads: int) -> str:
    peaks = [r.peak_gflops for r in rows if r.peak_gflops is not None]
    peak = (f", GEMM peak {min(peaks):.0f}–{max(peaks):.0f} GFLOP/s (2048³ matmul, best of 6 "
            "in each row's process)") if peaks else ""
    lines = [f"### {threads} thread{'s' if threads > 1 else ''}{peak}", "",
             "| cell | config | torch.nn | unbind loop | rnnlab | rnnlab / torch.nn | "
             "speedup vs unbind | act. MB torch.nn | act. MB rnnlab | MB ratio | GEMM eff. | "
             "correct |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        unit = " ms" if CONFIGS[r.config][4] == "train" else " µs/step"
        mem = r.act_mb
        ratio = mem["rnnlab"] / mem["torch"] if mem and mem["torch"] > 0 else None
        c = r.check
        correct = ("PASS" if c["ok"] else "FAIL") + f" ({c['worst_rel_err']:.1e}"
        correct += ")" if c["fused"] else ", NOT FUSED)"
        note = f" {r.note}" if r.note else ""
        lines.append(
            f"| {r.cell} | {r.config} | {r.ms['torch']:.3f}{unit} | {r.ms['unbind']:.3f}{unit} "
            f"| {r.ms['rnnlab']:.3f}{unit} | {r.ms['rnnlab'] / r.ms['torch']:.2f}× | "
            f"{r.ms['unbind'] / r.ms['rnnlab']:.2f}× | {fmt(mem.get('torch'), '.1f')} | "
            f"{fmt(mem.get('rnnlab'), '.1f')} | {fmt(ratio, '.2f')}"
            f"{'×' if ratio is not None else ''} | "
            f"{fmt(r.gemm_pct, '.0f')}{'%' if r.gemm_pct is not None else ''} | "
            f"{correct}{note} |")
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker(argv[1:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    p.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS))
    p.add_argument("--repeats", type=int, default=7,
                   help="timed samples per implementation (halved, min 5, for medium/long)")
    p.add_argument("--json", action="store_true", help="print one JSON object, no tables")
    p.add_argument("--out", help="also write the markdown tables to this file")
    args = p.parse_args(argv)
    if args.repeats < 5:
        p.error("--repeats must be >= 5 (BENCHMARKS.md: medians of >= 5 repeats)")

    info = machine()
    rows = []
    by_key: dict[tuple[str, str, int], Row] = {}
    for threads in args.threads:
        for cell in args.cells:
            for config in args.configs:
                base = by_key.get((cell, config, 1)) if threads > 1 else None
                row = measure(cell, config, threads, args.repeats, base)
                by_key[(cell, config, threads)] = row
                rows.append(row)
                if not args.json:
                    print(f"  measured {cell} {config} at {threads} thread(s)", file=sys.stderr)
    if args.json:
        print(json.dumps({"machine": info, "rows": [asdict(r) for r in rows]}, indent=1))
    tables = "\n\n".join(table([r for r in rows if r.threads == n], n)
                         for n in args.threads)
    if not args.json:
        print(tables)
    failures = [r for r in rows if not r.check["ok"]]
    for r in failures:
        print(f"FAIL: {r.cell} {r.config} {r.threads} thread(s): "
              f"{r.check['worst_tensor']} rel. err {r.check['worst_rel_err']:.2e}",
              file=sys.stderr)
    if args.out:
        command = ".venv/bin/python benchmarks/kernels.py " + shlex.join(argv)
        header = [
            "# rnnlab kernel benchmark", "",
            f"- machine: {info['cpu']}, {info['cores']} cores (shared, noisy: the ratios "
            "measured side by side are the figures that count)",
            f"- torch {info['torch']}, Python {info['python']}, {info['date']}",
            f"- threads: {', '.join(map(str, args.threads))}",
            f"- command: `{command}`", "",
            "Train configs: ms per training step (forward + backward, random upstream "
            "gradient, float32), medians, implementations timed in turn. stream: µs per step "
            "of inference over T = 1000 in one call under `torch.no_grad()`. act. MB: growth of "
            "peak RSS over the training loop, each implementation in its own process. GEMM "
            "eff.: rnnlab's training GEMM FLOPs (6·T·B·G·H·(I+H)) / time / GEMM peak. "
            "correct: rnnlab vs torch.nn, outputs and all gradients, "
            f"max |Δ| <= {ATOL:g} + {RTOL:g}·max |ref| (worst relative error).", "",
        ]
        with open(args.out, "w") as f:
            f.write("\n".join(header) + tables + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
