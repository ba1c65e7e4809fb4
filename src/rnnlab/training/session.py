"""What every way of training a task shares, and the loop leaves out: the seeded model on
its device, the process group of a torchrun launch, the run directory's records, evaluation
and the final figures. :func:`rnnlab.training.train` (gradient steps) and a closed-form fit
(:meth:`rnnlab.tasks.MackeyGlass.train`) both stand on it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..config import ConfigError, RunConfig, TrainConfig, resolve_device, to_dict
from . import distributed, rundir

__all__ = ["Session", "TrainingError", "fresh_run", "RANK_STRIDE", "summary"]

#: rank r of a torchrun launch draws its batches from the stream seeded train.seed + r * this
RANK_STRIDE = 1_000_003


def fresh_run(path, tc: TrainConfig) -> Path:
    """A new run directory for a run with ``tc`` at ``path`` (or a numbered sibling,
    :func:`rundir.fresh_run_dir`), made only once ``tc`` has passed its checks, so a bad
    config leaves nothing behind; under torchrun, rank 0 makes it and every rank gets it."""
    tc.check()
    if distributed.setup(resolve_device(tc.device)) == 1:
        return rundir.fresh_run_dir(path)
    run = str(rundir.fresh_run_dir(path)) if distributed.is_main() else None
    return Path(distributed.broadcast_object(run))


class TrainingError(RuntimeError):
    """Training cannot go on (the loss became NaN or infinite)."""


class Session:
    """One training run of ``task`` with ``cfg``, writing ``run`` (None: write nothing).

    On construction: checks ``cfg.train``, sets the thread count, joins the process group
    (when launched by torchrun), seeds torch with ``train.seed`` and builds the model on the
    device (so the same seed gives the same weights), seeds this rank's batch stream, and,
    for a fresh run, writes ``config.json`` and ``task_state.json``. With ``resume`` the last
    checkpoint is read into :attr:`saved` (None when there is none).
    """

    def __init__(self, task, cfg: RunConfig, run: Path | None, log: Callable[[str], None],
                 resume: bool = False):
        tc = cfg.train
        tc.check()
        if tc.threads > 0:
            torch.set_num_threads(tc.threads)
        self.task, self.cfg, self.log = task, cfg, log
        self.device = resolve_device(tc.device)
        self.world = distributed.setup(self.device)   # 1 unless launched by torchrun
        self.rank = distributed.rank()
        if tc.batch_size % self.world:
            raise ConfigError(f"train.batch_size {tc.batch_size} must be a multiple of the "
                              f"{self.world} processes (it is the global batch)")
        if self.rank > 0:                             # rank 0 alone writes and reports
            self.log = lambda _: None
        torch.manual_seed(tc.seed)                    # weight init and dropout
        # which batches, in which order: each rank its own stream (rank 0 = the 1-process one)
        self.batch_rng = torch.Generator().manual_seed(tc.seed + RANK_STRIDE * self.rank)
        self.model: nn.Module = task.build_model().to(self.device)
        self.saved = None
        """The training state read from the run's checkpoint on resume (None otherwise)."""
        if resume:
            if run is None:
                raise ValueError("resume=True needs the run directory")
            if (run / rundir.TRAIN_STATE).is_file():
                self.saved = rundir.load_train_state(run / rundir.TRAIN_STATE)
        self.run = run if self.rank == 0 else None    # other ranks read, never write
        if self.saved is None and self.run is not None:
            rundir.write_json(self.run / rundir.CONFIG, {"task": task.name, **to_dict(cfg)})
            rundir.write_json(self.run / rundir.TASK_STATE, task.state_dict())
        self.start = time.perf_counter()

    def record(self, step: int, split: str, metrics: dict) -> None:
        """Append one line to ``metrics.jsonl``."""
        if self.run is not None:
            rundir.append_metrics(self.run / rundir.METRICS,
                                  {"step": step, "split": split, **metrics})

    def evaluate(self, step: int, split: str) -> dict:
        """The task's metrics on ``split`` (recorded); {} on ranks other than 0."""
        if self.rank > 0:
            return {}
        self.model.eval()
        metrics = self.task.evaluate(self.model, split, self.device)
        self.model.train()
        self.record(step, split, metrics)
        return metrics

    def steps(self, first: int, show: bool | None):
        """The steps ``first + 1 .. train.steps`` with a tqdm bar on stderr when ``show``
        (default: when stderr is a TTY) and tqdm (the ``tasks`` extra) is installed."""
        steps = range(first + 1, self.cfg.train.steps + 1)
        try:
            from tqdm import tqdm
        except ImportError:
            return _Plain(steps)
        return tqdm(steps, desc=self.task.name, file=sys.stderr, dynamic_ncols=True,
                    disable=not (show if show is not None else sys.stderr.isatty()),
                    leave=False, initial=first, total=self.cfg.train.steps)

    def diverged(self, step: int, last: int, what: str) -> TrainingError:
        """The error for a non-finite loss or gradient at ``step`` (last checkpoint: ``last``)."""
        kept = (f"the checkpoint of step {last} in {str(self.run)!r} is kept"
                if self.run is not None and last else "no checkpoint was written")
        return TrainingError(f"training diverged at step {step}: {what}; {kept}; "
                             f"try a lower train.lr or a train.clip_norm")

    def elapsed(self) -> float:
        """Seconds since the session started."""
        return time.perf_counter() - self.start

    def finish(self, valid: dict) -> dict:
        """Evaluate the test split; write the loss plot and ``summary.txt``; return the final
        figures ``{"valid_<metric>": ..., "test_<metric>": ..., "train_seconds": ...}``."""
        test = self.evaluate(self.cfg.train.steps, "test")
        final = {f"valid_{k}": v for k, v in valid.items()}
        final.update({f"test_{k}": v for k, v in test.items()})
        final["train_seconds"] = self.elapsed()
        if self.world > 1:
            final["world_size"] = self.world
            final["max_param_diff_across_ranks"] = distributed.max_abs_difference(self.model)
        if self.run is not None:
            rundir.plot_losses(self.run)
            rundir.write_text(self.run / rundir.SUMMARY,
                              summary(self.task, self.cfg, self.model, final, self.device))
        return final


class _Plain:
    """The steps without a progress bar (tqdm's interface, doing nothing)."""

    def __init__(self, steps: range):
        self.steps = steps

    def __iter__(self):
        return iter(self.steps)

    def set_postfix(self, **_) -> None:
        pass

    def close(self) -> None:
        pass


def summary(task, cfg: RunConfig, model: nn.Module, final: dict, device) -> str:
    n_params = sum(p.numel() for p in model.parameters())
    lines = [
        f"task        {task.name}: {task.description}",
        f"model       {cfg.model}",
        f"data        {cfg.data}",
        f"training    {cfg.train.steps} steps, batch {cfg.train.batch_size}, "
        f"{cfg.train.optimizer} lr {cfg.train.lr}, clip_norm {cfg.train.clip_norm}, "
        f"seed {cfg.train.seed}, device {device}",
        f"parameters  {n_params:,}",
        f"time        {final['train_seconds']:.1f} s",
        "results     " + ", ".join(f"{k} {v:.4f}" for k, v in final.items()
                                  if k != "train_seconds"),
    ]
    return "\n".join(lines) + "\n"
