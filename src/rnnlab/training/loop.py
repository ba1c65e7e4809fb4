"""The training loop. It knows nothing about any model or task: a task supplies batches,
the loss and the evaluation (:class:`rnnlab.tasks.base.Task`); this file does

    for step in 1..steps:
        batch -> forward -> loss -> backward -> clip -> step -> log
        every eval_every steps: evaluate on the valid split
        every checkpoint_every steps: save weights + optimizer/RNG state to the run dir

and at the end evaluates the valid and test splits and writes the plot and summary.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from ..config import RunConfig
from . import distributed
from .checkpoint import Checkpoints
from .optim import clip_gradients, make_optimizer, make_schedule
from .regularizers import with_pascanu
from .session import Session

__all__ = ["TrainingError", "train"]


class TrainingError(RuntimeError):
    """Training cannot go on (the loss became NaN or infinite)."""


def train(task, cfg: RunConfig, run: Path | None = None, *,
          log: Callable[[str], None] = print, progress: bool | None = None,
          on_checkpoint: Callable[[int, Path], None] | None = None, resume: bool = False):
    """Train ``task.build_model()`` with ``cfg.train``; return ``(model, final_metrics)``.

    ``run`` is the run directory to write (None: write nothing); ``log`` receives one line per
    evaluation; ``progress`` shows a tqdm bar on stderr (default: when stderr is a TTY);
    ``on_checkpoint(step, run)`` is called after each checkpoint. ``final_metrics`` maps
    ``"<split>_<metric>"`` (``valid_bpc``, ``test_mse``, ...) to floats. ``resume=True``
    continues ``run`` from its last checkpoint (:mod:`rnnlab.training.checkpoint`). A
    non-finite loss or gradient norm raises :class:`TrainingError` naming the step; the last
    checkpoint, written before it, is left as it was.
    """
    s, tc = Session(task, cfg, run, log, resume), cfg.train
    model, log, metric = s.model, s.log, task.main_metric
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(model, tc)
    schedule = make_schedule(optimizer, tc)
    checkpoints = Checkpoints(s, optimizer, schedule, on_checkpoint)
    loss_of = distributed.data_parallel(model, with_pascanu(task.loss, tc.pascanu), s.device)
    if s.saved is not None:
        first, window, valid = checkpoints.restore()
        log(f"resuming {task.name} from step {first} of {tc.steps}")
    else:
        first, window, valid = 0, {}, s.evaluate(0, "valid")
        if valid:
            log(f"step {0:>6} | valid {metric} {valid[metric]:.4f} (untrained)")
        checkpoints.save_untrained()
    show = progress if progress is not None else sys.stderr.isatty()
    bar = tqdm(range(first + 1, tc.steps + 1), desc=task.name, disable=not show,
               file=sys.stderr, dynamic_ncols=True, leave=False, initial=first, total=tc.steps)
    model.train()
    for step in bar:
        batch = task.batch(s.batch_rng, tc.batch_size // s.world, s.device)
        loss, objective, metrics = loss_of(batch)
        bad = not math.isfinite(loss.item())
        if bad or (s.world > 1 and distributed.any_true(bad, s.device)):
            raise _diverged(s, checkpoints.last, step, f"loss is {loss.item()}" if bad else
                            "loss is not finite on another process")
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        grad_norm = clip_gradients(params, tc.clip_norm, tc.clip_value)
        if not math.isfinite(grad_norm):
            raise _diverged(s, checkpoints.last, step, f"gradient norm is {grad_norm}")
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


def _diverged(s: Session, last: int, step: int, what: str) -> TrainingError:
    kept = (f"the checkpoint of step {last} in {str(s.run)!r} is kept"
            if s.run is not None and last else "no checkpoint was written")
    return TrainingError(f"training diverged at step {step}: {what}; {kept}; "
                         f"try a lower train.lr or a train.clip_norm")
