"""rnnlab against TorchRL's GRU at TorchRL's CPU configuration (B 64, T 32, I 32, H 128),
one training step (forward + backward, random upstream gradient, float32), side by side in
one process, implementations timed in turn, medians (protocol: benchmarks/README.md).

TorchRL is not a dependency of rnnlab: install it beside torch 2.13 in a separate
environment (``pip install torchrl -c constraints.txt`` leaves torch as it is) and run

    OMP_NUM_THREADS=1 python benchmarks/torchrl_gru.py [--repeats 7]

Rows: ``torchrl.modules.GRU`` (TorchRL's GRU written in Python, one step at a time, the
route it takes for its own recurrent variants), ``torch.nn.GRU`` (what
``torchrl.modules.GRUModule`` runs by default), rnnlab's ``HandGRU`` custom cell (generic
path), the same cell through the autograd loop, and rnnlab's ``gru`` kernel. All share one
set of weights; outputs and every gradient are checked against torch.nn.GRU in float64
first.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import torch
from torchrl.modules import GRU as TorchRLGRU

import rnnlab
from rnnlab import fast
from rnnlab.bench import machine
from rnnlab.cells import GRUCell
from rnnlab.cells.examples import HandGRU

B, T, I, H = 64, 32, 32, 128
NAMES = {"W_xh": "weight_ih_l0", "W_hh": "weight_hh_l0", "b_xh": "bias_ih_l0",
         "b_hh": "bias_hh_l0"}


class TimeMajor(torch.nn.Module):
    """A batch-first module as (T, B, I) -> (T, B, H)."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, xs):
        return self.module(xs.transpose(0, 1))[0].transpose(0, 1)


class Layer(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, xs):
        return self.layer(xs)[0]


def build(dtype=torch.float32):
    torch.manual_seed(0)
    ref = torch.nn.GRU(I, H, batch_first=True)
    state = ref.state_dict()
    trl = TorchRLGRU(I, H, batch_first=True)
    trl.load_state_dict(state)
    hand, kernel = HandGRU(I, H), GRUCell(I, H)
    for cell in (hand, kernel):
        cell.load_state_dict({k: state[v] for k, v in NAMES.items()})
    models = {"torchrl.modules.GRU": TimeMajor(trl), "torch.nn.GRU": TimeMajor(ref),
              "rnnlab generic (HandGRU)": Layer(rnnlab.Recurrent(hand)),
              "autograd loop (HandGRU)": Layer(rnnlab.Recurrent(copy.deepcopy(hand),
                                                                use_kernel=False)),
              "rnnlab gru kernel": Layer(rnnlab.Recurrent(kernel))}
    return {k: m.to(dtype) for k, m in models.items()}


def grads(model, xs, dys):
    x = xs.clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    ys = model(x)
    ys.backward(dys)
    return [ys.detach(), x.grad, *(p.grad for p in model.parameters())]


def check() -> dict[str, float]:
    models = build(torch.float64)
    xs = torch.randn(T, B, I, dtype=torch.float64)
    dys = torch.randn(T, B, H, dtype=torch.float64)
    ref = grads(models["torch.nn.GRU"], xs, dys)
    worst = {}
    for name, model in models.items():
        ours = grads(model, xs, dys)
        worst[name] = max(((a - b).abs().max() / b.abs().max()).item()
                          for a, b in zip(ours, ref))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    # the generic path on every training call (checks)
    fast.ENABLED, fast.WARMUP, fast.MIN_STEPS = True, 0, 0
    worst = check()
    models = build()
    xs, dys = torch.randn(T, B, I), torch.randn(T, B, H)
    x = xs.clone().requires_grad_(True)

    def step(model):
        model.zero_grad(set_to_none=True)
        model(x).backward(dys)

    first = {}
    for name, model in models.items():
        t0 = time.perf_counter()
        step(model)
        first[name] = time.perf_counter() - t0
    samples = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            t0 = time.perf_counter()
            for _ in range(5):
                step(model)
            samples[name].append((time.perf_counter() - t0) / 5)
    ms = {name: 1e3 * statistics.median(s) for name, s in samples.items()}
    info = machine()
    import torchrl
    print(f"CPU {info['cpu']}, 1 thread (machine shared), torch {torch.__version__}, "
          f"torchrl {torchrl.__version__}, Python {platform.python_version()}; "
          f"B {B}, T {T}, I {I}, H {H}; medians of {args.repeats} x 5 training steps\n")
    print("| implementation | ms / training step | vs torchrl.modules.GRU | vs torch.nn.GRU "
          "| first call s | correct (float64 vs torch.nn.GRU, worst rel. err) |")
    print("|---|---|---|---|---|---|")
    for name in models:
        ok = "PASS" if worst[name] <= 1e-9 else "FAIL"
        print(f"| {name} | {ms[name]:.2f} | {ms[name] / ms['torchrl.modules.GRU']:.2f}× | "
              f"{ms[name] / ms['torch.nn.GRU']:.2f}× | {first[name]:.2f} | "
              f"{ok} ({worst[name]:.1e}) |")


if __name__ == "__main__":
    main()
