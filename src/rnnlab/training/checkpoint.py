"""Checkpoints: what the training loop saves every ``train.checkpoint_every`` steps and what
``rnnlab train --resume`` restores, so that a killed run resumed ends, on the CPU, with
weights bit-identical to an uninterrupted one.

One checkpoint is ``train_state.pt`` (weights, optimizer and schedule state, both RNG states,
the task's data position, the partial log window and the last valid figures; loaded with
``weights_only=True``), then ``model.safetensors``, and with ``train.keep_checkpoints`` a
copy of the weights in ``checkpoints/`` for ``rnnlab diagnose``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..config import ConfigError
from . import distributed, rundir

__all__ = ["Checkpoints"]


class Checkpoints:
    """The checkpoints of one run directory (``run`` None: collective work only)."""

    def __init__(self, session, optimizer, schedule,
                 on_checkpoint: Callable[[int, Path], None] | None = None):
        self.s, self.optimizer, self.schedule = session, optimizer, schedule
        self.on_checkpoint = on_checkpoint
        self.last = 0                                 # step of the last checkpoint written

    def start(self) -> tuple[int, dict, dict]:
        """Where the run starts: ``(step, log window, valid figures)`` of the restored last
        checkpoint when resuming; else ``(0, {}, the untrained model's valid figures)``, with
        the untrained weights kept for ``diagnose``."""
        s = self.s
        if s.saved is not None:
            step, window, valid = self.restore()
            s.log(f"resuming {s.task.name} from step {step} of {s.cfg.train.steps}")
            return step, window, valid
        valid, metric = s.evaluate(0, "valid"), s.task.main_metric
        if valid:
            s.log(f"step {0:>6} | valid {metric} {valid[metric]:.4f} (untrained)")
        if s.run is not None and s.cfg.train.keep_checkpoints:
            rundir.save_weights(rundir.checkpoint_path(s.run, 0), s.model)
        return 0, {}, valid

    def save(self, step: int, window: dict, valid: dict) -> None:
        s = self.s
        streams = ([] if s.world == 1 else                # every rank's batch stream
                   distributed.all_gather_tensor(s.batch_rng.get_state()))
        if s.run is None:
            return
        # train_state.pt first: it alone is what --resume reads
        rundir.save_train_state(
            s.run / rundir.TRAIN_STATE, step, s.model, self.optimizer, s.batch_rng,
            schedule=self.schedule.state_dict() if self.schedule is not None else {},
            task_position=s.task.position(), window=window, valid=valid,
            world_size=s.world, batch_rngs=streams)
        rundir.save_weights(s.run / rundir.WEIGHTS, s.model)
        if s.cfg.train.keep_checkpoints:
            rundir.save_weights(rundir.checkpoint_path(s.run, step), s.model)
        self.last = step
        if self.on_checkpoint is not None:
            self.on_checkpoint(step, s.run)

    def restore(self) -> tuple[int, dict, dict]:
        """Load :attr:`Session.saved` into the live objects; return its step, log window
        and valid figures, and cut ``metrics.jsonl`` back to that step."""
        s, saved = self.s, self.s.saved
        if saved.get("world_size", 1) != s.world:
            raise ConfigError(f"the checkpoint was written by {saved.get('world_size', 1)} "
                              f"processes; resume it with the same number, not {s.world}")
        s.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.schedule is not None and saved.get("schedule"):
            self.schedule.load_state_dict(saved["schedule"])
        torch.set_rng_state(saved["torch_rng"])
        s.batch_rng.set_state(saved["batch_rng"] if s.world == 1
                              else saved["batch_rngs"][s.rank])
        if s.device.type == "cuda" and "cuda_rng" in saved:
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        s.task.set_position(saved.get("task_position", {}))
        self.last = step = int(saved["step"])
        if s.run is not None:
            rundir.truncate_metrics(s.run / rundir.METRICS, step)
        return step, saved["window"], saved["valid"]
