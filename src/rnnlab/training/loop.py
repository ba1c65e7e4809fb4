"""The training loop. It knows no model or task: a task supplies batches, the loss and the
evaluation (:class:`rnnlab.tasks.base.Task`); per step: batch -> forward -> loss -> backward
-> clip -> step -> log, every eval_every steps a valid evaluation, every checkpoint_every
steps a checkpoint; at the end the test split, the plot and the summary (:class:`Session`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from ..config import RunConfig
from . import distributed
from .checkpoint import Checkpoints
from .optim import clip_gradients, make_optimizer, make_schedule
from .regularizers import with_pascanu
from .session import Session, TrainingError

__all__ = ["TrainingError", "train"]


def train(task, cfg: RunConfig, run: Path | None = None, *,
          log: Callable[[str], None] = print, progress: bool | None = None,
          on_checkpoint: Callable[[int, Path], None] | None = None, resume: bool = False):
    """Train ``task.build_model()`` with ``cfg.train``, writing the run directory ``run``
    (None: nothing); return ``(model, {"valid_bpc": ..., "test_bpc": ..., ...})``. ``log``
    gets a line per evaluation, ``progress`` a bar on stderr (default: if a TTY), and
    ``on_checkpoint(step, run)`` a call per checkpoint. ``resume`` continues ``run`` from its
    last checkpoint. A non-finite loss or gradient norm raises :class:`TrainingError`."""
    s, tc = Session(task, cfg, run, log, resume), cfg.train
    model, log, metric = s.model, s.log, task.main_metric
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(model, tc)
    schedule = make_schedule(optimizer, tc)
    checkpoints = Checkpoints(s, optimizer, schedule, on_checkpoint)
    loss_of = distributed.data_parallel(model, with_pascanu(task.loss, tc.pascanu), s.device)
    first, window, valid = checkpoints.start()
    bar = s.steps(first, progress)
    model.train()
    for step in bar:
        batch = task.batch(s.batch_rng, tc.batch_size // s.world, s.device)
        loss, objective, metrics = loss_of(batch)
        bad = not math.isfinite(loss.item())
        if bad or (s.world > 1 and distributed.any_true(bad, s.device)):
            raise s.diverged(step, checkpoints.last, f"loss is {loss.item()}" if bad else
                             "loss is not finite on another process")
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        grad_norm = clip_gradients(params, tc.clip_norm, tc.clip_value)
        if not math.isfinite(grad_norm):
            raise s.diverged(step, checkpoints.last, f"gradient norm is {grad_norm}")
        optimizer.step()
        if schedule is not None:
            schedule.step()
        for key, value in {"loss": loss.item(), **metrics, "grad_norm": grad_norm}.items():
            window.setdefault(key, []).append(value)
        if step % tc.log_every == 0 or step == tc.steps:
            means = {k: sum(v) / len(v) for k, v in window.items()}
            s.record(step, "train", {**means, "lr": optimizer.param_groups[0]["lr"]})
            bar.set_postfix(loss=f"{means['loss']:.4f}")
            window = {}
        if (step % tc.eval_every == 0 or step == tc.steps) and s.rank == 0:
            valid = s.evaluate(step, "valid")
            log(f"step {step:>6} | valid {metric} {valid[metric]:.4f} | train loss "
                f"{loss.item():.4f} | grad norm {grad_norm:.3g} | {s.elapsed():.0f}s")
        if step % tc.checkpoint_every == 0 or step == tc.steps:
            checkpoints.save(step, window, valid)
    bar.close()
    return model, s.finish(valid)

