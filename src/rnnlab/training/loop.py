"""The training loop. It knows nothing about any particular model or task: a task supplies
batches, the loss and the evaluation (:class:`rnnlab.tasks.base.Task`); this file does

    for step in 1..steps:
        batch -> forward -> loss -> backward -> clip -> step -> log
        every eval_every steps: evaluate on the valid split
        every checkpoint_every steps: save weights + optimizer/RNG state to the run dir

and at the end evaluates the valid and test splits and writes the plot and summary.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from ..config import ConfigError, RunConfig, TrainConfig, resolve_device, to_dict
from . import distributed, rundir

__all__ = ["TrainingError", "train", "make_optimizer"]


#: rank r of a torchrun launch draws its batches from the stream seeded train.seed + r * this
RANK_STRIDE = 1_000_003


class TrainingError(RuntimeError):
    """Training cannot go on (the loss became NaN or infinite)."""


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def step_decay(step: int, start: int, every: int, factor: float) -> float:
    """The learning-rate multiplier after ``step`` optimizer steps under step decay."""
    return 1.0 if step < start else factor ** ((step - start) // every + 1)


def make_schedule(optimizer, cfg: TrainConfig):
    """The learning-rate scheduler for ``cfg.lr_decay`` (None for "none")."""
    if cfg.lr_decay == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.steps)
    if cfg.lr_decay == "step":
        start, every, factor = cfg.lr_decay_start, cfg.lr_decay_every, cfg.lr_decay_factor
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: step_decay(step, start, every, factor))
    return None


def clip_gradients(params: list[nn.Parameter], clip_norm, clip_value) -> float:
    """Clip in place (element-wise, then global norm); return the global norm *before*."""
    if clip_norm and not clip_value:     # clip_grad_norm_ returns the norm before clipping
        return float(torch.nn.utils.clip_grad_norm_(params, clip_norm))
    grads = [p.grad for p in params if p.grad is not None]
    # the global 2-norm over all gradients (torch.nn.utils.get_total_norm needs torch >= 2.6)
    norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g) for g in grads])).item() if grads else 0.0
    if clip_value:
        torch.nn.utils.clip_grad_value_(params, clip_value)
    if clip_norm:
        torch.nn.utils.clip_grad_norm_(params, clip_norm)
    return norm


def train(task, cfg: RunConfig, run: Path | None = None, *,
          log: Callable[[str], None] = print, progress: bool | None = None,
          on_checkpoint: Callable[[int, Path], None] | None = None, resume: bool = False):
    """Train ``task.build_model()`` with ``cfg.train``; return ``(model, final_metrics)``.

    ``run`` is the run directory to write (None: write nothing). ``log`` receives one line
    per evaluation. ``progress`` shows a tqdm bar on stderr (default: when stderr is a TTY).
    ``on_checkpoint(step, run)`` is called after each checkpoint is written.
    ``final_metrics`` maps ``"<split>_<metric>"`` (``valid_bpc``, ``test_mse``, ...) to floats.

    ``resume=True`` continues the run in ``run`` from its last checkpoint (``train_state.pt``):
    weights, optimizer and scheduler state, both RNG states, the task's data position and the
    partial log window are restored, so on the CPU the resumed run ends with weights
    bit-identical to an uninterrupted one. Without a checkpoint it starts from step 0.
    A non-finite loss or gradient norm raises :class:`TrainingError` naming the step; the
    last checkpoint, written before it, is left as it was.
    """
    tc: TrainConfig = cfg.train
    tc.check()
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    device = resolve_device(tc.device)
    world = distributed.setup(device)                 # 1 unless launched by torchrun
    rank = distributed.rank()
    if tc.batch_size % world:
        raise ConfigError(f"train.batch_size {tc.batch_size} must be a multiple of the "
                          f"{world} processes (it is the global batch)")
    if rank > 0:                                      # rank 0 alone writes and reports
        log, progress = (lambda _: None), False
    torch.manual_seed(tc.seed)                        # weight init and dropout
    # which batches, in which order: each rank its own stream (rank 0 = the 1-process one)
    batch_rng = torch.Generator().manual_seed(tc.seed + RANK_STRIDE * rank)
    model = task.build_model().to(device)
    if world > 1:
        distributed.broadcast_parameters(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(model, tc)
    schedule = make_schedule(optimizer, tc)
    saved = None
    if resume:
        if run is None:
            raise ValueError("resume=True needs the run directory")
        if (run / rundir.TRAIN_STATE).is_file():
            saved = rundir.load_train_state(run / rundir.TRAIN_STATE)
    if run is not None and rank > 0:
        run = None                                    # read the checkpoint, write nothing
    if saved is None and run is not None:
        rundir.write_json(run / rundir.CONFIG, {"task": task.name, **to_dict(cfg)})
        rundir.write_json(run / rundir.TASK_STATE, task.state_dict())

    def record(step: int, split: str, metrics: dict) -> None:
        if run is not None:
            rundir.append_metrics(run / rundir.METRICS, {"step": step, "split": split, **metrics})

    def evaluate(step: int, split: str) -> dict:
        if rank > 0:
            return {}
        model.eval()
        metrics = task.evaluate(model, split, device)
        model.train()
        record(step, split, metrics)
        return metrics

    window: dict[str, list[float]] = {}
    last_checkpoint = 0

    def checkpoint(step: int) -> None:
        nonlocal last_checkpoint
        streams = ([] if world == 1 else                 # every rank's batch stream
                   distributed.all_gather_tensor(batch_rng.get_state()))
        if run is None:
            return
        # train_state.pt first: it alone is what --resume reads
        rundir.save_train_state(
            run / rundir.TRAIN_STATE, step, model, optimizer, batch_rng,
            schedule=schedule.state_dict() if schedule is not None else {},
            task_position=task.position(), window=window, valid=valid,
            world_size=world, batch_rngs=streams)
        rundir.save_weights(run / rundir.WEIGHTS, model)
        if tc.keep_checkpoints:
            rundir.save_weights(rundir.checkpoint_path(run, step), model)
        last_checkpoint = step
        if on_checkpoint is not None:
            on_checkpoint(step, run)

    def diverged(step: int, what: str) -> TrainingError:
        kept = (f"the checkpoint of step {last_checkpoint} in {str(run)!r} is kept"
                if run is not None and last_checkpoint else "no checkpoint was written")
        return TrainingError(f"training diverged at step {step}: {what}; {kept}; "
                             f"try a lower train.lr or a train.clip_norm")

    start = time.perf_counter()
    metric = task.main_metric
    first = 1
    if saved is not None:
        if saved.get("world_size", 1) != world:
            raise ConfigError(f"the checkpoint was written by {saved.get('world_size', 1)} "
                              f"processes; resume it with the same number, not {world}")
        first = _restore(saved, model, optimizer, schedule, batch_rng, task, device) + 1
        if world > 1:
            batch_rng.set_state(saved["batch_rngs"][rank])
        window, valid, last_checkpoint = saved["window"], saved["valid"], first - 1
        if run is not None:
            rundir.truncate_metrics(run / rundir.METRICS, first - 1)
        log(f"resuming {task.name} from step {first - 1} of {tc.steps}")
    else:
        valid = evaluate(0, "valid")
        if valid:
            log(f"step {0:>6} | valid {metric} {valid[metric]:.4f} (untrained)")
        if run is not None and tc.keep_checkpoints:
            rundir.save_weights(rundir.checkpoint_path(run, 0), model)
    fitted = task.fit(model, device, run) if saved is None else None
    if fitted is not None:           # trained in closed form (an ESN readout): no gradient steps
        first = tc.steps + 1
        record(tc.steps, "train", fitted)
        valid = evaluate(tc.steps, "valid")
        if valid:
            log(f"step {tc.steps:>6} | valid {metric} {valid[metric]:.4f} | fitted in closed "
                f"form | {time.perf_counter() - start:.0f}s")
        checkpoint(tc.steps)
    show = progress if progress is not None else sys.stderr.isatty()
    bar = tqdm(range(first, tc.steps + 1), desc=task.name, disable=not show, file=sys.stderr,
               dynamic_ncols=True, leave=False, initial=first - 1, total=tc.steps)
    model.train()
    for step in bar:
        task.step = step
        batch = task.batch(batch_rng, tc.batch_size // world, device)
        if tc.pascanu > 0:
            from ..trace import tracing  # the reference loop, traced
            from .regularizers import pascanu_penalty

            with tracing(model) as traces:
                loss, metrics = task.loss(model, batch)
            omega = pascanu_penalty(loss, traces)
            metrics = {**metrics, "pascanu_omega": omega.item()}
            objective = loss + tc.pascanu * omega
        else:
            loss, metrics = task.loss(model, batch)
            objective = loss
        bad = not math.isfinite(loss.item())
        if bad or (world > 1 and distributed.any_true(bad, device)):
            raise diverged(step, f"loss is {loss.item()}" if bad else "loss is not finite on "
                           "another process")
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if world > 1:
            distributed.average_gradients(params)
        grad_norm = clip_gradients(params, tc.clip_norm, tc.clip_value)
        if not math.isfinite(grad_norm):
            raise diverged(step, f"gradient norm is {grad_norm}")
        optimizer.step()
        if schedule is not None:
            schedule.step()

        for key, value in {"loss": loss.item(), **metrics, "grad_norm": grad_norm}.items():
            window.setdefault(key, []).append(value)
        if step % tc.log_every == 0 or step == tc.steps:
            means = {k: sum(v) / len(v) for k, v in window.items()}
            record(step, "train", {**means, "lr": optimizer.param_groups[0]["lr"]})
            bar.set_postfix(loss=f"{means['loss']:.4f}")
            window = {}
        if (step % tc.eval_every == 0 or step == tc.steps) and rank == 0:
            valid = evaluate(step, "valid")
            log(f"step {step:>6} | valid {metric} {valid[metric]:.4f} | "
                f"train loss {loss.item():.4f} | grad norm {grad_norm:.3g} | "
                f"{time.perf_counter() - start:.0f}s")
        if step % tc.checkpoint_every == 0 or step == tc.steps:
            checkpoint(step)
    bar.close()

    test = evaluate(tc.steps, "test")
    final = {f"valid_{k}": v for k, v in valid.items()}
    final.update({f"test_{k}": v for k, v in test.items()})
    final["train_seconds"] = time.perf_counter() - start
    if world > 1:
        final["world_size"] = world
        final["max_param_diff_across_ranks"] = distributed.max_abs_difference(model)
    if run is not None:
        rundir.plot_losses(run)
        rundir.write_text(run / rundir.SUMMARY, summary(task, cfg, model, final, device))
    return model, final


def _restore(saved: dict, model, optimizer, schedule, batch_rng, task, device) -> int:
    """Load a checkpoint written by ``train`` into the live objects; return its step."""
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    if schedule is not None and saved.get("schedule"):
        schedule.load_state_dict(saved["schedule"])
    torch.set_rng_state(saved["torch_rng"])
    batch_rng.set_state(saved["batch_rng"])
    if device.type == "cuda" and "cuda_rng" in saved:
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    task.set_position(saved.get("task_position", {}))
    return int(saved["step"])


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
