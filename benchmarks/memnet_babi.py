"""The end-to-end memory network on the 20 bAbI tasks (1k, English, v1.2), one model per
task, PE LS RN, as Sukhbaatar et al. 2015 (Table 1, column "PE LS RN"): N runs per task from
different random initialisations, trained at once (:func:`rnnlab.tasks.memnet.train_runs`);
reported: the test error of the run with the lowest training error (the paper's choice) and
the median test error over the runs. Writes a small JSON (each task as it finishes) and
prints the table.

    python benchmarks/memnet_babi.py --data ../shared/data/babi_en_1k --runs 10 \\
        --out docs/results/memnet_babi.json
    python docs/figures/memnet_babi.py              # the figure, from that JSON

One thread (``torch.set_num_threads(1)``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from rnnlab.bench import machine
from rnnlab.config import apply_overrides
from rnnlab.tasks.memnet import MemNet, best_run, evaluate_runs, train_runs

#: Sukhbaatar et al. 2015, Table 1 (1k training questions), test error %: column "PE LS RN"
#: (one model per task) and "PE LS RN joint" (one model for all 20 tasks)
PAPER = {"PE LS RN": [0.0, 8.3, 40.3, 2.8, 13.1, 7.6, 17.3, 10.0, 13.2, 15.1, 0.9, 0.2, 0.4,
                      1.7, 0.0, 1.3, 51.0, 11.1, 82.8, 0.0],
         "PE LS RN joint": [0.0, 11.4, 21.9, 13.4, 14.4, 2.8, 18.3, 9.3, 1.9, 6.5, 0.3, 0.1,
                            0.2, 6.9, 0.0, 2.7, 40.4, 9.4, 88.0, 0.0]}




def run_task(data: str, task_id: int, runs: int, seed: int, overrides: list[str]) -> dict:
    cfg = apply_overrides(MemNet.default_config(),
                          [f"data.path={data}", f"data.task={task_id}"] + overrides)
    task = MemNet(cfg)
    result = train_runs(task, runs, seed, log=lambda line: print(f"  task {task_id}: {line}",
                                                                   flush=True))
    test = evaluate_runs(task, result, "test")
    best = best_run(result)
    curve = [{"epoch": h["epoch"], "linear": h["linear"], "valid_error": h["valid_error"],
              "train_loss": h["train_loss"]} for h in result.history]
    return {"task": task_id, "runs": runs, "seed": seed, "best_run": best,
            "test_error_best": float(test[best]),
            "test_error_median": statistics.median(test.tolist()),
            "test_error": test.tolist(), "train_error": result.train_error.tolist(),
            "valid_error": result.valid_error.tolist(), "ls_epochs": result.ls_epochs.tolist(),
            "epochs": len(result.history), "sgd_steps": result.sgd_steps,
            "seconds": result.seconds, "curve": curve if task_id == 2 else None}


def table(results: list[dict]) -> str:
    """The markdown table of the docs page, tasks in order."""
    results = sorted(results, key=lambda r: r["task"])
    lines = ["| task | runs | best of N (lowest train error) | median | paper PE LS RN | "
             "paper PE LS RN joint |", "|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        t = r["task"]
        lines.append(f"| {t} | {r['runs']} | {100 * r['test_error_best']:.1f} | "
                     f"{100 * r['test_error_median']:.1f} | {PAPER['PE LS RN'][t - 1]:.1f} | "
                     f"{PAPER['PE LS RN joint'][t - 1]:.1f} |")
    if len(results) == 20:
        best = statistics.mean(100 * r["test_error_best"] for r in results)
        med = statistics.mean(100 * r["test_error_median"] for r in results)
        failed = sum(r["test_error_best"] > 0.05 for r in results)
        paper = [PAPER["PE LS RN"], PAPER["PE LS RN joint"]]
        lines.append(f"| mean | | {best:.1f} | {med:.1f} | {statistics.mean(paper[0]):.1f} | "
                     f"{statistics.mean(paper[1]):.1f} |")
        lines.append(f"| failed (> 5 %) | | {failed} | "
                     f"{sum(r['test_error_median'] > 0.05 for r in results)} | "
                     f"{sum(e > 5 for e in paper[0])} | {sum(e > 5 for e in paper[1])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="bAbI folder (qa*_train/test.txt[.gz])")
    p.add_argument("--runs", type=int, default=10, help="runs per task (the paper: 10)")
    p.add_argument("--tasks", default="1-20", help="e.g. 1-20 or 2,3")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("docs/results/memnet_babi.json"))
    p.add_argument("--set", nargs="*", default=[], help="extra config overrides")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if "-" in args.tasks:
        lo, hi = map(int, args.tasks.split("-"))
        tasks = list(range(lo, hi + 1))
    else:
        tasks = [int(t) for t in args.tasks.split(",")]
    out = {"command": "python benchmarks/memnet_babi.py --data ../shared/data/babi_en_1k "
                      f"--runs {args.runs} --tasks {args.tasks} --seed {args.seed}"
                      + (f" --set {' '.join(args.set)}" if args.set else ""),
           "cpu": machine()["cpu"], "threads": 1, "torch": torch.__version__,
           "note": "one model per task; errors are fractions of the 1000 test questions",
           "paper": PAPER, "results": []}
    start = time.perf_counter()
    for t in tasks:
        out["results"].append(run_task(args.data, t, args.runs, args.seed, args.set))
        out["wall_seconds"] = time.perf_counter() - start
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1) + "\n")
        r = out["results"][-1]
        print(f"task {t:>2}: best-of-{args.runs} {100 * r['test_error_best']:.1f} %, median "
              f"{100 * r['test_error_median']:.1f} %, paper {PAPER['PE LS RN'][t - 1]} % "
              f"({r['seconds']:.0f} s)", flush=True)
    print(table(out["results"]))
    print(f"wall time {out['wall_seconds']:.0f} s, {out['cpu']}, 1 thread")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
