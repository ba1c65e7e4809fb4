"""Multiple time scales (book 10.9), demonstrated: success rate over seeds against the
length T of a dependency, per strategy, at one size and one budget; the gradient that
reaches back T steps, per strategy; and Koutník et al.'s (2014) sequence generation, where a
clockwork RNN beats a tanh RNN and an LSTM of about the same number of parameters.

    python benchmarks/timescales.py sweep --task copy --lengths 25 50 100 200 --seeds 0 1 2
    python benchmarks/timescales.py flow --task copy --lengths 100
    python benchmarks/timescales.py generate --signals 0 1 --seeds 0
    python benchmarks/timescales.py pilot --task adding --lengths 100   # one seed

(``PYTHONPATH=src`` or an installed rnnlab; ``--out FILE.json`` collects the figures,
``docs/figures/timescales.py`` draws them; docs/10.9-time-scales.md has the results.)

Every sweep run trains a linear read-out over recurrent layers of H = 32 tanh units (the
strategies change only how the units are connected through time) with the library's
training loop (:func:`rnnlab.training.train`): Adam, batch 64, gradient-norm clipping at 1,
the same steps and learning rate for every strategy, one thread. The tasks
(:mod:`rnnlab.tasks.synthetic`):

- ``copy``: copy memory with one symbol of 8 and a delay of T blanks: the symbol comes at
  t = 0 and must be named at t = T + 1, the go marker's step. Success: test accuracy ≥ 0.99
  on 1000 fixed sequences (memoryless: 1/8).
- ``adding``: the adding problem of length T (Hochreiter & Schmidhuber 1997). Success: test
  MSE < 0.01, 6 % of the mean predictor's 0.167.

The strategies and their cells (``--set model.cell=NAME`` in ``rnnlab train``):

    tanh            ElmanCell, the baseline                                   rnn
    leaky-fixed     leaky units, time constants 2..N steps, fixed            leakyfixN-rnn
    leaky-learned   the same, α learned                                       leakyN-rnn
    skip            + recurrent connections of delay d (book 10.9.1)          skipD-rnn
    delay           length-one connections removed (book 10.9.3): d interleaved chains
                    of delay d, read by a second tanh layer (the chains never mix, so
                    alone the last step would see 1/d of the inputs)          delayD-rnn, rnn
    tanh-2layer     the baseline for ``delay``: two tanh layers               rnn, rnn
    clockwork       Koutník et al. 2014, periods 1, 2, ..., 128               clockwork
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from rnnlab.bench import machine
from rnnlab.cells import ClockworkCell, LSTMCell, make_cell
from rnnlab.diagnose import gradient_flow
from rnnlab.layers import Recurrent, Stack
from rnnlab.tasks.synthetic import Adding, Copy

SUCCESS_MSE = 0.01
SUCCESS_ACCURACY = 0.99
MEAN_PREDICTOR_MSE = 0.167        # Var(sum of two U[0, 1]) = 1/6


def cell_names(strategy: str, d: int, longest: int, chains: int = 5) -> list[str]:
    """The cell name of each layer of ``strategy`` (see the module docstring)."""
    return {"tanh": ["rnn"], "leaky-fixed": [f"leakyfix{longest}-rnn"],
            "leaky-learned": [f"leaky{longest}-rnn"], "skip": [f"skip{d}-rnn"],
            "delay": [f"delay{chains}-rnn", "rnn"], "tanh-2layer": ["rnn", "rnn"],
            "clockwork": ["clockwork"], "lstm": ["lstm"]}[strategy]


STRATEGIES = ("tanh", "leaky-fixed", "leaky-learned", "skip", "delay", "tanh-2layer", "clockwork")


class Readout(nn.Module):
    """``xs (T, B, I) -> layers -> Linear -> (T, B, O)``, the tasks' model."""

    def __init__(self, names: list[str], inputs: int, hidden: int, outputs: int):
        super().__init__()
        layers, size = [], inputs
        for name in names:
            layers.append(Recurrent(make_cell(name, size, hidden)))
            size = hidden
        self.rnn = Stack(layers)
        self.out = nn.Linear(hidden, outputs)

    def forward(self, xs, state=None):
        ys, state = self.rnn(xs, state)
        return self.out(ys), state


class _Adding(Adding):
    """The adding task with the model of one strategy."""

    names: list[str] = ["rnn"]

    def build_model(self) -> nn.Module:
        return Readout(self.names, 2, self.cfg.model.hidden, 1)


class _Copy(Copy):
    """The copy-memory task with the model of one strategy; ``offset`` blanks before the
    symbols move them from t = 0 (where every clockwork module updates) to t = offset."""

    names: list[str] = ["rnn"]
    offset: int = 0

    def _draw(self, generator, batch_size):
        tokens, targets = super()._draw(generator, batch_size)
        blank = torch.full((self.offset, batch_size), self.cfg.data.alphabet)
        return torch.cat([blank, tokens]), targets

    def build_model(self) -> nn.Module:
        d = self.cfg.data
        return Readout(self.names, d.alphabet + 2, self.cfg.model.hidden, d.alphabet)


def run(strategy: str, length: int, seed: int, *, task: str = "adding", hidden: int = 32,
        steps: int = 1500, lr: float = 1e-3, batch_size: int = 64, d: int = 10,
        longest: int = 1000, eval_every: int = 100, valid_size: int = 500,
        symbols: int = 1, chains: int = 5, offset: int = 0) -> dict:
    """Train one strategy on the adding problem of length ``length`` (``task="adding"``) or
    on copy memory with ``symbols`` symbols and a delay of ``length`` steps, after
    ``offset`` blanks; its figures."""
    torch.set_num_threads(1)
    kind = {"adding": _Adding, "copy": _Copy}[task]
    cfg = kind.default_config()
    cfg.model.hidden = hidden
    cfg.data.valid_size = valid_size
    if task == "adding":
        cfg.data.length = length
    else:
        cfg.data.delay, cfg.data.symbols = length, symbols
        kind = type("_Copy", (_Copy,), {"offset": offset})
    t = cfg.train
    t.steps, t.lr, t.batch_size, t.seed, t.eval_every = steps, lr, batch_size, seed, eval_every
    t.checkpoint_every, t.keep_checkpoints, t.threads, t.device = steps, False, 1, "cpu"
    job = kind(cfg)
    job.names = cell_names(strategy, d, longest, chains)
    curve: list[tuple[int, float]] = []

    def log(line: str) -> None:
        if line.startswith("step"):
            parts = line.split("|")
            curve.append((int(parts[0].split()[1]), float(parts[1].split()[2])))

    start = time.perf_counter()
    model, _ = job.train(None, log=log, progress=False)
    wall = time.perf_counter() - start
    test = job.evaluate(model, "test", torch.device("cpu"))[job.main_metric]
    success = test < SUCCESS_MSE if task == "adding" else test >= SUCCESS_ACCURACY
    return {"task": kind.name + (f"+{offset}" if offset else ""), "strategy": strategy,
            "T": length, "seed": seed,
            "hidden": hidden, "steps": steps, "lr": lr, "batch_size": batch_size,
            "cells": job.names,
            "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "test": test, "success": success, "valid_curve": curve, "wall_s": round(wall, 1)}


# --- Koutník et al. 2014, section 4.1: sequence generation ---------------------------------


def audio_signal(seed: int, length: int = 320, rate: float = 44100.0) -> torch.Tensor:
    """An audio-like target (length,) in [-1, 1]: ``length`` samples at ``rate`` Hz (7 ms at
    320 samples, as Koutník et al.'s music fragments) of two notes with five harmonics each,
    pitches, amplitudes and phases drawn from ``seed``. Their sequences were cut from a
    music recording that is not distributed; this one is generated."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float64) / rate
    y = torch.zeros(length, dtype=torch.float64)
    for _ in range(2):
        semitone = int(torch.randint(-12, 13, (1,), generator=g))
        f0 = 220.0 * 2 ** (semitone / 12)                    # A3 +- an octave
        for k in range(1, 6):
            amp = float(torch.rand(1, generator=g)) / k
            phase = 2 * torch.pi * float(torch.rand(1, generator=g))
            y += amp * torch.sin(2 * torch.pi * k * f0 * t + phase)
    y = 2 * (y - y.min()) / (y.max() - y.min()) - 1
    return y.float()


#: hidden units giving about 850-900 parameters (Koutník et al.'s largest size), and the
#: clockwork periods: 9 modules, 1, 2, 4, ..., 256 as in the paper
GEN_HIDDEN = {"tanh": 28, "clockwork": 36, "lstm": 13}
GEN_PERIODS = [2 ** k for k in range(9)]


class Generator(nn.Module):
    """No input (one channel of zeros), one hidden layer, one linear output."""

    def __init__(self, kind: str, hidden: int, gain: float | None = None):
        super().__init__()
        if kind == "clockwork":
            cell = ClockworkCell(1, hidden, GEN_PERIODS)
        elif kind == "lstm":
            cell = LSTMCell(1, hidden, forget_bias=5.0)      # the paper's forget-gate bias
        else:
            cell = make_cell("rnn", 1, hidden)
        self.rnn, self.out = Recurrent(cell), nn.Linear(hidden, 1)
        if gain is not None:                    # tanh only: W_hh orthogonal x gain
            if kind != "tanh":
                raise ValueError(f"gain applies to the tanh RNN only, not {kind!r}")
            with torch.no_grad():
                nn.init.orthogonal_(cell.W_hh, gain=gain)

    def forward(self, length: int) -> torch.Tensor:
        ys, _ = self.rnn(torch.zeros(length, 1, 1))
        return self.out(ys)[:, 0, 0]                          # (T,)

    def parameters_used(self) -> int:
        """Trainable parameters, less the clockwork's masked recurrent weights."""
        n = sum(p.numel() for p in self.parameters() if p.requires_grad)
        mask = getattr(self.rnn.cell, "mask", None)
        return n - (int((mask == 0).sum()) if mask is not None else 0)


def generate(kind: str, signal_seed: int, seed: int, *, steps: int = 2000,
             lr: float = 3e-3, gain: float | None = None) -> dict:
    """Fit ``kind`` to generate :func:`audio_signal` (``signal_seed``) from no input; NMSE."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    target = audio_signal(signal_seed)
    model = Generator(kind, GEN_HIDDEN[kind], gain)
    optimizer = torch.optim.Adam(model.parameters(), lr)
    var = float(target.var(unbiased=False))
    curve, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        loss = nn.functional.mse_loss(model(len(target)), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 100 == 0 or step == 1:
            curve.append((step, loss.item() / var))
    with torch.no_grad():
        out = model(len(target))
    nmse = float(nn.functional.mse_loss(out, target)) / var
    return {"kind": kind, "signal": signal_seed, "seed": seed, "hidden": GEN_HIDDEN[kind],
            "params": model.parameters_used(), "steps": steps, "lr": lr, "gain": gain,
            "nmse": nmse,
            "curve": curve, "output": [round(float(v), 4) for v in out],
            "target": [round(float(v), 4) for v in target],
            "wall_s": round(time.perf_counter() - start, 1)}


def _save(path: Path | None, results: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1) + "\n")


def _load(path: Path | None, key: str) -> dict:
    results = json.loads(path.read_text()) if path is not None and path.exists() else {}
    results["machine"] = run_info()
    results.setdefault(key, [])
    return results


def _generate_all(a) -> int:
    results = _load(a.out, "generation")
    for signal in a.signals:
        for seed in a.seeds:
            for kind in a.kinds:
                r = generate(kind, signal, seed, steps=a.steps, lr=a.lr, gain=a.gain)
                print(f"generate {kind:10} signal={signal} seed={seed} params={r['params']} "
                      f"NMSE {r['nmse']:.4f} ({r['wall_s']:.0f} s)", flush=True)
                results["generation"].append(r)
                _save(a.out, results)
    return 0


def _flow_all(a) -> int:
    results = _load(a.out, "flow")
    for length in a.lengths:
        for strategy in a.strategies:
            norms = flow(strategy, length, task=a.task, hidden=a.hidden, d=a.delay,
                         longest=a.longest, symbols=a.symbols, chains=a.chains)
            results["flow"].append({"task": a.task, "strategy": strategy, "T": length,
                                    "hidden": a.hidden, "norms": norms})
            print(f"flow {strategy:14} T={length}: |dL/dh_1| / |dL/dh_(T-1)| = "
                  f"{norms[0] / norms[-2]:.3g}", flush=True)
            _save(a.out, results)
    return 0


def flow(strategy: str, length: int, *, task: str = "adding", hidden: int = 32, d: int = 10,
         longest: int = 1000, symbols: int = 1, seed: int = 0, batch: int = 64,
         chains: int = 5) -> list[float]:
    """‖∂L/∂h_t‖, t = 1..T, of the untrained model of ``strategy`` (seed ``seed``) on one
    batch, by :func:`rnnlab.diagnose.gradient_flow` (what ``rnnlab diagnose`` plots), for the
    first recurrent layer."""
    torch.set_num_threads(1)
    kind = {"adding": _Adding, "copy": _Copy}[task]
    cfg = kind.default_config()
    cfg.model.hidden, cfg.data.valid_size, cfg.data.test_size = hidden, 1, 1
    if task == "adding":
        cfg.data.length = length
    else:
        cfg.data.delay, cfg.data.symbols = length, symbols
    job = kind(cfg)
    job.names = cell_names(strategy, d, longest, chains)
    torch.manual_seed(seed)
    model = job.build_model()
    data = job.batch(torch.Generator().manual_seed(seed), batch, "cpu")
    norms = gradient_flow(model, lambda: job.loss(model, data)[0])
    return [float(f"{n:.4g}") for n in next(iter(norms.values()))]




def run_info() -> dict:
    """The machine of the results: CPU model (rnnlab.bench.machine), 1 thread per run."""
    return {"cpu": machine()["cpu"], "threads": 1, "torch": torch.__version__}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["sweep", "pilot", "generate", "flow"])
    p.add_argument("--task", choices=["adding", "copy"], default="adding")
    p.add_argument("--symbols", type=int, default=1, help="copy: symbols to recall")
    p.add_argument("--offset", type=int, default=0, help="copy: blanks before the symbols")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    p.add_argument("--lengths", nargs="+", type=int, default=[50, 100, 200, 400])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--delay", type=int, default=10, help="skip: the delay d")
    p.add_argument("--chains", type=int, default=5, help="delay: the delay (chains) d")
    p.add_argument("--longest", type=int, default=1000)
    p.add_argument("--out", type=Path, default=None, help="JSON to write (appends runs)")
    p.add_argument("--kinds", nargs="+", default=list(GEN_HIDDEN), help="generate: models")
    p.add_argument("--gain", type=float, default=None,
                   help="generate, tanh only: W_hh orthogonal with this gain")
    p.add_argument("--signals", nargs="+", type=int, default=[0, 1, 2],
                   help="generate: seeds of the target signals")
    a = p.parse_args(argv)
    if a.mode == "generate":
        return _generate_all(a)
    if a.mode == "flow":
        return _flow_all(a)
    if a.mode == "pilot":
        a.seeds = a.seeds[:1]
    results = _load(a.out, "runs")
    for seed in a.seeds:
        for length in a.lengths:
            for strategy in a.strategies:
                r = run(strategy, length, seed, task=a.task, hidden=a.hidden, steps=a.steps,
                        lr=a.lr, d=a.delay, longest=a.longest, symbols=a.symbols,
                        chains=a.chains, offset=a.offset)
                print(f"{a.task} {strategy:14} T={length:4} seed={seed} lr={a.lr:g} test "
                      f"{r['test']:.4f} {'ok' if r['success'] else '--'} "
                      f"({r['wall_s']:.0f} s)", flush=True)
                results["runs"].append(r)
                _save(a.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
