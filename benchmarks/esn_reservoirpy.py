"""Echo state network: rnnlab against ReservoirPy 0.4.2 on Jaeger's Mackey-Glass protocol
(book 10.8; protocol: benchmarks/README.md).

    .venv/bin/pip install -c constraints.txt reservoirpy==0.4.2     # or: pip install '.[bench]'
    .venv/bin/python benchmarks/esn_reservoirpy.py [--seeds 0 1 2 3 4] [--size 500]

ReservoirPy is a benchmark dependency only; without it the script says so and exits 0.

The protocol is ``rnnlab train mackey-glass --set model.loop=input``
(:mod:`rnnlab.tasks.mackey_glass`): the Mackey-Glass series (tau 17, Euler, dt 0.1,
sampled every time unit, squashed s = tanh(x - 1)) from
:func:`rnnlab.data.mackey_glass.mackey_glass`; a one-step predictor u(t) = s(t-1) ->
y(t) = s(t) with the input also fed to the readout, z = [1; u; x]; ridge readout fitted on
10,000 teacher-forced steps after a washout of 500; on the test block, 100 windows, each
300 teacher-forced steps and then 84 free-running steps (the prediction fed back as the
next input), scored by NRMSE_84 = sqrt(mean (y(t0 + 84) - s(t0 + 84))^2 / var(s_train)).
The output-feedback loop of Jaeger & Haas (rnnlab's default ``model.loop=feedback``) is not
used: ReservoirPy's Reservoir node has no W_fb, and the input loop is the same network up
to the direct input-to-output weights, which both sides have here.

Both sides get the same series (the arrays rnnlab's task builds), the same
hyperparameters (N units, spectral radius 0.9, 2 % non-zero recurrent weights, leak rate
0.5, input scaling 2, bias scaling 0.2, ridge 1e-10) and, per seed, run:

- ``rnnlab``: :class:`rnnlab.ESN` with the task's state noise U(-1e-7, 1e-7) in training
  (the task's default);
- ``rnnlab, no noise``: the same without noise (ReservoirPy's Reservoir has none);
- ``ReservoirPy, rnnlab's weights``: ``reservoirpy.ESN(Reservoir(W=, Win=, bias=, lr=),
  Ridge(ridge), input_to_readout=True)`` on the very matrices rnnlab drew: any difference
  is the readout solve and the arithmetic, not the reservoir;
- ``ReservoirPy, own weights``: ReservoirPy's own initialisers for the same
  hyperparameters (``mat_gen.uniform`` for W, Win and the bias, the same ranges, W sparse
  with connectivity 0.02 and rescaled to spectral radius 0.9), seeded with the same seed.

Fit time: driving the reservoir over the training series and solving the readout
(rnnlab: :meth:`rnnlab.ESN.statistics` + :meth:`rnnlab.ReadoutStats.solve`; ReservoirPy:
``Model.fit(x, y, warmup=500)``), float64, one thread; evaluation time: the 100 test
windows, as wall-clock and CPU seconds (the machine is shared: CPU time is the steadier).
Sides alternate within each seed; medians over seeds. The script prints; it
asserts no time.

Measured (2026-12-06, AMD EPYC, 1 thread, a shared 2-core machine at load ~20; seeds 0-4;
the table with its discussion is in docs/10.8-esn.md):

    implementation                  NRMSE_84 median (min-max)       fit s (CPU)  eval s (CPU)
    rnnlab                          10^-3.72 (10^-3.82 - 10^-3.44)  18.3 (1.13)  19.8 (1.25)
    rnnlab, no noise                10^-3.70 (10^-3.80 - 10^-3.48)  14.2 (0.87)  20.2 (1.24)
    ReservoirPy, rnnlab's weights   10^-3.75 (10^-3.82 - 10^-3.45)  10.3 (0.66)  26.7 (1.62)
    ReservoirPy, own weights        10^-3.62 (10^-3.63 - 10^-3.52)   5.5 (0.35)  10.4 (0.65)
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")          # numpy/scipy BLAS: one thread too
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rnnlab.config import apply_overrides  # noqa: E402
from rnnlab.tasks.mackey_glass import MackeyGlass  # noqa: E402

try:                                                    # the benchmark-only dependency
    import reservoirpy
    from reservoirpy import mat_gen
    from reservoirpy.nodes import Reservoir, Ridge
except ImportError:
    reservoirpy = None


class Clock:
    """Wall-clock and CPU seconds of a block (CPU time is what a shared machine perturbs
    least: this process is single-threaded)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def task_for(seed: int, size: int, noise: float, extra: tuple[str, ...] = ()) -> MackeyGlass:
    """The mackey-glass task with ``model.loop=input`` (and ``extra`` overrides)."""
    cfg = MackeyGlass.default_config()
    apply_overrides(cfg, [f"train.seed={seed}", f"model.size={size}", "model.loop=input",
                          f"model.noise={noise}", *extra])
    return MackeyGlass(cfg)


def fit_rnnlab(task: MackeyGlass):
    """rnnlab's ESN, its readout fitted as MackeyGlass.fit does; (model, fit seconds)."""
    m, d = task.cfg.model, task.cfg.data
    model = task.build_model()
    with Clock() as clock:
        s = task.series["train"].to(torch.float64).view(-1, 1, 1)     # (T + 1, 1, 1)
        stats, _ = model.statistics(s[:-1], s[1:], washout=d.washout, noise=m.noise,
                                    generator=torch.Generator().manual_seed(task.cfg.train.seed
                                                                            + 1))
        model.set_readout(stats.solve(m.ridge))
    return model, clock


def windows(task: MackeyGlass, split: str = "test") -> np.ndarray:
    """The split's trial windows (trials, warmup + horizon + 1) as numpy."""
    return task._windows(split)[:, :, 0].T.double().numpy()


def reservoirpy_esn(task: MackeyGlass, weights_from=None, seed: int = 0):
    """A ReservoirPy ESN with the task's hyperparameters: rnnlab's very matrices when
    ``weights_from`` is an rnnlab ESN, else ReservoirPy's own initialisers."""
    m = task.cfg.model
    if weights_from is not None:
        res = weights_from.reservoir
        W_in = res.W_in.double().numpy()
        reservoir = Reservoir(units=m.size, W=res.W.double().numpy(), Win=W_in[:, 1:].copy(),
                              bias=W_in[:, 0].copy(), lr=m.leak_rate, seed=seed)
    else:
        uniform = mat_gen.uniform
        reservoir = Reservoir(units=m.size, sr=m.spectral_radius, lr=m.leak_rate,
                              rc_connectivity=1 - m.sparsity, input_connectivity=1.0,
                              W=uniform, Win=functools.partial(uniform, low=-m.scaling,
                                                               high=m.scaling),
                              bias=functools.partial(uniform, low=-m.bias_scaling,
                                                     high=m.bias_scaling),
                              input_scaling=1.0, seed=seed)
    return reservoirpy.ESN(reservoir=reservoir, readout=Ridge(ridge=m.ridge),
                           input_to_readout=True)


def fit_reservoirpy(task: MackeyGlass, esn):
    s = task.series["train"].double().numpy().reshape(-1, 1)           # (T + 1, 1)
    with Clock() as clock:
        esn.fit(s[:-1], s[1:], warmup=task.cfg.data.washout)
    return esn, clock


def nrmse_reservoirpy(task: MackeyGlass, esn) -> tuple[float, float]:
    """NRMSE_84 on the test block, ReservoirPy's run and step; (nrmse, clock)."""
    d = task.cfg.data
    W, H = d.warmup, d.horizon
    last = []
    with Clock() as clock:
        for window in windows(task):                                    # (W + H + 1,)
            esn.reset()
            esn.run(window[:W].reshape(-1, 1))                          # teacher forcing
            u = window[W:W + 1]                                         # true s(W)
            for _ in range(H):                                          # closed loop
                u = np.asarray(esn.step(u)).reshape(1)
            last.append(float(u[0]) - window[W + H])
    return math.sqrt(float(np.mean(np.square(last))) / task.variance), clock


def nrmse_rnnlab(task: MackeyGlass, model) -> tuple[float, float]:
    with Clock() as clock:
        nrmse = task.evaluate(model, "test", "cpu")["nrmse"]
    return nrmse, clock


def log10(x: float) -> str:
    return f"10^{math.log10(x):.2f}" if x > 0 and math.isfinite(x) else str(x)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--size", type=int, default=500, help="reservoir units N")
    args = parser.parse_args(argv)
    if reservoirpy is None:
        print("reservoirpy is not installed: skipping the comparison (it is a benchmark-only "
              "dependency: pip install -c constraints.txt reservoirpy==0.4.2)")
        return 0
    torch.set_num_threads(1)
    rows = {name: {"nrmse": [], "fit": [], "eval": [], "fit_cpu": [], "eval_cpu": []}
            for name in (
        "rnnlab", "rnnlab, no noise", "ReservoirPy, rnnlab's weights",
        "ReservoirPy, own weights")}

    def record(name, nrmse, fit, evaluation):
        row = rows[name]
        row["nrmse"].append(nrmse)
        row["fit"].append(fit.wall)
        row["eval"].append(evaluation.wall)
        row["fit_cpu"].append(fit.cpu)
        row["eval_cpu"].append(evaluation.cpu)
        print(f"  {name:<32} NRMSE_84 {log10(nrmse):>9}   fit {fit.wall:6.2f} s "
              f"(CPU {fit.cpu:5.2f} s)   eval {evaluation.wall:6.2f} s (CPU "
              f"{evaluation.cpu:5.2f} s)", flush=True)

    warm = task_for(args.seeds[0], args.size, 0.0)                 # warm-up, not timed
    fit_reservoirpy(warm, reservoirpy_esn(warm, fit_rnnlab(warm)[0], args.seeds[0]))
    for seed in args.seeds:
        print(f"seed {seed}:")
        task = task_for(seed, args.size, 1e-7)
        model, fit = fit_rnnlab(task)
        nrmse, seconds = nrmse_rnnlab(task, model)
        record("rnnlab", nrmse, fit, seconds)
        quiet = task_for(seed, args.size, 0.0)
        model, fit = fit_rnnlab(quiet)
        esn, fit_rpy = fit_reservoirpy(quiet, reservoirpy_esn(quiet, model, seed))
        nrmse, seconds = nrmse_rnnlab(quiet, model)
        record("rnnlab, no noise", nrmse, fit, seconds)
        nrmse, seconds = nrmse_reservoirpy(quiet, esn)
        record("ReservoirPy, rnnlab's weights", nrmse, fit_rpy, seconds)
        esn, fit_rpy = fit_reservoirpy(quiet, reservoirpy_esn(quiet, None, seed))
        nrmse, seconds = nrmse_reservoirpy(quiet, esn)
        record("ReservoirPy, own weights", nrmse, fit_rpy, seconds)

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"\nMackey-Glass NRMSE_84, N = {args.size}, seeds {args.seeds}; {cpu}, 1 thread; "
          f"torch {torch.__version__}, reservoirpy {reservoirpy.__version__}, "
          f"numpy {np.__version__}\n")
    print("| implementation | NRMSE_84 median (min–max) | fit: wall s (CPU s) | "
          "test windows: wall s (CPU s) |")
    print("|---|---|---|---|")
    med = statistics.median
    for name, r in rows.items():
        print(f"| {name} | {log10(med(r['nrmse']))} "
              f"({log10(min(r['nrmse']))}–{log10(max(r['nrmse']))}) | "
              f"{med(r['fit']):.2f} ({med(r['fit_cpu']):.2f}) | "
              f"{med(r['eval']):.2f} ({med(r['eval_cpu']):.2f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
