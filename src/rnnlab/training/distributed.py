"""Data-parallel training with ``torch.distributed``, launched by ``torchrun``:

    torchrun --nproc_per_node=2 -m rnnlab train adding --set train.batch_size=64

Each process (rank) builds the same model from the same seed, draws its own share of every
global batch (``train.batch_size / world_size`` sequences, from its own batch stream seeded
by ``train.seed`` and its rank), computes its loss and gradients, and torch's
``DistributedDataParallel`` averages the gradients across ranks (bucketed all_reduce,
overlapped with the backward pass) before clipping and the optimizer step, so every rank
applies the same update and the parameters stay identical. DDP wraps the task's *loss*
(:func:`data_parallel`), not the bare model, because tasks call their models' own methods
(a decoder's beam search, an encoder) that a wrapped model would hide. Backend: gloo on CPU,
nccl on CUDA.

Rank 0 alone evaluates, writes the run directory and prints; checkpoints hold every rank's
batch-stream state, so ``--resume`` works under the same world size.

With equal per-rank batch sizes and a loss that is a mean over the batch, the averaged
gradient equals the gradient of the mean loss over the global batch: N processes train as
one process would on the concatenated batch (tests/test_distributed.py checks it).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["rank", "world_size", "is_main", "setup", "data_parallel",
           "broadcast_object", "all_gather_tensor", "any_true", "max_abs_difference", "shutdown"]


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def setup(device: torch.device) -> int:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); return the
    world size (1 when not distributed)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 1
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return dist.get_world_size()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _Loss(nn.Module):
    """A task's loss as the forward of a module, so that DistributedDataParallel can wrap it
    (tasks call their models' own methods, which a wrapped model would hide)."""

    def __init__(self, model: nn.Module, loss_fn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch):
        return self.loss_fn(self.model, batch)


def data_parallel(model: nn.Module, loss_fn, device: torch.device):
    """``batch -> loss_fn(model, batch)``; under torchrun, through torch's
    ``DistributedDataParallel``, which broadcasts rank 0's weights and buffers once and then
    averages the gradients over the ranks in buckets, overlapped with the backward pass."""
    step = _Loss(model, loss_fn)
    if world_size() == 1:
        return step
    ids = [torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(step, device_ids=ids, find_unused_parameters=True)


def broadcast_object(obj):
    """``obj`` as rank 0 has it, on every rank."""
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def all_gather_tensor(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``tensor`` (same shape and dtype on all ranks), in rank order."""
    out = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(out, tensor)
    return out


def any_true(flag: bool, device) -> bool:
    """True on every rank when ``flag`` is true on any rank."""
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def max_abs_difference(model: torch.nn.Module) -> float:
    """The largest elementwise difference of the parameters between any two ranks."""
    flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])
    hi, lo = flat.clone(), flat.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    return float((hi - lo).max()) if flat.numel() else 0.0
