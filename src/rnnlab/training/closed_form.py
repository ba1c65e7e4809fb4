"""Training without gradient steps: a model fitted in closed form (an echo state network's
ridge or RLS readout, book 10.8), written to the same run directory as the gradient loop
writes, so that ``evaluate``, ``diagnose``, ``export`` and ``--resume`` treat it alike.

    untrained valid evaluation -> fit(model, device, run) -> recorded as step train.steps
    -> valid evaluation -> checkpoint -> test evaluation, plot and summary
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..config import RunConfig
from .checkpoint import Checkpoints
from .optim import make_optimizer, make_schedule
from .session import Session

__all__ = ["fit_closed_form"]


def fit_closed_form(task, cfg: RunConfig, run: Path | None,
                    fit: Callable[..., dict[str, float]], *, log: Callable[[str], None] = print,
                    progress: bool | None = None,
                    on_checkpoint: Callable[[int, Path], None] | None = None,
                    resume: bool = False):
    """Fit ``task.build_model()`` with ``fit(model, device, run) -> training metrics`` (in
    place); return ``(model, final_metrics)`` as :func:`rnnlab.training.train` does, whose
    keyword options it takes (``progress`` is accepted and unused: there are no steps)."""
    s, tc = Session(task, cfg, run, log, resume), cfg.train
    optimizer = make_optimizer(s.model, tc)          # saved with the checkpoint, as the loop's
    checkpoints = Checkpoints(s, optimizer, make_schedule(optimizer, tc), on_checkpoint)
    resumed = s.saved is not None
    _, _, valid = checkpoints.start()
    if resumed:
        return s.model, s.finish(valid)
    metric = task.main_metric
    s.record(tc.steps, "train", fit(s.model, s.device, s.run))
    valid = s.evaluate(tc.steps, "valid")
    if valid:
        s.log(f"step {tc.steps:>6} | valid {metric} {valid[metric]:.4f} | fitted in closed "
              f"form | {s.elapsed():.0f}s")
    checkpoints.save(tc.steps, {}, valid)
    s.model.train()
    return s.model, s.finish(valid)
