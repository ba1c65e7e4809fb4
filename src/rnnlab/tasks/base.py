"""The task interface: what the model-agnostic training loop needs from a task.

A task owns its data and its loss; the training loop (:func:`rnnlab.training.train`) owns
optimisation. Everything a task needs from the config is ``cfg.model`` and ``cfg.data``
(its own dataclasses) plus ``cfg.train.batch_size``.

    task = Adding(cfg)                       # prepares data (reads files, builds a vocab)
    model = task.build_model()               # an nn.Module
    batch = task.batch(generator, B, device) # a random training batch
    loss, metrics = task.loss(model, batch)  # scalar tensor, {"mse": 0.13, ...}
    task.evaluate(model, "valid", device)    # {"loss": ..., "mse": ...} over the fixed split
    task.state_dict()                        # JSON-able state saved with the run (a vocab)
    task.train(run)                          # train it: the gradient loop by default

Optional, where the task has them:

    task.generate(model, prompt, length, temperature, generator, device, out=None) -> str
    task.predict(model, ["an input", ...], device) -> ["its output", ...]
                                             # rnnlab predict / translate / caption RUN INPUT..
    task.position() / task.set_position(d)   # JSON-able data position beyond the batch RNG
                                             # (a truncated-BPTT cursor, batches drawn),
                                             # saved with each checkpoint for --resume
    Task.presets = {"small": ["model.hidden=200", ...]}   # rnnlab train TASK --config small
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..cells import make_cell
from ..config import ConfigError, RunConfig, TrainConfig
from ..layers import Recurrent
from ..training import train

__all__ = ["Task", "TaskError"]


class TaskError(ValueError):
    """A request the task cannot serve (e.g. ``generate`` on a task without sampling)."""


def check_regularizers(model_cfg) -> None:
    """``model.recurrent_dropout`` and ``model.zoneout`` checked by the layer that will take
    them (:class:`rnnlab.Recurrent`, the one place they are validated) before the model is
    built, its error raised as a :class:`ConfigError` naming the config keys."""
    try:
        with torch.random.fork_rng(devices=[]):      # a throwaway cell: the seed stays put
            Recurrent(make_cell(model_cfg.cell, 1, 2),
                      recurrent_dropout=model_cfg.recurrent_dropout, zoneout=model_cfg.zoneout)
    except ValueError as e:
        raise ConfigError(f"model.cell={model_cfg.cell}, model.recurrent_dropout="
                          f"{model_cfg.recurrent_dropout}, model.zoneout={model_cfg.zoneout}: "
                          f"{e}") from None


class Task:
    """Abstract task. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    description: ClassVar[str]           # one line, shown by ``rnnlab tasks``
    ModelConfig: ClassVar[type]
    DataConfig: ClassVar[type]
    main_metric: ClassVar[str]           # the metric printed at each evaluation
    uses_data_file: ClassVar[bool] = False
    #: the task's defaults for :class:`rnnlab.config.TrainConfig` fields
    train_defaults: ClassVar[dict[str, Any]] = {}
    #: named configurations, each a list of ``--set`` overrides (``rnnlab train --config NAME``)
    presets: ClassVar[dict[str, list[str]]] = {}
    #: ``rnnlab train`` prints a sample of the trained and of the untrained model
    samples_after_training: ClassVar[bool] = False
    #: ``(name, help)`` of a command that spells ``rnnlab predict`` for this task's runs
    #: (``rnnlab translate RUN "..."``), or None
    predict_command: ClassVar[tuple[str, str] | None] = None

    def __init__(self, cfg: RunConfig, state: dict | None = None):
        """Prepare the data. ``state`` is :meth:`state_dict` of a saved run, when reloading."""
        self.cfg = cfg

    @classmethod
    def default_config(cls) -> RunConfig:
        return RunConfig(model=cls.ModelConfig(), data=cls.DataConfig(),
                         train=TrainConfig(**cls.train_defaults))

    def build_model(self) -> nn.Module:
        """The task's model, built from ``self.cfg.model`` (and the data's sizes)."""
        raise NotImplementedError

    def train(self, run=None, **options):
        """Train :meth:`build_model` with ``self.cfg`` and write the run directory ``run``
        (None: write nothing); return ``(model, final_metrics)``. ``options`` are those of
        :func:`rnnlab.training.train`, the gradient loop that this default runs; a task whose
        model is fitted otherwise (an echo state network's closed-form readout) overrides it."""
        return train(self, self.cfg, run, **options)

    def batch(self, generator: torch.Generator, batch_size: int, device) -> tuple[Tensor, ...]:
        """A random training batch, drawn with ``generator``."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch) -> tuple[Tensor, dict[str, float]]:
        """The scalar training loss and the metrics of this batch."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, device) -> dict[str, float]:
        """Metrics over the whole fixed ``split`` ("valid" or "test"), always with "loss"."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """JSON-able state the task needs to rebuild the model later (empty by default)."""
        return {}

    def position(self) -> dict:
        """JSON-able data position that the batch generator's state does not already hold
        (e.g. a truncated-BPTT cursor); saved with each checkpoint so a resumed run goes on
        from the same batch. Empty by default."""
        return {}

    def set_position(self, position: dict) -> None:
        """Restore :meth:`position` from a checkpoint."""

    def generate(self, model: nn.Module, prompt: str | None, length: int, temperature: float,
                 generator: torch.Generator, device, out=None) -> str:
        """A sample as text; ``out`` (a path, or None) is where a task that makes a file
        (a MIDI tune) writes it. The returned text is printed by ``rnnlab generate``."""
        raise TaskError(f"task {self.name!r} does not generate samples")

    def export_example(self) -> Tensor:
        """An input of the model's ``forward``, time-major ``(T, B, ...)``, for ONNX export
        (``rnnlab export``). By default the first tensor of a small training batch."""
        batch = self.batch(torch.Generator().manual_seed(0), 2, "cpu")
        first = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(first, Tensor):
            raise TaskError(f"task {self.name!r} does not define an export input")
        return first

    def predict(self, model: nn.Module, inputs: list[str], device) -> list[str]:
        """One output per input (a sentence to tag or translate, an image path to caption)."""
        raise TaskError(f"task {self.name!r} has no predict; it is scored with evaluate")
