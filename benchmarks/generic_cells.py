"""Cells on the generic path (rnnlab.fast) against the autograd loop through the same step
(``use_kernel=False``), and where there are ones, rnnlab's fused kernel and nn.LSTM:

- the LSTM variants torch.nn lacks (layer-normalised, recurrent dropout 0.25, zoneout 0.1,
  projection to H/2) against nn.LSTM at the same B, T, I, H (with ``proj_size`` for the
  projection): forced onto the generic path, as ``rnnlab.Recurrent`` runs them by default
  (their kernel, which hands training calls over to the generic path's C loops where they
  apply: :func:`rnnlab.kernels.compiled_first`), and their kernel alone (what runs without
  a C compiler);
- the cells of the chapter without a kernel: deep transition, deep output, skip
  connections, clockwork (10.5, 10.9), the NTM cell (10.12), and MinGRU / MinLSTM forced
  off their scan kernel.

One training step (forward + backward, random upstream gradient, float32, the layer in
training mode) at a benchmark configuration (benchmarks/README.md), implementations timed
in turn, medians; before timing, the generic path's outputs and every gradient (and the
default layer's, for a cell with a kernel) are compared with the autograd loop's in float64
over the first 20 steps (the same dropout and zoneout masks).

    OMP_NUM_THREADS=1 python benchmarks/generic_cells.py [--configs small long] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import rnnlab
from rnnlab import fast, layers
from rnnlab.bench import CONFIGS, NoKernel, machine
from rnnlab.cells import (
    ClockworkCell,
    DeepOutputCell,
    DeepTransitionCell,
    GRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    MinGRUCell,
    MinLSTMCell,
    NTMCell,
    SkipCell,
)

# name -> (make(I, H) -> cell, layer options, nn.LSTM options or None: no nn.LSTM column)
CELLS = {
    "ln-lstm": (lambda I, H: LayerNormLSTMCell(I, H), {}, {}),
    "lstm + recurrent dropout": (lambda I, H: LSTMCell(I, H), {"recurrent_dropout": 0.25},
                                 {}),
    "lstm + zoneout": (lambda I, H: LSTMCell(I, H), {"zoneout": 0.1}, {}),
    "lstm-proj (P = H/2)": (lambda I, H: LSTMCell(I, H, proj_size=H // 2), {},
                            "proj"),
    "deep-transition (GRU, depth 2)": (lambda I, H: DeepTransitionCell(GRUCell(I, H),
                                                                        depth=2), {}, None),
    "deep-output (LSTM, depth 2)": (lambda I, H: DeepOutputCell(LSTMCell(I, H), depth=2),
                                    {}, None),
    "skip (Elman, delay 4)": (lambda I, H: SkipCell.build(
        lambda i, h: rnnlab.ElmanCell(i, h), I, H, delay=4), {}, None),
    "clockwork (periods 1..8)": (lambda I, H: ClockworkCell(I, H, periods=[1, 2, 4, 8]), {},
                                 None),
    "ntm (LSTM controller, 32 x 16 memory)": (lambda I, H: NTMCell(
        I, H, hidden=H, memory_slots=32, memory_width=16), {}, None),
    "min-gru": (lambda I, H: MinGRUCell(I, H), {}, None),
    "min-lstm": (lambda I, H: MinLSTMCell(I, H), {}, None),
}


def generic(cell):
    """The cell as the generic path runs it: wrapped when it has a kernel."""
    return NoKernel(cell) if layers.find_kernel(cell) is not None else cell


def run(layer, xs, dys, seed=0):
    x = xs.clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    torch.manual_seed(seed)                       # the same regulariser masks on each path
    ys, _ = layer(x)
    ys.backward(dys)
    return [ys.detach(), x.grad, *(p.grad for p in layer.parameters())]


def check(make, opts, cfg) -> float:
    torch.manual_seed(0)
    cell = make(cfg.I, cfg.H).double()
    ours = [rnnlab.Recurrent(generic(copy.deepcopy(cell)), **opts)]
    if layers.find_kernel(cell) is not None:            # and the default layer
        ours.append(rnnlab.Recurrent(copy.deepcopy(cell), **opts))
    ref = rnnlab.Recurrent(cell, use_kernel=False, **opts)
    assert ours[0].path == "generic"
    xs = torch.randn(20, cfg.B, cfg.I, dtype=torch.float64)
    dys = torch.randn(20, cfg.B, ref.output_size, dtype=torch.float64)
    return max(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
               for layer in ours for a, b in zip(run(layer, xs, dys), run(ref, xs, dys)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["small", "long"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cells", nargs="+", default=None,
                        help="rows whose name starts with one of these (default: all)")
    parser.add_argument("--graphs", action="store_true",
                        help="where the C loops do not apply, run the traced graphs from "
                             "Python (rnnlab.fast.GRAPHS) instead of the reference loop")
    args = parser.parse_args()
    fast.GRAPHS = args.graphs
    torch.set_num_threads(1)
    # the generic path on every training call (checks)
    fast.ENABLED, fast.WARMUP, fast.MIN_STEPS = True, 0, 0
    assert layers.find_kernel(NoKernel(MinGRUCell(2, 2))) is None
    print(f"CPU {machine()['cpu']}, 1 thread (machine shared), torch {torch.__version__}; "
          f"medians of {args.repeats}, paths timed in turn\n")
    print("| cell | config | generic runs | autograd loop ms | generic ms | speedup vs loop "
          "| rnnlab ms "
          "| kernel ms | nn.LSTM ms | generic / nn.LSTM | rnnlab / nn.LSTM "
          "| kernel / nn.LSTM | first call s | correct (generic vs loop, float64, worst rel. "
          "err) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (make, opts, lstm) in CELLS.items():
        if args.cells and not name.startswith(tuple(args.cells)):
            continue
        for config in args.configs:
            cfg = CONFIGS[config]
            err = check(make, opts, cfg)
            torch.manual_seed(0)
            cell = make(cfg.I, cfg.H)
            paths = {"loop": rnnlab.Recurrent(copy.deepcopy(cell), use_kernel=False, **opts),
                     "generic": rnnlab.Recurrent(generic(copy.deepcopy(cell)), **opts)}
            if layers.find_kernel(cell) is not None:
                paths["rnnlab"] = rnnlab.Recurrent(copy.deepcopy(cell), **opts)
                alone = copy.deepcopy(cell)
                fast._UNSUPPORTED[alone] = "the kernel alone"     # no hand-over
                paths["kernel"] = rnnlab.Recurrent(alone, **opts)
            if lstm is not None:
                kw = {"proj_size": cfg.H // 2} if lstm == "proj" else {}
                paths["nn.LSTM"] = torch.nn.LSTM(cfg.I, cfg.H, **kw)
            xs = torch.randn(cfg.T, cfg.B, cfg.I)
            dys = torch.randn(cfg.T, cfg.B, paths["generic"].output_size)
            t0 = time.perf_counter()
            run(paths["generic"], xs[:1], dys[:1])
            first = time.perf_counter() - t0
            samples = {k: [] for k in paths}
            for k in paths:
                run(paths[k], xs, dys)
            for _ in range(args.repeats):
                for k, layer in paths.items():
                    t0 = time.perf_counter()
                    run(layer, xs, dys)
                    samples[k].append(time.perf_counter() - t0)
            ms = {k: 1e3 * statistics.median(v) for k, v in samples.items()}

            def num(key, ratio_to=None, ms=ms):
                if key not in ms or (ratio_to is not None and ratio_to not in ms):
                    return ""
                return f"{ms[key] / ms[ratio_to]:.2f}×" if ratio_to else f"{ms[key]:.1f}"

            gen = paths["generic"].cell
            runs = ("C" if any(v is not None for v in fast._C_LOOPS.get(gen, {}).values())
                    else "graphs" if fast.GRAPHS else "reference loop")
            print(f"| {name} | {config} | {runs} | {num('loop')} | {num('generic')} | "
                  f"{ms['loop'] / ms['generic']:.2f}× | {num('rnnlab')} | {num('kernel')} | "
                  f"{num('nn.LSTM')} | {num('generic', 'nn.LSTM')} | "
                  f"{num('rnnlab', 'nn.LSTM')} | {num('kernel', 'nn.LSTM')} | {first:.1f} | "
                  f"{'PASS' if err <= 1e-9 else 'FAIL'} ({err:.1e}) |", flush=True)


if __name__ == "__main__":
    main()
