"""Speed of the linear recurrence h(t) = a(t) ⊙ h(t-1) + b(t) (rnnlab.kernels.scan):
sequential loop vs chunked parallel scan vs the automatic choice, and the minGRU layer
against the autograd loop over its reference step (protocol: benchmarks/README.md).

    .venv/bin/python benchmarks/scan.py [--threads 1] [--repeats 7] [--steps 4096]
        [--sweep 256 512 1024 2048 4096 8192]

1. Checks first: both scan methods against a plain loop (states and gradients), and the
   minGRU / minLSTM kernel against ``rnnlab.unroll`` over the reference step.
2. Table 1, minGRU layer (``rnnlab.Recurrent(MinGRUCell(32, H))``, T steps, channels B·H):
   forward and training step (forward + backward, random upstream gradient on all outputs)
   with the scan forced to each method, auto, and ``rnnlab.unroll`` (fewer repeats).
3. Table 2, the scan alone over a range of channel counts: where the chunked scan stops
   winning (the crossover encoded in ``rnnlab.kernels.scan.choose_method``).

Medians of the repeats after one warm-up, implementations alternated; ratios are to the
sequential loop in the same run. All in one process (no activation-memory column).
This script prints; it asserts no time.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import rnnlab
from rnnlab.cells.linear import MinGRUCell, MinLSTMCell
from rnnlab.kernels import scan


def naive_scan(a, b, h0):
    hs, h = [], h0
    for t in range(a.shape[0]):
        h = a[t] * h + b[t]
        hs.append(h)
    return torch.stack(hs)


def check() -> None:
    g = torch.Generator().manual_seed(0)
    for T, reverse in ((1, False), (50, False), (97, True)):
        a = torch.rand(T, 3, 5, dtype=torch.float64, generator=g).requires_grad_()
        b = torch.randn(T, 3, 5, dtype=torch.float64, generator=g, requires_grad=True)
        h0 = torch.randn(3, 5, dtype=torch.float64, generator=g, requires_grad=True)
        up = torch.randn(T, 3, 5, dtype=torch.float64, generator=g)
        flip = (lambda x: x.flip(0)) if reverse else (lambda x: x)
        ref = flip(naive_scan(flip(a), flip(b), h0))
        expected = [ref, *torch.autograd.grad((ref * up).sum(), [a, b, h0])]
        for method in ("sequential", "chunked"):
            hs = scan.linear_scan(a, b, h0, reverse, method)
            got = [hs, *torch.autograd.grad((hs * up).sum(), [a, b, h0])]
            for x, y in zip(got, expected):
                torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    lengths = torch.tensor([40, 0, 17])
    for make in (MinGRUCell, MinLSTMCell):
        cell = make(4, 6, dtype=torch.float64)
        xs = torch.randn(40, 3, 4, dtype=torch.float64, requires_grad=True)
        outs = []
        for use_kernel in (True, False):
            ys, h = rnnlab.Recurrent(cell, reverse=True, use_kernel=use_kernel)(
                xs, lengths=lengths)
            outs.append([ys, h, *torch.autograd.grad(ys.sum() + h.sum(), [xs, cell.W_xh])])
        for x, y in zip(*outs):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    print("checks passed: both scan methods == loop; minGRU/minLSTM kernel == unroll "
          "(values and gradients, float64)\n")


def median_ms(fns: dict, repeats: int) -> dict:
    """Median time of each callable in ms, alternating them, after one warm-up each."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(ts) for name, ts in times.items()}


def forced(method: str):
    """Run a callable with linear_scan's automatic choice forced to ``method``."""
    def wrap(fn):
        def run():
            saved = scan.choose_method
            if method != "auto":
                scan.choose_method = lambda T, channels: method
            try:
                fn()
            finally:
                scan.choose_method = saved
        return run
    return wrap


def layer_rows(T: int, B: int, H: int, repeats: int) -> None:
    torch.manual_seed(0)
    layer = rnnlab.Recurrent(MinGRUCell(32, H))
    reference = rnnlab.Recurrent(layer.cell, use_kernel=False)
    xs = torch.randn(T, B, 32)
    up = torch.randn(T, B, H)
    picks = scan.choose_method(T, B * H)

    def forward(net):
        with torch.no_grad():
            net(xs)

    def train(net):
        ys, _ = net(xs)
        (ys * up).sum().backward()

    for mode, step in (("forward", forward), ("train", train)):
        fns = {m: forced(m)(lambda step=step: step(layer))
               for m in ("sequential", "chunked", "auto")}
        ms = median_ms(fns, repeats)
        ms["unroll"] = median_ms({"unroll": lambda step=step: step(reference)},
                                 max(3, repeats // 2))["unroll"]
        print(f"| {B}×{H} = {B * H} | {mode} | {ms['sequential']:.2f} | {ms['chunked']:.2f} "
              f"| {ms['auto']:.2f} ({picks}) | {ms['unroll']:.1f} "
              f"| {ms['sequential'] / ms['chunked']:.2f}× "
              f"| {ms['sequential'] / ms['auto']:.2f}× | {ms['unroll'] / ms['auto']:.1f}× |",
              flush=True)


def layer_table(T: int, repeats: int) -> None:
    print(f"## minGRU layer, T = {T}, I = 32, training = forward + backward\n")
    print("| channels (B×H) | mode | sequential ms | chunked ms | auto ms (picks) | "
          "unroll ms | seq/chunked | seq/auto | unroll/auto |")
    print("|---|---|---|---|---|---|---|---|---|")
    for B, H in ((4, 64), (16, 256)):
        layer_rows(T, B, H, repeats)
    print()


def sweep_row(T: int, C: int, repeats: int) -> None:
    torch.manual_seed(0)
    a = (0.5 + 0.5 * torch.rand(T, 1, C)).requires_grad_()
    b = torch.randn(T, 1, C, requires_grad=True)
    h0 = torch.zeros(1, C, requires_grad=True)
    up = torch.randn(T, 1, C)

    def fwd(method):
        with torch.no_grad():
            scan.linear_scan(a, b, h0, method=method)

    def train(method):
        (scan.linear_scan(a, b, h0, method=method) * up).sum().backward()

    f = median_ms({m: (lambda m=m: fwd(m)) for m in ("sequential", "chunked")}, repeats)
    t = median_ms({m: (lambda m=m: train(m)) for m in ("sequential", "chunked")}, repeats)
    print(f"| {C} | {f['sequential']:.2f} | {f['chunked']:.2f} "
          f"| {f['sequential'] / f['chunked']:.2f}× | {t['sequential']:.2f} "
          f"| {t['chunked']:.2f} | {t['sequential'] / t['chunked']:.2f}× "
          f"| {scan.choose_method(T, C)} |", flush=True)


def sweep_table(T: int, channels: list[int], repeats: int) -> None:
    print(f"## The scan alone, T = {T}, shape (T, 1, channels), float32\n")
    print("| channels | fwd seq ms | fwd chunked ms | seq/chunked | train seq ms "
          "| train chunked ms | seq/chunked | auto picks |")
    print("|---|---|---|---|---|---|---|---|")
    for C in channels:
        sweep_row(T, C, repeats)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=4096)
    parser.add_argument("--sweep", type=int, nargs="*",
                        default=[256, 512, 1024, 2048, 4096, 8192])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} thread(s), {args.repeats} repeats, chunk length L = "
          f"{scan.chunk_length(args.steps)}\n")
    check()
    layer_table(args.steps, args.repeats)
    if args.sweep:
        sweep_table(args.steps, args.sweep, args.repeats)


if __name__ == "__main__":
    main()
