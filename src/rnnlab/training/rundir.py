"""The run directory: everything a training run leaves behind, and loading it back.

    runs/char-lm/
        config.json         resolved config: {"task": ..., "model": ..., "data": ..., "train": ...}
        task_state.json     task state the model needs, as JSON (e.g. the char vocabulary)
        model.safetensors   weights
        train_state.pt      the checkpoint to resume from, as one file: step, weights, optimizer
                            and scheduler state, RNG states, the task's data position (tensors
                            and plain containers only; loaded with torch.load(weights_only=True),
                            never unpickled freely)
        checkpoints/        step-000000.safetensors, ...: the weights at each checkpoint and
                            before training (train.keep_checkpoints), for `rnnlab diagnose`
        metrics.jsonl       one JSON object per line: {"step", "split", <metric>: value, ...}
        loss.png            train and valid loss against step
        summary.txt         a short human summary

Every file except ``metrics.jsonl`` (appended a line at a time) is written to a temporary file,
flushed to disk and moved into place with ``os.replace``, so a crash never leaves a
half-written file. Resuming needs only ``train_state.pt``: because everything a resumed run
needs is in that one file, a kill between writing it and ``model.safetensors`` cannot pair
weights of one step with optimizer state of another. On resume ``metrics.jsonl`` is cut back
to the checkpoint's step (:func:`truncate_metrics`), dropping lines a killed run wrote after it,
a torn last line included.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = [
    "RunDirError", "CONFIG", "TASK_STATE", "WEIGHTS", "TRAIN_STATE", "METRICS", "PLOT", "SUMMARY",
    "fresh_run_dir", "check_run_dir", "write_json", "read_json", "save_weights", "load_weights",
    "save_train_state", "load_train_state", "append_metrics", "read_metrics", "plot_losses",
    "write_text", "truncate_metrics", "checkpoint_path", "list_checkpoints",
]

CONFIG = "config.json"
TASK_STATE = "task_state.json"
WEIGHTS = "model.safetensors"
TRAIN_STATE = "train_state.pt"
METRICS = "metrics.jsonl"
PLOT = "loss.png"
CHECKPOINTS = "checkpoints"
SUMMARY = "summary.txt"

#: what a finished run must hold to be evaluated or sampled from
REQUIRED = (CONFIG, TASK_STATE, WEIGHTS)


class RunDirError(ValueError):
    """A run directory that is missing or incomplete; the message names the path."""


def fresh_run_dir(path: str | Path) -> Path:
    """Create and return an empty directory at ``path``, or, when ``path`` already holds
    something, at the first free numbered sibling ``path-1``, ``path-2``, ... so that no
    saved run is ever overwritten."""
    base = Path(path)
    candidate, k = base, 0
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        k += 1
        candidate = base.with_name(f"{base.name}-{k}")
    candidate.mkdir(parents=True, exist_ok=True)
    return candidate


def check_run_dir(path: str | Path, need=REQUIRED) -> Path:
    """``path`` as a Path if it is a run directory holding the files ``need``; else
    :class:`RunDirError` naming the path and what is missing."""
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"run directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise RunDirError(f"{str(path)!r} is not a run directory (it is a file)")
    missing = [name for name in need if not (path / name).is_file()]
    if missing:
        raise RunDirError(f"run directory {str(path)!r} is incomplete: missing "
                          + ", ".join(missing))
    return path


def checkpoint_path(run: Path, step: int) -> Path:
    """``run/checkpoints/step-NNNNNN.safetensors`` (the directory is created)."""
    folder = Path(run) / CHECKPOINTS
    folder.mkdir(exist_ok=True)
    return folder / f"step-{step:06d}.safetensors"


def list_checkpoints(run: Path) -> list[tuple[int, Path]]:
    """``[(step, path), ...]`` of the kept checkpoints, by step."""
    found = []
    for path in (Path(run) / CHECKPOINTS).glob("step-*.safetensors"):
        digits = path.name[len("step-"):-len(".safetensors")]
        if digits.isdigit():
            found.append((int(digits), path))
    return sorted(found)


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then move the temp file onto ``path`` in one step."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:          # on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(f"cannot read {str(path)!r}: {e}") from None


def save_weights(path: Path, model: nn.Module) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp))


def load_weights(path: Path, model: nn.Module) -> None:
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise RunDirError(f"cannot read weights {str(path)!r}: {e}") from None
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise RunDirError(f"weights in {str(path)!r} do not fit the model built from its "
                          f"config: {str(e).splitlines()[0]}") from None


def save_train_state(path: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                     batch_generator: torch.Generator, **extra) -> None:
    """Everything needed to resume at ``step``, in one file: weights, optimizer state, the
    global and batch RNG states, plus ``extra`` (plain containers, numbers and tensors)."""
    state = {
        "step": step,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "batch_rng": batch_generator.get_state(),
        **extra,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_train_state(path: Path) -> dict:
    """The dict written by :func:`save_train_state`, loaded with ``weights_only=True``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types
        raise RunDirError(f"cannot read training state {str(path)!r}: {e}") from None


def append_metrics(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(path: Path) -> list[dict]:
    """The records of ``metrics.jsonl``; a torn last line (a killed run) is skipped."""
    if not Path(path).exists():
        return []
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def truncate_metrics(path: Path, step: int) -> None:
    """Keep only the records up to ``step`` (those a resumed run will not write again)."""
    kept = [r for r in read_metrics(path) if isinstance(r, dict) and r.get("step", 0) <= step]
    write_text(Path(path), "".join(json.dumps(r) + "\n" for r in kept))


def plot_losses(run: Path) -> None:
    """``loss.png``: train and valid loss against step, from ``metrics.jsonl``; skipped
    where matplotlib (the ``tasks`` extra) is not installed."""
    try:
        import matplotlib
    except ImportError:
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run / METRICS)
    fig, ax = plt.subplots(figsize=(6, 4))
    for split, style in (("train", "-"), ("valid", "o-")):
        points = [(r["step"], r["loss"]) for r in records
                  if r.get("split") == split and math.isfinite(r.get("loss", math.nan))]
        if points:
            steps, losses = zip(*points)
            ax.plot(steps, losses, style, label=split, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(run.name)
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend()
    atomic_write(run / PLOT, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
