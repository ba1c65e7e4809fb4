"""The Neural Turing Machine's generalisation experiments (Graves et al. 2014, sections 4.1
and 4.2), measured with rnnlab's own commands; writes ``docs/results/ntm.json``, which
``docs/figures/ntm.py`` draws.

    python benchmarks/ntm.py                         # every part, seeds 0 1 2, 3 at a time
    python benchmarks/ntm.py --parts copy --seeds 0 1 2 --jobs 3

Parts (each run is ``rnnlab train TASK --set train.seed=S``, the task's documented
defaults otherwise; ``--set`` adds overrides to every run of the chosen parts):

    copy      rnnlab train ntm-copy                  NTM, trained on lengths 1..20
    lstm      rnnlab train ntm-copy --config lstm    the paper's baseline: 3 x 256 LSTM
    repeat    rnnlab train ntm-repeat-copy           NTM, lengths 1..5, repeats 1..5

After training, every run is scored on fresh sequences (a fixed seed): in range on every
training length (10 sequences each; repeat copy: 4 of every length and repeat count), and
beyond it, 100 sequences per point (copy: lengths 10..120; repeat copy: a grid of lengths
and repeats); every kept checkpoint at length 40 (copy) for the learning curve. The runs go to
``--workdir`` (a temporary folder by default). The JSON keeps the curves against sequences
seen (step x batch size), the scores, the wall time of each run, the command, the CPU and
the thread count. Runs are single-threaded; ``--jobs`` of them run at once.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from rnnlab.bench import machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))          # score with this checkout's rnnlab, as trained
OUT = ROOT / "docs" / "results" / "ntm.json"
COPY_LENGTHS = [10, 20, 30, 40, 50, 60, 80, 100, 120]
REPEAT_GRID = [(5, 5), (10, 5), (15, 5), (20, 5), (5, 10), (10, 10), (5, 15), (5, 20)]
PARTS = {"copy": ("ntm-copy", []), "repeat": ("ntm-repeat-copy", []),
         "lstm": ("ntm-copy", ["--config", "lstm"])}
POINTS = 100          # sequences per scored point




def command(part: str, seed: int, extra: list[str]) -> list[str]:
    task, options = PARTS[part]
    return ["rnnlab", "train", task, *options, "--set", f"train.seed={seed}", *extra]


def launch(part, seed, extra, workdir: Path):
    run = workdir / f"{part}-{seed}"
    argv = command(part, seed, extra)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    log = open(workdir / f"{part}-{seed}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "rnnlab", *argv[1:], "--out", str(run),
                             "--json", "--set", "train.threads=1"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    return proc, run, argv, time.perf_counter(), log


def score(part: str, run: Path) -> dict:
    """Curves from metrics.jsonl, the final model scored beyond training, and (copy) each
    checkpoint scored at length 40."""
    from safetensors.torch import load_file

    from rnnlab.data.ntm import copy_batch, repeat_copy_batch
    from rnnlab.tasks import load_run

    torch.set_num_threads(1)
    task, cfg, model = load_run(run)
    model.eval()
    batch = cfg.train.batch_size
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [[r["step"] * batch, round(r["bit_error_rate"], 5)] for r in rows
             if r["split"] == "valid"]
    train = [[r["step"] * batch, round(r["bit_error_rate"], 5)] for r in rows
             if r["split"] == "train" and r["step"] % 50 == 0]
    checkpoints = sorted((run / "checkpoints").glob("step-*.safetensors"))
    last = int(checkpoints[-1].stem.split("-")[1])
    # a run stopped early (--deadline) is scored from its last checkpoint: its weights are
    # those of model.safetensors, and its sequences seen that checkpoint's
    result = {"sequences": last * batch, "finished": (run / "summary.txt").is_file(),
              "valid_curve": [v for v in valid if v[0] <= last * batch], "train_curve": train}

    def points(make):
        g = torch.Generator().manual_seed(2014)
        return [make(g, POINTS // 2) for _ in range(2)]

    g = torch.Generator().manual_seed(2015)     # in range: every training length (and repeat)
    if part == "repeat":
        d = cfg.data
        result["grid"] = [
            [L, R, round(task.evaluate_batches(model, points(
                lambda g, n, L=L, R=R: repeat_copy_batch(g, n, L, R, d.bits, d.max_repeats)),
                "cpu")["bit_error_rate"], 5)] for L, R in REPEAT_GRID]
        result["in_range"] = round(task.evaluate_batches(model, [
            repeat_copy_batch(g, 4, L, R, d.bits, d.max_repeats) for L in range(1, d.max_len + 1)
            for R in range(1, d.max_repeats + 1)], "cpu")["bit_error_rate"], 5)
        return result
    bits = cfg.data.bits
    result["lengths"] = {str(L): round(task.evaluate_batches(
        model, points(lambda g, n, L=L: copy_batch(g, n, L, bits)), "cpu")["bit_error_rate"], 5)
        for L in COPY_LENGTHS}
    result["in_range"] = round(task.evaluate_batches(model, [
        copy_batch(g, 10, L, bits) for L in range(1, cfg.data.max_len + 1)], "cpu"
    )["bit_error_rate"], 5)
    curve = []
    for path in checkpoints:
        model.load_state_dict(load_file(path))
        step = int(path.stem.split("-")[1])
        curve.append([step * batch, round(task.evaluate_batches(
            model, points(lambda g, n: copy_batch(g, n, 40, bits)), "cpu")["bit_error_rate"], 5)])
    result["len40_curve"] = curve
    return result


def record(done: dict, part: str, seed: int, run: Path, wall, cmd) -> None:
    """Score ``run`` and add it to ``done[part]``; ``wall`` None: read it off the run (its
    summary's training time, or the time from its start to its last checkpoint)."""
    result = score(part, run)
    if wall is None:
        summary = run / "summary.txt"
        lines = summary.read_text().splitlines() if summary.is_file() else []
        times = [float(line.split()[1]) for line in lines if line.startswith("time")]
        last = max((run / "checkpoints").glob("step-*.safetensors"))
        wall = times[0] if times else last.stat().st_mtime - (run / "config.json").stat().st_mtime
    cpu_file = run / "cpu_seconds.txt"
    cpu_seconds = float(cpu_file.read_text()) if cpu_file.is_file() else None
    result.update(seed=seed, wall_seconds=round(wall, 1), cpu_seconds=cpu_seconds,
                  command=shlex.join(cmd))
    done.setdefault(part, []).append(result)
    headline = (f"length 40 {result['lengths']['40']:.4f}" if "lengths" in result
                else f"grid {[round(g[2], 4) for g in result['grid']]}")
    print(f"{part} seed {seed}: in range {result['in_range']:.4f}, {headline}, "
          f"{result['sequences']} sequences{'' if result['finished'] else ' (stopped)'}, "
          f"{wall:.0f} s wall, {cpu_seconds} s CPU", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=3, help="runs at once (each one thread)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="extra overrides for every run")
    p.add_argument("--deadline", type=float, default=None, metavar="MINUTES",
                   help="stop the runs still going after this long and score each from its "
                        "last checkpoint (its sequences seen are then that checkpoint's)")
    p.add_argument("--score-existing", action="store_true",
                   help="train nothing: score the runs already in --workdir (finished, or "
                        "stopped, from their last checkpoint; a run's CPU time is read from "
                        "its cpu_seconds.txt, which this script writes for the runs it "
                        "launches)")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rnnlab-ntm-"))
    workdir.mkdir(parents=True, exist_ok=True)
    extra = ["--set", *args.set] if args.set else []
    todo = [(part, seed) for part in args.parts for seed in args.seeds]
    running, done, began = [], {}, time.perf_counter()
    while (todo or running) and not args.score_existing:
        late = args.deadline is not None and time.perf_counter() - began > 60 * args.deadline
        while todo and len(running) < args.jobs and not late:
            part, seed = todo.pop(0)
            running.append((part, seed, *launch(part, seed, extra, workdir)))
        if late:
            todo = []
            for item in running:
                item[2].terminate()
        time.sleep(5)
        for item in list(running):
            part, seed, proc, run, cmd, start, log = item
            pid, status, usage = os.wait4(proc.pid, 0 if late else os.WNOHANG)
            if pid == 0:
                continue
            proc.returncode = os.waitstatus_to_exitcode(status)
            (run / "cpu_seconds.txt").write_text(f"{usage.ru_utime + usage.ru_stime:.1f}\n")
            running.remove(item)
            log.close()
            wall = time.perf_counter() - start
            if proc.returncode != 0 and not (late and (run / "model.safetensors").is_file()):
                print(f"{part} seed {seed}: failed ({proc.returncode}), see "
                      f"{workdir}/{part}-{seed}.log", file=sys.stderr)
                continue
            record(done, part, seed, run, wall, cmd)
    if args.score_existing:
        for part, seed in todo:
            run = workdir / f"{part}-{seed}"
            if (run / "model.safetensors").is_file():
                record(done, part, seed, run, None, command(part, seed, extra))
    data = json.loads(args.out.read_text()) if args.out.is_file() else {}
    data.update({"cpu": machine()["cpu"], "threads": 1, "shared_machine": True,
                 "copy_lengths": COPY_LENGTHS, "repeat_grid": REPEAT_GRID})
    for part, runs in done.items():
        runs.sort(key=lambda r: r["seed"])
        median = {"in_range": statistics.median(r["in_range"] for r in runs)}
        if part != "repeat":
            median["lengths"] = {k: statistics.median(r["lengths"][k] for r in runs)
                                 for k in runs[0]["lengths"]}
        data[part] = {"runs": runs, "median": median}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
