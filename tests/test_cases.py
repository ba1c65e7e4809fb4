"""tests/cases.py: the all-pairs cover really covers every pair, and the rest is slow."""

from __future__ import annotations

import itertools

from cases import flag, pairwise, product


def test_pairwise_covers_every_pair_for_every_head_and_keeps_the_rest_as_slow():
    axes = ({"a": 1, "b": 2}, flag("x"), flag("y"), {"p": 0, "q": 1, "r": 2}, flag("z"))
    head = {"k1": "k1", "k2": "k2"}
    params = pairwise(head, *axes)
    assert sorted(p.id for p in params) == sorted(p.id for p in product(head, *axes))
    fast = [p.values for p in params if not p.marks]
    assert len(fast) < len(params) / 2
    for k in head:
        rows = [v[1:] for v in fast if v[0] == k]
        for i, j in itertools.combinations(range(len(axes)), 2):
            for a, b in itertools.product(axes[i].values(), axes[j].values()):
                assert any(r[i] == a and r[j] == b for r in rows), (k, i, j, a, b)
