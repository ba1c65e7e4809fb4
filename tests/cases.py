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
