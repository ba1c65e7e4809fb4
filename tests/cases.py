"""Readable pytest ids for crossed parameters: ``product({"lstm": ..., "gru": ...},
flag("bias", off="nobias"), ...)`` -> ``pytest.param``s with ids such as
``lstm-nobias-ragged-reverse`` instead of ``lstm-False-True-True``."""

from __future__ import annotations

import itertools

import pytest


def flag(on: str, off: str = "") -> dict:
    """A boolean axis: its id fragment is ``on`` when True, ``off`` (often nothing) when
    False."""
    return {off: False, on: True}


def product(*axes: dict) -> list:
    """The cross product of ``axes`` (each a dict id fragment -> value, in order), one
    ``pytest.param`` per combination, its id the non-empty fragments joined by "-"."""
    params = []
    for combo in itertools.product(*(list(a.items()) for a in axes)):
        name = "-".join(k for k, _ in combo if k) or "default"
        params.append(pytest.param(*(v for _, v in combo), id=name))
    return params


def pairwise(first: dict, *axes: dict, slow_rest: bool = True) -> list:
    """The cross product of ``first`` with an all-pairs cover of ``axes``: for every value of
    ``first``, every pair of values of any two other axes appears in some case (a greedy
    cover, deterministic). The remaining combinations of the full :func:`product` follow,
    marked ``slow`` (run with ``-m slow``) when ``slow_rest``."""
    every = product(first, *axes)
    lists = [list(a.items()) for a in axes]
    chosen: set[str] = set()
    for head in first:
        uncovered = {(i, a, j, b) for i, j in itertools.combinations(range(len(lists)), 2)
                     for a in range(len(lists[i])) for b in range(len(lists[j]))}
        combos = list(itertools.product(*(range(len(values)) for values in lists)))
        while uncovered:
            best = max(combos, key=lambda c: sum((i, c[i], j, c[j]) in uncovered for i, j in
                                                 itertools.combinations(range(len(c)), 2)))
            uncovered -= {(i, best[i], j, best[j])
                          for i, j in itertools.combinations(range(len(best)), 2)}
            chosen.add("-".join(k for k in [head, *(lists[i][best[i]][0]
                                                   for i in range(len(best)))] if k)
                       or "default")
    cover = [p for p in every if p.id in chosen]
    rest = [pytest.param(*p.values, id=p.id, marks=pytest.mark.slow) if slow_rest else p
            for p in every if p.id not in chosen]
    return cover + rest
