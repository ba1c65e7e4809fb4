"""Sequential digit classification: an image read as a sequence (book fig. 10.5, many-to-one).

An S x S grey image is fed to the recurrent net one row or one pixel per time step, and the
final state is classified into the ten digits:

    rows:   xs (T = S,   B, S)  -> Stack(cell) -> h(T) (B, H) -> linear -> logits (B, 10)
    pixels: xs (T = S^2, B, 1)  -> Stack(cell) -> h(T) (B, H) -> linear -> logits (B, 10)

``data.permute`` applies one fixed random permutation (``data.permute_seed``) to the S^2
pixels before the image is cut into steps: permuted sequential MNIST (Le et al. 2015,
"A Simple Way to Initialize Recurrent Networks of Rectified Linear Units"), which removes
the locality that makes the unpermuted pixel order easier. Pixel values are scaled to
[0, 1]. Loss: cross-entropy; metric: accuracy (chance 0.1).

**Data** (``data.source``; ``auto`` = ``mnist`` when ``--data`` is given, else ``sklearn``):

- ``sklearn``: the 1,797 8x8 digits bundled with scikit-learn
  (``sklearn.datasets.load_digits``; no download), values 0..16. T = 8 (rows) or 64
  (pixels). Shuffled once with ``data.seed`` and split 70/10/20 % (1257/179/361).
- ``mnist``: ``--data DIR`` holding LeCun's IDX files, read by :mod:`rnnlab.data.idx`
  (``.gz`` or not). With ``train-*`` and ``t10k-*`` both present: the last
  ``data.mnist_valid`` (5,000) training images are the valid split, t10k the test split.
  With only one of them (``data/mnist_t10k`` has only the 10,000 test images):
  that set is shuffled once with ``data.seed`` and split 70/10/20 % (7000/1000/2000).
  T = 28 (rows) or 784 (pixels).

**Commands**:

    rnnlab train digits                       # sklearn rows, T = 8
    rnnlab train digits --config pixels       # sklearn pixels, T = 64
    rnnlab train digits --data data/mnist_t10k     # MNIST rows, T = 28
    rnnlab train digits --data data/mnist_t10k --config mnist-pixels   # T = 784
    rnnlab predict RUN 0 17 42                # classify test-split images by index

Measured figures: docs/results.md (digits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..config import ConfigError
from ..data.idx import find_mnist, read_mnist_pair
from ..data.text import DataError
from ..models.sequence import SequenceClassifier
from .base import Task, TaskError

__all__ = ["Digits", "DigitsModel", "DigitsData", "image_sequences", "load_sklearn_digits",
           "load_mnist"]


@dataclass
class DigitsModel:
    cell: str = "lstm"
    hidden: int = 128
    num_layers: int = 1
    dropout: float = 0.0


@dataclass
class DigitsData:
    path: str | None = None    # MNIST IDX directory (--data DIR)
    source: Literal["auto", "sklearn", "mnist"] = "auto"
    order: Literal["rows", "pixels"] = "rows"
    permute: bool = False      # one fixed permutation of the pixels (permuted sequential)
    permute_seed: int = 0
    seed: int = 1234           # the shuffle before a 70/10/20 split
    mnist_valid: int = 5000    # valid images taken from the end of train-* (when present)
    eval_batch: int = 1000     # images per forward pass when scoring a split


# --- data -----------------------------------------------------------------------------------


def _shuffled_split(images: np.ndarray, labels: np.ndarray, seed: int) -> dict:
    """70/10/20 % after one shuffle with ``seed``."""
    order = np.random.default_rng(seed).permutation(len(labels))
    n_train, n_valid = int(len(order) * 0.7), int(len(order) * 0.1)
    parts = {"train": order[:n_train], "valid": order[n_train:n_train + n_valid],
             "test": order[n_train + n_valid:]}
    return {k: (images[idx], labels[idx]) for k, idx in parts.items()}


def load_sklearn_digits(seed: int) -> tuple[dict, float]:
    """scikit-learn's 8x8 digits as ``{split: (images (N, 8, 8) uint8, labels (N,))}``
    and their maximum value (16)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return _shuffled_split(digits.images.astype(np.uint8), digits.target, seed), 16.0


def load_mnist(directory, seed: int, valid: int) -> tuple[dict, float]:
    """MNIST from the IDX files in ``directory`` (see the module docstring for the split)."""
    found = find_mnist(directory)
    if "train" in found and "t10k" in found:
        images, labels = read_mnist_pair(*found["train"])
        if not 0 < valid < len(labels):
            raise ConfigError(f"data.mnist_valid={valid} must be between 1 and "
                              f"{len(labels) - 1} (the training images)")
        test = read_mnist_pair(*found["t10k"])
        splits = {"train": (images[:-valid], labels[:-valid]),
                  "valid": (images[-valid:], labels[-valid:]), "test": test}
    else:
        (pair,) = found.values()
        images, labels = read_mnist_pair(*pair)
        splits = _shuffled_split(images, labels, seed)
    for split, (_, labels) in splits.items():
        if len(labels) == 0:
            raise DataError(f"{directory}: too few images: the {split} split is empty")
    return splits, 255.0


def image_sequences(images: Tensor, order: str, permutation: Tensor | None) -> Tensor:
    """``images (B, S, S)`` float -> time-major sequences: rows ``(S, B, S)`` or pixels
    ``(S*S, B, 1)``, after the optional ``permutation (S*S,)`` of the flattened pixels."""
    B, S, _ = images.shape
    flat = images.reshape(B, S * S)
    if permutation is not None:
        flat = flat[:, permutation]
    steps = flat.view(B, S, S) if order == "rows" else flat.view(B, S * S, 1)
    return steps.transpose(0, 1)                          # (T, B, F)


class Digits(Task):
    name = "digits"
    description = ("sequential digit classification, row by row or pixel by pixel (sklearn "
                   "8x8 digits, or MNIST IDX with --data DIR); accuracy, chance 0.1")
    ModelConfig, DataConfig = DigitsModel, DigitsData
    main_metric = "accuracy"
    uses_data_file = True
    # threads=1: the per-step GEMMs are small; a second thread only adds synchronisation
    train_defaults = dict(steps=1500, batch_size=64, lr=3e-3, clip_norm=1.0,
                          eval_every=250, checkpoint_every=500, threads=1)
    presets = {
        "pixels": ["data.order=pixels", "train.steps=2500"],
        # T = 784: an LSTM (128, lr 1e-3) was still at chance after 900 steps (1035 s); this
        # smaller GRU learns within the time (81.6 % test in 1500 steps, 632 s)
        "mnist-pixels": ["data.order=pixels", "model.cell=gru", "model.hidden=64",
                         "train.lr=2e-3", "train.steps=1500", "train.eval_every=500"],
    }

    def __init__(self, cfg, state=None):
        super().__init__(cfg, state)
        d = cfg.data
        if d.eval_batch < 1:
            raise ConfigError(f"data.eval_batch must be at least 1, got {d.eval_batch}")
        self.source = d.source if d.source != "auto" else ("mnist" if d.path else "sklearn")
        if self.source == "mnist" and d.path is None:
            raise ConfigError("data.source=mnist needs the IDX directory: --data DIR")
        self.splits: dict | None = None
        if state is None:
            self._load()
        else:
            if not isinstance(state.get("side"), int):
                raise TaskError("task state has no image side ('side')")
            self.side = state["side"]
        self.permutation = (torch.randperm(self.side ** 2, generator=torch.Generator()
                                           .manual_seed(d.permute_seed))
                            if d.permute else None)

    def _load(self) -> None:
        d = self.cfg.data
        if self.source == "sklearn":
            splits, peak = load_sklearn_digits(d.seed)
        else:
            splits, peak = load_mnist(d.path, d.seed, d.mnist_valid)
        images = splits["train"][0]
        if images.ndim != 3 or images.shape[1] != images.shape[2]:
            raise DataError(f"{d.path}: expected square images, got shape "
                            f"{tuple(images.shape[1:])}")
        side = images.shape[1]
        if hasattr(self, "side") and side != self.side:
            raise DataError(f"{d.path}: images are {side}x{side}, the model was trained on "
                            f"{self.side}x{self.side}")
        self.side, self.peak = side, peak
        self.splits = {k: (torch.from_numpy(np.ascontiguousarray(x)),
                           torch.from_numpy(y.astype(np.int64)))
                       for k, (x, y) in splits.items()}

    def _ensure_data(self) -> dict:
        if self.splits is None:
            self._load()
        return self.splits

    def state_dict(self) -> dict:
        return {"side": self.side}

    @property
    def input_size(self) -> int:
        return self.side if self.cfg.data.order == "rows" else 1

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        return SequenceClassifier(m.cell, self.input_size, m.hidden, m.num_layers, 10,
                                  m.dropout)

    def _sequences(self, images: Tensor, device) -> Tensor:
        xs = image_sequences(images.float() / self.peak, self.cfg.data.order, self.permutation)
        return xs.to(device)                                  # (T, B, F)

    def batch(self, generator, batch_size, device):
        """Random training images as sequences ``(T, B, F)`` and labels ``(B,)``."""
        images, labels = self._ensure_data()["train"]
        idx = torch.randint(0, len(labels), (batch_size,), generator=generator)
        return self._sequences(images[idx], device), labels[idx].to(device)

    def loss(self, model, batch):
        xs, labels = batch
        logits = model(xs)                                    # (B, 10)
        loss = F.cross_entropy(logits, labels)
        return loss, {"accuracy": (logits.argmax(-1) == labels).float().mean().item()}

    @torch.no_grad()
    def evaluate(self, model, split, device):
        images, labels = self._ensure_data()[split]
        loss_sum, correct = 0.0, 0
        for i in range(0, len(labels), self.cfg.data.eval_batch):
            xs = self._sequences(images[i:i + self.cfg.data.eval_batch], device)
            y = labels[i:i + self.cfg.data.eval_batch].to(device)
            logits = model(xs)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
        n = len(labels)
        return {"loss": loss_sum / n, "accuracy": correct / n}

    @torch.no_grad()
    def predict(self, model, inputs, device):
        """Classify test-split images given by index: ``"17" -> "17: predicted 3, label 3
        (p 0.98)"``."""
        images, labels = self._ensure_data()["test"]
        indices = []
        for item in inputs:
            if not item.isdigit() or int(item) >= len(labels):
                raise TaskError(f"digits predict takes indices of test-split images, 0 to "
                                f"{len(labels) - 1}; got {item!r}")
            indices.append(int(item))
        idx = torch.tensor(indices)
        probs = torch.softmax(model(self._sequences(images[idx], device)).float(), -1).cpu()
        return [f"{i}: predicted {int(p.argmax())}, label {int(labels[i])} "
                f"(p {float(p.max()):.2f})" for i, p in zip(indices, probs)]
