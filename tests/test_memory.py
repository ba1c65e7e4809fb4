"""Neural Turing Machine: addressing, read/write, gradients, the three algorithmic tasks."""

import json

import pytest
import torch

from rnnlab import unroll
from rnnlab.cells.memory import NTMCell, address
from rnnlab.cli import main
from rnnlab.data.ntm import copy_batch, recall_batch, repeat_copy_batch


def test_content_addressing_finds_the_matching_slot():
    memory = torch.eye(4).unsqueeze(0) * 3                    # (1, N=4, W=4)
    key = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    one = torch.ones(1, 1)
    no_shift = torch.tensor([[0.0, 1.0, 0.0]])
    w = address(memory, key, 50 * one, one, no_shift, one, torch.full((1, 4), 0.25))
    assert w.argmax() == 2 and w[0, 2] > 0.99


def test_interpolation_shift_and_sharpening():
    memory = torch.randn(1, 5, 3)
    previous = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0]])
    zero, one = torch.zeros(1, 1), torch.ones(1, 1)
    right = torch.tensor([[0.0, 0.0, 1.0]])                  # shift by +1
    w = address(memory, torch.randn(1, 3), one, zero, right, one, previous)
    torch.testing.assert_close(w, torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]]), atol=1e-6,
                               rtol=0)
    blurred = torch.tensor([[0.0, 0.5, 0.3, 0.2, 0.0]])
    sharp = address(memory, torch.randn(1, 3), one, zero, torch.tensor([[0.0, 1.0, 0.0]]),
                    3 * one, blurred)
    expected = blurred ** 3 / (blurred ** 3).sum()
    torch.testing.assert_close(sharp, expected, atol=1e-6, rtol=1e-5)
    assert sharp.sum().item() == pytest.approx(1.0)


def test_ntm_cell_gradcheck_and_shapes():
    torch.manual_seed(0)
    for controller in ("lstm", "ff"):
        cell = NTMCell(3, 2, controller, hidden=4, memory_slots=5, memory_width=3,
                       read_heads=2).double()
        xs = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
        ys, state = unroll(cell, xs)
        assert ys.shape == (4, 2, 2) and state.memory.shape == (2, 15)
        assert torch.allclose(state.weights.view(2, 3, 5).sum(-1),
                              torch.ones(2, 3, dtype=torch.float64))
        small = xs[:3, :1].detach().requires_grad_()
        torch.autograd.gradcheck(lambda x, cell=cell: unroll(cell, x)[0], (small,))


def test_generators():
    g = torch.Generator().manual_seed(0)
    x, y, mask = copy_batch(g, 3, 4)
    assert x.shape == (9, 3, 9) and torch.equal(y[5:], x[:4, :, :8])
    assert mask.sum() == 4 * 3 and x[4, :, 8].eq(1).all()
    x, y, mask = repeat_copy_batch(g, 2, 3, 2)
    assert x.shape == (3 + 1 + 6 + 1, 2, 10)
    assert torch.equal(y[4:7, :, :8], x[:3, :, :8]) and torch.equal(y[7:10, :, :8], x[:3, :, :8])
    assert y[-1, :, 8].eq(1).all() and x[3, :, 9].eq(0.2).all()
    x, y, mask = recall_batch(g, 2, 3)
    # each answer is the item that followed the queried one
    for b in range(2):
        items = [x[k * 4 + 1:(k + 1) * 4, b, :6] for k in range(3)]
        query = x[13:16, b, :6]
        k = next(i for i in range(2) if torch.equal(items[i], query))
        assert torch.equal(y[-3:, b], items[k + 1])


@pytest.mark.parametrize("task", ["ntm-copy", "ntm-repeat-copy", "ntm-recall"])
@pytest.mark.parametrize("arch", ["ntm", "lstm"])
def test_tasks_train_through_the_cli(tmp_path, capsys, task, arch):
    run = tmp_path / "run"
    assert main(["train", task, "--out", str(run), "--json", "--set", "train.threads=1",
                 "train.device=cpu", "train.steps=2", f"model.arch={arch}", "model.hidden=8",
                 "model.memory_slots=6", "model.memory_width=4", "data.valid_size=4",
                 "data.test_size=4"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= result["test_bit_error_rate"] <= 1 and result["test_bits_per_sequence"] >= 0


def test_copy_learns_short_sequences(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "ntm-copy", "--out", str(run), "--json", "--set", "train.threads=1",
                 "train.device=cpu", "train.steps=150", "model.hidden=32",
                 "model.memory_slots=8", "model.memory_width=8", "data.bits=3",
                 "data.max_len=2", "data.test_len=2", "train.lr=0.01", "data.valid_size=50",
                 "data.test_size=50", "train.eval_every=150"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["test_bit_error_rate"] < 0.2          # chance is 0.5
