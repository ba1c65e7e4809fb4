"""Command-line interface: a thin layer that parses arguments and calls the library.

    rnnlab tasks
    rnnlab train TASK [--data PATH] [--config NAME] [--set key=value ...] [--out DIR] [--json]
    rnnlab train --resume RUN [--data PATH] [--json]
    rnnlab evaluate RUN [--data PATH] [--json]
    rnnlab generate RUN [--prompt TEXT] [--temperature T] [--length N] [--seed S]
                        [--out FILE] [--json]
    rnnlab predict RUN INPUT ... [--json]     (also spelled as a task names it: `translate`)
    rnnlab diagnose RUN [--batch N] [--seed S] [--json]
    rnnlab export RUN --format onnx --out FILE [--json]
    rnnlab bench [--threads 1 2] [--configs ...] [--cells ...] [--repeats N] [--json]
                 [--out FILE]

Human-readable output by default; with ``--json`` progress goes to stderr and the last line
of stdout is one JSON object of final figures (``valid_bpc``, ``test_mse``, ...). Bad input
(unknown task or key, bad value, unreadable data, missing run directory) prints one line
``rnnlab: error: ...`` on stderr and returns 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from . import bench
from .config import ConfigError, apply_overrides, resolve_device
from .data.text import DataError
from .diagnose import diagnose_run
from .export import ExportError, export_onnx
from .tasks import TASKS, Task, TaskError, get_task, load_run
from .trace import TraceError
from .training import TrainingError, distributed
from .training.rundir import CONFIG, TASK_STATE, RunDirError
from .training.session import fresh_run

__all__ = ["main"]

PREDICT_ALIASES = {cls.predict_command[0] for cls in TASKS.values() if cls.predict_command}
USER_ERRORS = (ConfigError, DataError, RunDirError, TaskError, TraceError, ExportError)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rnnlab", description="Train, evaluate and sample the "
                                "recurrent nets of Deep Learning, chapter 10.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("tasks", help="list the tasks")

    t = sub.add_parser("train", help="train a task and save a run directory")
    t.add_argument("task", metavar="TASK", nargs="?", help="task name (see `rnnlab tasks`)")
    t.add_argument("--resume", metavar="RUN", help="continue a killed or stopped run from its "
                   "last checkpoint, with its saved config (no TASK, --config or --set)")
    t.add_argument("--data", metavar="PATH", help="data file (tasks that read one)")
    t.add_argument("--config", metavar="NAME", help="a named preset of the task (its "
                   "overrides apply first, then --set); `rnnlab tasks` lists them")
    t.add_argument("--set", metavar="KEY=VALUE", nargs="+", action="append", default=[],
                   help="override config values, e.g. --set train.steps=100 model.cell=gru")
    t.add_argument("--out", metavar="DIR", help="run directory (default runs/TASK; "
                   "a numbered sibling if it already holds something)")
    t.add_argument("--json", action="store_true", help="print final metrics as JSON")

    e = sub.add_parser("evaluate", help="score a saved run on its valid and test splits")
    e.add_argument("run", metavar="RUN", help="run directory")
    e.add_argument("--data", metavar="PATH", help="score on this data file instead")
    e.add_argument("--json", action="store_true", help="print metrics as JSON")

    generating = [name for name, cls in TASKS.items() if cls.generate is not Task.generate]
    g = sub.add_parser("generate", help=f"sample from a saved run ({', '.join(generating)})")
    g.add_argument("run", metavar="RUN", help="run directory")
    g.add_argument("--prompt", default=None, help="text to condition on")
    g.add_argument("--temperature", type=float, default=0.8,
                   help="softmax temperature; 0 = greedy (default 0.8)")
    g.add_argument("--length", type=int, default=300, help="characters to sample")
    g.add_argument("--seed", type=int, default=0, help="sampling seed")
    g.add_argument("--out", metavar="FILE", help="also write the sample to FILE (a task that "
                   "makes files, such as music, writes its own format: MIDI)")
    g.add_argument("--json", action="store_true", help="print the sample as JSON")

    d = sub.add_parser("diagnose", help="gradient flow through time, Jacobian and weight "
                       "spectra, gate saturation; PNGs and an offline HTML report")
    d.add_argument("run", metavar="RUN", help="run directory")
    d.add_argument("--batch", type=_positive_int, default=32, help="sequences measured")
    d.add_argument("--seed", type=int, default=0, help="which training batch")
    d.add_argument("--max-steps", type=_positive_int, default=100,
                   help="steps of the Jacobian trajectory (default 100)")
    d.add_argument("--json", action="store_true", help="print the figures as JSON")

    x = sub.add_parser("export", help="write the inference graph (ONNX, dynamic length)")
    x.add_argument("run", metavar="RUN", help="run directory")
    x.add_argument("--format", choices=["onnx"], default="onnx")
    x.add_argument("--out", metavar="FILE", required=True, help="the .onnx file to write")
    x.add_argument("--json", action="store_true", help="print the result as JSON")

    aliases = [cls.predict_command for cls in TASKS.values() if cls.predict_command]
    for name, help_ in [("predict", "apply a saved run to inputs (tag, classify, ...)"),
                        *aliases]:
        q = sub.add_parser(name, help=help_)
        q.add_argument("run", metavar="RUN", help="run directory")
        q.add_argument("inputs", metavar="INPUT", nargs="+",
                       help="texts (or image paths, for caption)")
        q.add_argument("--json", action="store_true", help="print the outputs as JSON")

    b = sub.add_parser("bench", help="speed, memory and correctness of every cell family "
                       "vs torch.nn and the autograd loop (benchmarks/README.md)")
    b.add_argument("--threads", type=_positive_int, nargs="+", default=[1, 2], metavar="N")
    b.add_argument("--configs", nargs="+", choices=list(bench.CONFIGS),
                   default=list(bench.DEFAULT_CONFIGS), metavar="CONFIG",
                   help=f"default: {' '.join(bench.DEFAULT_CONFIGS)}")
    b.add_argument("--cells", nargs="+", choices=list(bench.CELLS), default=list(bench.CELLS),
                   metavar="CELL", help=f"default: all of {' '.join(bench.CELLS)}")
    b.add_argument("--repeats", type=_positive_int, default=7, metavar="N",
                   help="timed samples per implementation (the protocol asks >= 5; "
                   "halved, min 5, for medium/long; default 7)")
    b.add_argument("--json", action="store_true", help="print one JSON object, no tables")
    b.add_argument("--out", metavar="FILE",
                   help="also write the markdown results file (e.g. benchmarks/RESULTS.md)")
    return p


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:      # argparse has printed usage and its error already
        return int(e.code or 0)
    try:
        if args.command == "tasks":
            return cmd_tasks()
        if args.command == "train":
            return cmd_train(args)
        if args.command == "evaluate":
            return cmd_evaluate(args)
        if args.command == "bench":
            return cmd_bench(args)
        if args.command == "predict" or args.command in PREDICT_ALIASES:
            return cmd_predict(args)
        if args.command == "diagnose":
            return cmd_diagnose(args)
        if args.command == "export":
            return cmd_export(args)
        return cmd_generate(args)
    except USER_ERRORS as e:
        print(f"rnnlab: error: {e}", file=sys.stderr)
        return 2
    except TrainingError as e:
        print(f"rnnlab: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rnnlab: interrupted", file=sys.stderr)
        return 130


def _quiet(line: str) -> None:
    """Where ranks other than 0 of a torchrun launch print: nowhere."""


def _say(json_mode: bool):
    """Where human lines go: stdout normally, stderr when stdout is reserved for JSON."""
    stream = sys.stderr if json_mode else sys.stdout
    return lambda line: print(line, file=stream, flush=True)


def _fmt(metrics: dict) -> str:
    return " | ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))


def cmd_tasks() -> int:
    width = max(len(name) for name in TASKS)
    for name, cls in TASKS.items():
        print(f"{name:<{width}}  {cls.description}")
        if cls.presets:
            print(f"{'':<{width}}  presets (--config): {', '.join(cls.presets)}")
    return 0


def preset_overrides(cls, name: str | None) -> list[str]:
    """The ``--set`` overrides of the task's preset ``name`` ([] for None)."""
    if name is None:
        return []
    if name not in cls.presets:
        valid = ", ".join(cls.presets) or "none"
        raise ConfigError(f"task {cls.name!r} has no preset {name!r}; its presets: {valid}")
    return list(cls.presets[name])


def cmd_train(args) -> int:
    say = _say(args.json)
    if args.resume is not None:
        if args.task is not None or args.config is not None or args.set or args.out:
            raise ConfigError("--resume continues a run with its saved config; it takes no "
                              "TASK, --config, --set or --out (only --data and --json)")
        task, cfg, _ = load_run(args.resume, args.data, need=(CONFIG, TASK_STATE))
        cls, run = type(task), Path(args.resume)
        say(f"resuming {cls.name} in {run}")
    else:
        if args.task is None:
            raise ConfigError("train needs a TASK (see `rnnlab tasks`) or --resume RUN")
        cls = get_task(args.task)
        overrides = (preset_overrides(cls, args.config)
                     + [kv for group in args.set for kv in group])
        cfg = apply_overrides(cls.default_config(), overrides)
        if args.data is not None:
            if not cls.uses_data_file:
                raise TaskError(f"task {cls.name!r} generates its own data; --data does not "
                                f"apply")
            cfg.data.path = args.data
        task = cls(cfg)                              # reads and checks the data
        run = fresh_run(args.out if args.out is not None else Path("runs") / cls.name,
                        cfg.train)
        say(f"training {cls.name} -> {run}")
    if not distributed.is_main():
        say = _quiet
    model, final = task.train(run, log=say, progress=None if not args.json else False,
                              resume=args.resume is not None)
    if not distributed.is_main():
        distributed.shutdown()
        return 0
    say(f"final  | {_fmt(final)}")
    say(f"run saved to {run}")
    result = {"task": cls.name, "run": str(run), **final}
    if task.samples_after_training:
        device = next(model.parameters()).device
        trained = _sample(task, model, cfg.train.seed, device)
        torch.manual_seed(cfg.train.seed)       # the same initialisation as before training
        untrained = _sample(task, task.build_model().to(device), cfg.train.seed, device)
        say(f"--- sample after training (temperature 0.8, seed {cfg.train.seed}) ---")
        say(trained)
        say("--- sample from the untrained model (same seed) ---")
        say(untrained)
        result.update(sample=trained, untrained_sample=untrained)
    distributed.shutdown()
    if args.json:
        print(json.dumps(result))
    return 0


def _sample(task, model, seed: int, device, length: int = 200) -> str:
    generator = torch.Generator().manual_seed(seed)
    return task.generate(model, None, length, 0.8, generator, device)


def cmd_evaluate(args) -> int:
    task, cfg, model = load_run(args.run, args.data)
    device = resolve_device(cfg.train.device)
    model.to(device).eval()
    result = {}
    for split in ("valid", "test"):
        metrics = task.evaluate(model, split, device)
        result.update({f"{split}_{k}": v for k, v in metrics.items()})
    if args.json:
        print(json.dumps({"task": task.name, "run": str(args.run), **result}))
    else:
        print(f"{task.name} run {args.run}: {_fmt(result)}")
    return 0


def cmd_generate(args) -> int:
    task, cfg, model = load_run(args.run)
    device = resolve_device(cfg.train.device)
    model.to(device)
    generator = torch.Generator().manual_seed(args.seed)
    text = task.generate(model, args.prompt, args.length, args.temperature, generator, device,
                         out=args.out)
    if args.json:
        result = {"task": task.name, "run": str(args.run), "sample": text}
        if args.out:
            result["out"] = args.out
        print(json.dumps(result))
    else:
        print(text)
    return 0


def cmd_predict(args) -> int:
    task, cfg, model = load_run(args.run)
    device = resolve_device(cfg.train.device)
    model.to(device).eval()
    outputs = task.predict(model, args.inputs, device)
    if args.json:
        print(json.dumps({"task": task.name, "run": str(args.run),
                          "inputs": args.inputs, "outputs": outputs}))
    else:
        for output in outputs:
            print(output)
    return 0


def cmd_bench(args) -> int:
    if args.repeats < 5:
        print(f"rnnlab: note: --repeats {args.repeats} is below the protocol's 5",
              file=sys.stderr)
    info = bench.machine()
    rows = bench.run(args.cells, args.configs, args.threads, args.repeats, log=_say(True))
    if args.json:
        print(bench.to_json(rows, info))
    else:
        print("\n\n".join(bench.tables(rows, n) for n in args.threads))
    for line in bench.failures(rows):
        print(line, file=sys.stderr)
    if args.out:
        command = ("rnnlab bench --threads " + " ".join(map(str, args.threads))
                   + " --configs " + " ".join(args.configs) + " --cells " + " ".join(args.cells)
                   + f" --repeats {args.repeats} --out {args.out}")
        Path(args.out).write_text(bench.results_markdown(rows, args.threads, info, command),
                                  encoding="utf-8")
    return 1 if bench.failures(rows) else 0


def cmd_diagnose(args) -> int:
    say = _say(args.json)
    result = diagnose_run(args.run, args.batch, args.seed, args.max_steps, log=say)
    say(f"report: {result['report']}")
    if args.json:
        print(json.dumps(result))
    return 0


def cmd_export(args) -> int:
    task, _, model = load_run(args.run)
    example = task.export_example()
    out = Path(args.out)
    if out.parent and not out.parent.exists():
        raise ExportError(f"the directory of --out {str(out)!r} does not exist")
    export_onnx(model.cpu(), example, out)
    result = {"task": task.name, "run": str(args.run), "format": args.format, "out": str(out),
              "input_shape_example": list(example.shape), "dynamic_axes": ["T", "B"]}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"wrote {out} (input: time-major (T, B, ...), T and B dynamic)")
    return 0
