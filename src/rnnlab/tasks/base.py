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
    task.fit(model, device, run)             # None, or metrics of a closed-form fit (ESN)

Optional, where the task has them:

    task.generate(model, prompt, length, temperature, generator, device, out=None) -> str
    task.predict(model, ["an input", ...], device) -> ["its output", ...]
                                             # rnnlab predict / translate / caption RUN INPUT..
    task.position() / task.set_position(d)   # JSON-able data position beyond the batch RNG
                                             # (a truncated-BPTT cursor), saved for --resume
    Task.presets = {"small": ["model.hidden=200", ...]}   # rnnlab train TASK --config small
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..config import ConfigError, RunConfig, TrainConfig

__all__ = ["Task", "TaskError"]


class TaskError(ValueError):
    """A request the task cannot serve (e.g. ``generate`` on a task without sampling)."""


def check_regularizers(model_cfg) -> None:
    """Config errors for ``model.recurrent_dropout`` and ``model.zoneout`` (rates in [0, 1)
    on a cell that supports them) before a model is built."""
    from ..cells import make_cell

    rates = {k: getattr(model_cfg, k) for k in ("recurrent_dropout", "zoneout")}
    for key, p in rates.items():
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"model.{key} must be in [0, 1), got {p}")
    if any(rates.values()) and not make_cell(model_cfg.cell, 1, 2).regularizable:
        raise ConfigError(f"model.recurrent_dropout and model.zoneout need a cell whose output "
                          f"is its state (rnn, relu, lstm, gru, gru-before, mgu, leaky-rnn); "
                          f"got model.cell={model_cfg.cell}")


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

    def __init__(self, cfg: RunConfig, state: dict | None = None):
        """Prepare the data. ``state`` is :meth:`state_dict` of a saved run, when reloading."""
        self.cfg = cfg
        #: the optimizer step being taken (1-based), set by the training loop before each
        #: :meth:`batch`; schedules that depend on progress (scheduled sampling) read it
        self.step = 0

    @classmethod
    def default_config(cls) -> RunConfig:
        return RunConfig(model=cls.ModelConfig(), data=cls.DataConfig(),
                         train=TrainConfig(**cls.train_defaults))

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def fit(self, model: nn.Module, device, run=None) -> dict[str, float] | None:
        """Closed-form training (an echo state network's ridge readout), called by the training
        loop after the untrained evaluation. Return None (the default) for gradient training;
        or fit ``model`` in place and return its training metrics, and the loop takes no
        gradient steps: it records them as step ``train.steps``, evaluates and saves.
        ``run`` is the run directory (or None), for figures the task writes."""
        return None

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
