"""Output-to-hidden against hidden-to-hidden recurrence on a real task (book section 10.2.1,
Fig. 10.3 against Fig. 10.4): ``char-lm`` on its default corpus with ``model.cell=feedback``
(trained by teacher forcing, all steps at once; scored free-running) beside
``model.cell=rnn`` (the tanh RNN, trained by BPTT through its fused kernel), same hidden
size, same batches, same optimiser and steps.

    PYTHONPATH=src python benchmarks/feedback_lm.py --hidden 128 --steps 1500 \\
        --out docs/results/feedback_lm.json

The two models are trained in one process, one thread, their steps alternated (one batch,
then the same batch for the other model), so that both see the same load on a shared
machine; a step is batch -> loss -> backward -> clip -> Adam step, timed with
``time.perf_counter``; the table gives the median. Every ``--eval-every`` steps both are
scored on the valid split (bits per character, the state carried across windows); for the
feedback model both free-running (its own softmax fed back, the test-time graph) and
teacher-forced (the true previous character fed back). Prints the table, writes the JSON
that ``docs/figures/feedback_lm.py`` draws.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from rnnlab.bench import machine
from rnnlab.tasks import get_task
from rnnlab.training.optim import clip_gradients, make_optimizer


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--bigram-only", action="store_true",
                    help="print the add-one bigram model's test bpc (the reference for a net "
                         "that sees only the previous character) and stop")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    cls = get_task("char-lm")
    if args.bigram_only:
        print(f"add-one bigram test bpc: {bigram_bpc(cls(cls.default_config())):.3f}")
        return
    arms, tasks = {}, {}
    for name, cell in (("rnn", "rnn"), ("feedback", "feedback")):
        cfg = cls.default_config()
        cfg.model.cell, cfg.model.hidden, cfg.train.seed = cell, args.hidden, args.seed
        task = tasks[name] = cls(cfg)
        torch.manual_seed(args.seed)
        model = task.build_model()
        arms[name] = {"model": model, "opt": make_optimizer(model, cfg.train), "cfg": cfg,
                      "times": [], "curve": {"step": [], "bpc": [], "tf_bpc": []},
                      "params": sum(p.numel() for p in model.parameters())}
    batches = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = tasks["rnn"].batch(batches, arms["rnn"]["cfg"].train.batch_size, "cpu")
        order = ("rnn", "feedback") if step % 2 else ("feedback", "rnn")
        for name in order:
            a = arms[name]
            t0 = time.perf_counter()
            loss, _ = tasks[name].loss(a["model"], batch)
            a["opt"].zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(list(a["model"].parameters()), a["cfg"].train.clip_norm, None)
            a["opt"].step()
            a["times"].append(time.perf_counter() - t0)
        if step % args.eval_every == 0 or step == args.steps:
            for name, a in arms.items():
                a["model"].eval()
                m = tasks[name].evaluate(a["model"], "valid", "cpu")
                a["model"].train()
                a["curve"]["step"].append(step)
                a["curve"]["bpc"].append(m["bpc"])
                a["curve"]["tf_bpc"].append(m.get("tf_bpc"))
            print(f"step {step}: valid bpc rnn {arms['rnn']['curve']['bpc'][-1]:.3f} | "
                  f"feedback free-running {arms['feedback']['curve']['bpc'][-1]:.3f}, "
                  f"teacher-forced {arms['feedback']['curve']['tf_bpc'][-1]:.3f} | "
                  f"{time.perf_counter() - start:.0f} s", flush=True)

    results = {}
    for name, a in arms.items():
        a["model"].eval()
        test = tasks[name].evaluate(a["model"], "test", "cpu")
        sample = tasks[name].generate(a["model"], "The ", 160, 0.8,
                                      torch.Generator().manual_seed(1), "cpu")
        results[name] = {"params": a["params"], "ms_per_step": 1e3 * statistics.median(
                             a["times"][10:]), "test_bpc": test["bpc"],
                         "test_tf_bpc": test.get("tf_bpc"), "curve": a["curve"],
                         "sample": sample}
    print(f"\n{'model':<10}{'params':>8}{'ms/step':>9}{'test bpc (free)':>17}"
          f"{'test bpc (teacher-forced)':>27}")
    for name, r in results.items():
        tf = "" if r["test_tf_bpc"] is None else f"{r['test_tf_bpc']:.3f}"
        print(f"{name:<10}{r['params']:>8}{r['ms_per_step']:>9.2f}{r['test_bpc']:>17.3f}"
              f"{tf:>27}")
    ratio = results["rnn"]["ms_per_step"] / results["feedback"]["ms_per_step"]
    print(f"time per training step, rnn / feedback: {ratio:.2f}x")
    for name, r in results.items():
        print(f"\n--- {name}, free-running sample (temperature 0.8) ---\n{r['sample']}")
    if args.out is not None:
        meta = {"command": "PYTHONPATH=src python benchmarks/feedback_lm.py "
                           + " ".join(argv if argv is not None else sys.argv[1:]),
                "cpu": machine()["cpu"], "threads": 1, "torch": torch.__version__,
                "hidden": args.hidden, "steps": args.steps, "seed": args.seed,
                "batch_size": arms["rnn"]["cfg"].train.batch_size,
                "seq_len": arms["rnn"]["cfg"].data.seq_len,
                "wall_s": round(time.perf_counter() - start, 1)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"meta": meta, "models": results}, indent=1) + "\n")


def bigram_bpc(task) -> float:
    """Bits per character on the test split of the add-one-smoothed bigram model counted on
    the training split: p(c | previous character)."""
    V = len(task.vocab)
    train, test = task.splits["train"], task.splits["test"]
    counts = torch.ones(V, V, dtype=torch.float64)
    counts.index_put_((train[:-1], train[1:]), torch.ones(len(train) - 1, dtype=torch.float64),
                      accumulate=True)
    logp = (counts / counts.sum(1, keepdim=True)).log2()
    return -logp[test[:-1], test[1:]].mean().item()




if __name__ == "__main__":
    main()
