"""Synthetic generators: the long-range memory benchmarks (adding problem, copy memory,
temporal order) and
the generated hourly series of the forecasting task.

The batch generators draw everything from the ``torch.Generator`` they are given, so a seed
fixes a batch; :func:`synthetic_series` draws from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import numpy as np
import torch

from .series import Series

__all__ = ["adding_batch", "copy_batch", "temporal_order_batch", "synthetic_series"]


def adding_batch(generator: torch.Generator, batch_size: int, length: int):
    """The adding problem of Hochreiter & Schmidhuber (1997), section 5.4.

    Returns ``xs (T, B, 2)`` and ``target (B,)``: channel 0 holds values ~ U[0, 1], channel 1
    marks exactly two of them, one in each half of the sequence; the target is their sum.
    """
    T, B = length, batch_size
    values = torch.rand(T, B, generator=generator)
    half = T // 2
    first = torch.randint(0, half, (B,), generator=generator)
    second = torch.randint(half, T, (B,), generator=generator)
    marks = torch.zeros(T, B)
    cols = torch.arange(B)
    marks[first, cols] = 1.0
    marks[second, cols] = 1.0
    target = values[first, cols] + values[second, cols]
    return torch.stack([values, marks], dim=-1), target


def copy_batch(generator: torch.Generator, batch_size: int, symbols: int, delay: int,
               alphabet: int):
    """The copy-memory task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016).

    Input tokens ``(T, B)`` with ``T = 2 * symbols + delay``:

        s_1 .. s_S   blank x delay   go   blank x (S - 1)        tokens: 0..A-1 symbols,
                                     \\___ recall: S outputs ___/       A blank, A + 1 go

    The model reads the go marker and must output s_1 .. s_S at the last S steps.

    Returns ``tokens (T, B)`` and ``targets (S, B)``, the symbols to recall at the last S steps.
    """
    S, A = symbols, alphabet
    targets = torch.randint(0, A, (S, batch_size), generator=generator)
    blank = torch.full((delay, batch_size), A)
    go = torch.full((1, batch_size), A + 1)
    tail = torch.full((S - 1, batch_size), A)
    return torch.cat([targets, blank, go, tail]), targets


def temporal_order_batch(generator: torch.Generator, batch_size: int, length: int):
    """The temporal order problem (Hochreiter & Schmidhuber 1997, experiment 6a) as Pascanu,
    Mikolov & Bengio (2013) generate it (their ``tempOrder.py``).

    A stream of ``length`` one-hot symbols over 6 channels: A, B (0, 1) and the distractors
    c, d, e, f (2..5). One of {A, B} sits at a random step in [T/10, 2T/10), another at a
    random step in [5T/10, 6T/10); every other step is a random distractor. The class is the
    order seen, ``first + 2 * second``: AA 0, BA 1, AB 2, BB 3.

    Returns ``xs (T, B, 6)`` float and ``target (B,)`` int64 in 0..3.
    """
    T, B = length, batch_size
    if T < 10:
        raise ValueError(f"the temporal order problem needs a length of at least 10, got {T}")
    symbols = torch.randint(2, 6, (T, B), generator=generator)
    first = torch.randint(0, T // 10, (B,), generator=generator) + T // 10
    second = torch.randint(0, T // 10, (B,), generator=generator) + 5 * T // 10
    v0 = torch.randint(0, 2, (B,), generator=generator)
    v1 = torch.randint(0, 2, (B,), generator=generator)
    cols = torch.arange(B)
    symbols[first, cols] = v0
    symbols[second, cols] = v1
    return torch.nn.functional.one_hot(symbols, 6).float(), v0 + 2 * v1


def synthetic_series(rows: int, seed: int) -> Series:
    """An hourly two-column series: ``load`` = daily + weekly cycles + AR(1) noise, and
    ``temp``, a smoothed copy of ``load`` three hours late plus noise (the default target)."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    noise = np.zeros(rows)
    shocks = rng.normal(0.0, 0.3, rows)
    for i in range(1, rows):
        noise[i] = 0.9 * noise[i - 1] + shocks[i]                   # AR(1), phi 0.9
    load = np.sin(2 * np.pi * t / 24) + 0.5 * np.sin(2 * np.pi * t / 168) + noise
    lagged = np.concatenate([np.zeros(3), load[:-3]])
    temp = np.convolve(lagged, np.ones(4) / 4, mode="same") + rng.normal(0.0, 0.1, rows)
    return Series("<generated>", None, [str(i) for i in t], ["load", "temp"],
                  np.stack([load, temp], axis=1))
