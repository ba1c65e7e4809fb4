"""Stack.step: one time step through a deep stack equals that step of Stack.forward."""

from __future__ import annotations

import pytest
import torch

import rnnlab


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("skip", [False, True], ids=["plain", "skip"])
def test_stepping_equals_the_whole_sequence(cell, skip):
    torch.manual_seed(0)
    net = rnnlab.Stack.build(cell, 3, 5, num_layers=3, dropout=0.3, skip=skip).double().eval()
    xs = torch.randn(6, 2, 3, dtype=torch.float64)                  # (T, B, I)
    ys, final = net(xs)
    state = [layer.cell.init_state(2, dtype=torch.float64) for layer in net.layers]
    steps = []
    for x in xs:
        state, y = net.step(state, x)
        steps.append(y)
    torch.testing.assert_close(torch.stack(steps), ys, rtol=1e-12, atol=1e-12)
    for mine, theirs in zip(state, final):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12)


def test_step_refuses_what_cannot_step():
    bidir = rnnlab.Stack.build("gru", 3, 4, bidirectional=True)
    with pytest.raises(ValueError, match="forward Recurrent layers"):
        bidir.step([None], torch.randn(2, 3))
    net = rnnlab.Stack.build("gru", 3, 4, num_layers=2)
    with pytest.raises(ValueError, match="one entry per layer"):
        net.step([None], torch.randn(2, 3))
