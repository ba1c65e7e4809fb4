"""Pascanu, Mikolov & Bengio 2013, section 4.1.1, on rnnlab: the temporal order problem
trained with SGD and gradient clipping (SGD-C) against SGD, clipping and the regulariser Ω
(SGD-CR), several seeds each; book section 10.11.

    PYTHONPATH=src python benchmarks/pascanu.py --length 50 --seeds 0 1 2 3 4 \\
        --max-steps 20000 --jobs 2 --out docs/results/pascanu.json

Per run (one process, one thread): the task ``temporal-order`` with its defaults (the
paper's: 50 tanh units, ``basic`` init, minibatches of 20, lr 0.01 without momentum, clip
at 1), ``train.pascanu`` = 0 (SGD-C) or the Ω weight (SGD-CR). Every ``--eval-every``
steps the error on the fixed 10 000-sequence valid set; a run stops as *solved* when it is
under 1 % (the paper's criterion), else at ``--max-steps``. Every ``--ratio-every`` steps,
in both arms, the mean per-step ratio r_k = ‖(∂L/∂h_{k+1}) ∂h_{k+1}/∂h_k‖ / ‖∂L/∂h_{k+1}‖
that Ω pushes towards 1, on a fixed probe batch of 100 sequences.

Writes (merges into ``--out``: a rerun of the same length, seed, weight and init replaces
it) a JSON of every run's curves (``docs/figures/pascanu.py`` draws it) and prints the
success rates. The training loop is the library's (``rnnlab.training.train``'s steps, written
out here only to stop at success and to probe the ratio).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from rnnlab.bench import machine


def run(length: int, seed: int, weight: float, init: str, max_steps: int, eval_every: int,
        ratio_every: int, lr: float) -> dict:
    torch.set_num_threads(1)
    from rnnlab.tasks import get_task
    from rnnlab.trace import tracing
    from rnnlab.training.optim import clip_gradients, make_optimizer
    from rnnlab.training.regularizers import step_ratios, with_pascanu

    cls = get_task("temporal-order")
    cfg = cls.default_config()
    cfg.data.length, cfg.model.init, cfg.train.pascanu, cfg.train.lr = length, init, weight, lr
    cfg.train.seed = seed
    task = cls(cfg)
    torch.manual_seed(seed)
    model = task.build_model()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(model, cfg.train)
    loss_of = with_pascanu(task.loss, weight)
    batches = torch.Generator().manual_seed(seed)
    probe = task.batch(torch.Generator().manual_seed(10_000 + seed), 100, "cpu")

    def ratio() -> float:
        with tracing(model) as traces:
            loss, _ = task.loss(model, probe)
        r = torch.cat([x.detach() for x in step_ratios(loss, traces)])
        return r.mean().item() if r.numel() else float("nan")

    curve = {"step": [], "error": [], "loss": [], "grad_norm": []}
    ratios = {"step": [], "ratio": []}
    window, norms, solved_at, start = [], [], None, time.perf_counter()
    model.train()
    for step in range(1, max_steps + 1):
        if step == 1 or step % ratio_every == 0:
            ratios["step"].append(step - 1)
            ratios["ratio"].append(ratio())
        loss, objective, _ = loss_of(model, task.batch(batches, cfg.train.batch_size, "cpu"))
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        norms.append(clip_gradients(params, cfg.train.clip_norm, cfg.train.clip_value))
        optimizer.step()
        window.append(loss.item())
        if not math.isfinite(window[-1]):
            break
        if step % eval_every == 0 or step == max_steps:
            model.eval()
            error = task.evaluate(model, "valid", "cpu")["error"]
            model.train()
            for key, value in (("step", step), ("error", error),
                               ("loss", sum(window) / len(window)),
                               ("grad_norm", sorted(norms)[len(norms) // 2])):
                curve[key].append(value)
            window, norms = [], []
            print(f"  T={length} seed={seed} Ω={weight} step {step}: error {error:.3f}, "
                  f"loss {curve['loss'][-1]:.3f}, ratio {ratios['ratio'][-1]:.3f}, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
            if error < 0.01:
                solved_at = step
                break
    ratios["step"].append(step)
    ratios["ratio"].append(ratio())
    return {"length": length, "seed": seed, "pascanu": weight, "init": init,
            "solved": solved_at is not None, "steps": step, "solved_at": solved_at,
            "wall_s": round(time.perf_counter() - start, 1), "curve": curve, "ratio": ratios}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=50)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 2.0],
                    help="Ω weights; 0 is SGD-C")
    ap.add_argument("--init", default="basic", choices=["basic", "smart", "default"])
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--max-steps", type=int, default=20000)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--ratio-every", type=int, default=500)
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel, one thread each")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    jobs = [(args.length, s, w, args.init, args.max_steps, args.eval_every, args.ratio_every,
             args.lr) for s in args.seeds for w in args.weights]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = []
        for result in pool.map(run, *zip(*jobs)):
            runs.append(result)
            print(f"T={result['length']} seed={result['seed']} Ω={result['pascanu']}: "
                  f"{'solved at ' + str(result['solved_at']) if result['solved'] else 'not solved'}"
                  f" ({result['steps']} steps, final error {result['curve']['error'][-1]:.3f},"
                  f" ratio {result['ratio']['ratio'][0]:.3f} -> "
                  f"{result['ratio']['ratio'][-1]:.3f}, {result['wall_s']} s)", flush=True)
    for w in args.weights:
        arm = [r for r in runs if r["pascanu"] == w]
        print(f"{'SGD-CR' if w else 'SGD-C'} (Ω weight {w}): {sum(r['solved'] for r in arm)}"
              f"/{len(arm)} solved")
    if args.out is not None:
        key = ("length", "seed", "pascanu", "init")
        if args.out.is_file():                     # merge: a rerun replaces the same run
            new = {tuple(r[k] for k in key) for r in runs}
            old = json.loads(args.out.read_text())
            runs = [r for r in old["runs"] if tuple(r[k] for k in key) not in new] + runs
            commands = old["meta"]["commands"]
        else:
            commands = []
        command = "PYTHONPATH=src python benchmarks/pascanu.py " + " ".join(
            argv if argv is not None else sys.argv[1:])
        meta = {"commands": commands + [{"command": command,
                                         "wall_s": round(time.perf_counter() - start, 1)}],
                "cpu": machine()["cpu"], "threads": 1, "torch": torch.__version__}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"meta": meta, "runs": runs}) + "\n")




if __name__ == "__main__":
    main()
