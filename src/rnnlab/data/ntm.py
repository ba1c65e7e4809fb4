"""Generators of the Neural Turing Machine's algorithmic tasks (Graves et al. 2014, section
4): copy, repeat copy and associative recall. Each returns ``inputs (T, B, I)``,
``targets (T, B, O)`` and ``mask (T, B, 1)`` (1 on the answer steps), drawn from the
``torch.Generator`` it is given.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["copy_batch", "repeat_copy_batch", "recall_batch"]


# --- the three generators: (inputs (T, B, I), targets (T, B, O), mask (T, B, 1)) ----------


def _bits(generator, *shape) -> Tensor:
    return torch.randint(0, 2, shape, generator=generator).float()


def copy_batch(generator, batch: int, length: int, bits: int = 8):
    """Input: L vectors, then a delimiter (channel ``bits``), then L blank steps."""
    seq = _bits(generator, length, batch, bits)
    T = 2 * length + 1
    x = torch.zeros(T, batch, bits + 1)
    x[:length, :, :bits] = seq
    x[length, :, bits] = 1.0
    y = torch.zeros(T, batch, bits)
    y[length + 1:] = seq
    mask = torch.zeros(T, batch, 1)
    mask[length + 1:] = 1.0
    return x, y, mask


def repeat_copy_batch(generator, batch: int, length: int, repeats: int, bits: int = 8,
                      max_repeats: int = 10):
    """Input: L vectors, then a step whose channel ``bits + 1`` holds repeats / max_repeats;
    output: the sequence ``repeats`` times, then an end marker (output channel ``bits``)."""
    seq = _bits(generator, length, batch, bits)
    T = length + 1 + repeats * length + 1
    x = torch.zeros(T, batch, bits + 2)
    x[:length, :, :bits] = seq
    x[length, :, bits] = 1.0
    x[length, :, bits + 1] = repeats / max_repeats
    y = torch.zeros(T, batch, bits + 1)
    y[length + 1:length + 1 + repeats * length, :, :bits] = seq.repeat(repeats, 1, 1)
    y[-1, :, bits] = 1.0
    mask = torch.zeros(T, batch, 1)
    mask[length + 1:] = 1.0
    return x, y, mask


def recall_batch(generator, batch: int, items: int, bits: int = 6, item_len: int = 3):
    """Input: ``items`` items of ``item_len`` vectors, each after a delimiter (channel
    ``bits``); then a query delimiter (channel ``bits + 1``), a query item (one of the first
    items - 1), another query delimiter, and blanks where the item after it must be output."""
    content = _bits(generator, items, item_len, batch, bits)
    pick = torch.randint(0, items - 1, (batch,), generator=generator)
    per = item_len + 1
    T = items * per + 1 + item_len + 1 + item_len
    x = torch.zeros(T, batch, bits + 2)
    for k in range(items):
        x[k * per, :, bits] = 1.0
        x[k * per + 1:(k + 1) * per, :, :bits] = content[k]
    q = items * per
    cols = torch.arange(batch)
    x[q, :, bits + 1] = 1.0
    x[q + 1:q + 1 + item_len, :, :bits] = content[pick, :, cols].transpose(0, 1)
    x[q + 1 + item_len, :, bits + 1] = 1.0
    y = torch.zeros(T, batch, bits)
    y[-item_len:] = content[pick + 1, :, cols].transpose(0, 1)
    mask = torch.zeros(T, batch, 1)
    mask[-item_len:] = 1.0
    return x, y, mask
