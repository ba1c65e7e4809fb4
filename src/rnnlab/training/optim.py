"""Optimisation pieces of the training loop: the optimizer, the learning-rate schedule and
gradient clipping (book 10.11.1: clip the global norm, or element-wise)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import TrainConfig

__all__ = ["make_optimizer", "make_schedule", "step_decay", "clip_gradients"]


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
