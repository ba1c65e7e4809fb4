"""Training speed of the output-to-hidden recurrence (book Fig. 10.4,
:class:`rnnlab.OutputFeedbackCell`, output size O = H), free-running against teacher forcing
(protocol: benchmarks/README.md).

    .venv/bin/python benchmarks/feedback.py [--threads 1] [--repeats 7] [--configs small]

For each feedback function (identity, sigmoid, softmax), ms per training step (forward +
backward, random upstream gradient on all outputs o(t), float32) of:

- loop:   free-running, autograd through the reference step (``rnnlab.unroll``);
- fused:  free-running, ``rnnlab.Recurrent`` -> :func:`rnnlab.kernels.feedback.feedback_kernel`;
- tf:     teacher forcing, :meth:`OutputFeedbackCell.teacher_forced` (three GEMMs over T·B
          rows under autograd; random targets in the fed-back space, one-hot for softmax);
- tf-fn:  the same as one autograd Function with the backward written out
          (:func:`rnnlab.kernels.feedback.teacher_forced_kernel`).

Checks first (values and every gradient): fused vs loop, tf-fn vs tf. Medians of the
repeats after a warm-up, implementations alternated (rnnlab.bench.time_alternating), all in
one process. Ratios: loop / fused, fused / tf (what teacher forcing saves), tf / tf-fn.
This script prints; it asserts no time.

Measured (``.venv/bin/python benchmarks/feedback.py --configs small
medium long``: 1 thread, 2-core shared machine, torch 2.13 CPU, 2026-11-22), ms per step:

    config  feedback   loop   fused    tf   tf-fn  loop/fused  fused/tf  tf/tf-fn
    small   identity   30.7   17.0   14.9   12.0    1.81x      1.14x     1.23x
    small   sigmoid    33.0   19.6   15.3   12.3    1.68x      1.28x     1.25x
    small   softmax    33.3   20.1   16.0   12.3    1.66x      1.26x     1.30x
    medium  identity  244.4  198.9  200.9  173.9    1.23x      0.99x     1.16x
    medium  sigmoid   256.2  214.5  188.0  170.4    1.19x      1.14x     1.10x
    medium  softmax   260.1  211.5  203.4  178.8    1.23x      1.04x     1.14x
    long    identity  179.4   48.2   24.9   20.0    3.72x      1.94x     1.25x
    long    sigmoid   182.3   50.6   25.2   19.7    3.61x      2.00x     1.28x
    long    softmax   187.1   69.0   25.0   19.9    2.71x      2.76x     1.25x

The hand-written teacher-forcing Function (tf-fn) beats autograd in every row, so it is
the one kept. Teacher forcing saves little over the fused free run at medium size (both
are the same GEMMs; the free run's are per step) and 2-2.8x at T = 1000, B = 16.
"""

from __future__ import annotations

import argparse
import platform

import torch

import rnnlab
from rnnlab.bench import CONFIGS, compare, time_alternating
from rnnlab.kernels.feedback import FEEDBACKS, teacher_forced_kernel

IMPLS = ("loop", "fused", "tf", "tf-fn")


def make(feedback: str, cfg, seed: int = 0):
    torch.manual_seed(seed)
    cell = rnnlab.OutputFeedbackCell(cfg.I, cfg.H, cfg.H, feedback=feedback)
    xs = torch.randn(cfg.T, cfg.B, cfg.I)
    if feedback == "softmax":
        targets = torch.nn.functional.one_hot(torch.randint(cfg.H, (cfg.T, cfg.B)),
                                              cfg.H).float()
    elif feedback == "sigmoid":
        targets = torch.rand(cfg.T, cfg.B, cfg.H)
    else:
        targets = torch.randn(cfg.T, cfg.B, cfg.H)
    d_os = torch.randn(cfg.T, cfg.B, cfg.H)
    runs = {
        "loop": lambda x: rnnlab.Recurrent(cell, use_kernel=False)(x)[0],
        "fused": lambda x: rnnlab.Recurrent(cell)(x)[0],
        "tf": lambda x: cell.teacher_forced(x, targets),
        "tf-fn": lambda x: teacher_forced_kernel(cell, x, targets),
    }
    return cell, xs, d_os, runs


def grads(cell, run, xs, d_os) -> dict:
    x = xs.clone().requires_grad_(True)
    cell.zero_grad(set_to_none=True)
    os = run(x)
    os.backward(d_os)
    out = {"output": os.detach(), "d_input": x.grad}
    out.update({f"d_{n}": p.grad for n, p in cell.named_parameters()})
    return out


def step(cell, run, xs, d_os):
    x = xs.clone().requires_grad_(True)

    def train():
        cell.zero_grad(set_to_none=True)
        x.grad = None
        run(x).backward(d_os)
    return train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--configs", nargs="+", default=["small"],
                    choices=[c for c, v in CONFIGS.items() if v.mode == "train"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} thread(s), medians of {args.repeats}\n")
    print("| config | feedback | loop | fused | tf | tf-fn | loop / fused | fused / tf | "
          "tf / tf-fn | checks |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.configs:
        cfg = CONFIGS[name]
        for feedback in FEEDBACKS:
            cell, xs, d_os, runs = make(feedback, cfg)
            c1 = compare(grads(cell, runs["fused"], xs, d_os), grads(cell, runs["loop"], xs, d_os))
            c2 = compare(grads(cell, runs["tf-fn"], xs, d_os), grads(cell, runs["tf"], xs, d_os))
            ok = "PASS" if c1["ok"] and c2["ok"] else "FAIL"
            checks = (f"{ok} (fused {c1['worst_rel_err']:.1e}, tf-fn {c2['worst_rel_err']:.1e})")
            ms = {k: 1e3 * v for k, v in time_alternating(
                {k: step(cell, runs[k], xs, d_os) for k in IMPLS}, args.repeats).items()}
            print(f"| {name} (B={cfg.B}, T={cfg.T}, I={cfg.I}, H=O={cfg.H}) | {feedback} | "
                  + " | ".join(f"{ms[k]:.2f} ms" for k in IMPLS)
                  + f" | {ms['loop'] / ms['fused']:.2f}× | {ms['fused'] / ms['tf']:.2f}× | "
                  f"{ms['tf'] / ms['tf-fn']:.2f}× | {checks} |", flush=True)


if __name__ == "__main__":
    main()
