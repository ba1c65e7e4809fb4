"""Neural Turing Machine: addressing, read/write, gradients, the three algorithmic tasks."""

import json

import pytest
import torch
from tolerances import F64

from rnnlab import unroll
from rnnlab.cells.memory import NTMCell, address
from rnnlab.cli import main
from rnnlab.data.ntm import copy_batch, recall_batch, repeat_copy_batch
from rnnlab.tasks.ntm import NTMCopy


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


def test_sharpening_survives_a_large_gamma_on_a_spread_weighting():
    # w̃^γ of a weighting spread over 128 slots underflows float32 at γ = 30, (1/128)^30 <
    # 1e-63: computed as w̃^γ / Σ w̃^γ that is 0 / 0; the weights must stay a distribution
    memory = torch.randn(2, 128, 4)
    spread = torch.softmax(torch.randn(2, 128) * 0.1, dim=-1)
    one, none = torch.ones(2, 1), torch.tensor([[0.0, 1.0, 0.0]] * 2)
    w = address(memory, torch.randn(2, 4), one, 0 * one, none, 30 * one, spread)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2))
    assert (w.argmax(-1) == spread.argmax(-1)).all()


def test_addressing_with_given_norms_is_the_same_function():
    torch.manual_seed(0)
    memory = torch.randn(3, 7, 5, dtype=torch.float64)
    args = (torch.randn(3, 5, dtype=torch.float64), torch.rand(3, 1, dtype=torch.float64) * 5,
            torch.rand(3, 1, dtype=torch.float64),
            torch.softmax(torch.randn(3, 3, dtype=torch.float64), -1),
            1 + torch.rand(3, 1, dtype=torch.float64) * 3,
            torch.softmax(torch.randn(3, 7, dtype=torch.float64), -1))
    torch.testing.assert_close(address(memory, *args),
                               address(memory, *args, memory.norm(dim=-1)), **F64)
    # cosine similarity: the weighting of content alone (g = 1, no shift, γ = 1)
    one = torch.ones(3, 1, dtype=torch.float64)
    none = torch.tensor([[0.0, 1.0, 0.0]] * 3, dtype=torch.float64)
    key, beta = args[0], args[1]
    expected = torch.softmax(beta * torch.nn.functional.cosine_similarity(
        memory, key.unsqueeze(1), dim=-1), -1)
    torch.testing.assert_close(address(memory, key, beta, one, none, one, args[5]), expected,
                               **F64)


def test_a_step_reads_the_memory_it_found_then_writes():
    torch.manual_seed(0)
    cell = NTMCell(3, 2, hidden=4, memory_slots=5, memory_width=3).double()
    state = cell.init_state(2)
    old = torch.randn(2, 15, dtype=torch.float64)
    state = state._replace(memory=old)
    new, _ = cell(state, torch.randn(2, 3, dtype=torch.float64))
    w_read, w_write = new.weights.view(2, 2, 5).unbind(1)
    M = old.view(2, 5, 3)
    torch.testing.assert_close(new.reads, torch.einsum("bn,bnw->bw", w_read, M), **F64)
    # the write changed the memory where the write head looked, and only through it:
    # M' - M = w (a - e ⊙ M), so each slot's change is proportional to its write weight
    change = new.memory.view(2, 5, 3) - M
    assert change.abs().sum() > 0
    assert torch.all(change.abs() <= w_write.unsqueeze(-1) * (1 + M.abs()) + 1e-12)
    # the initial read vectors are learned: they reach the first step's output
    ys, _ = unroll(cell, torch.randn(4, 2, 3, dtype=torch.float64))
    ys.sum().backward()
    assert cell.initial_reads.grad is not None and cell.initial_reads.grad.abs().sum() > 0


class _Oracle(torch.nn.Module):
    """Copies its input perfectly (logits ±10), or answers all zeros: scoring checks."""

    def __init__(self, length, perfect=True):
        super().__init__()
        self.length, self.perfect = length, perfect

    def forward(self, x):
        logits = torch.full((x.shape[0], x.shape[1], x.shape[2] - 1), -10.0)
        if self.perfect:
            logits[self.length + 1:] = 20 * x[:self.length, :, :-1] - 10
        return logits, None


def test_bit_error_rate_counts_the_answer_steps_only():
    task = NTMCopy(NTMCopy.default_config())
    g = torch.Generator().manual_seed(0)
    batches = [copy_batch(g, 10, 7)]
    perfect = task.evaluate_batches(_Oracle(7), batches, "cpu")
    assert perfect["bit_error_rate"] == 0 and perfect["bits_per_sequence"] == 0
    zeros = task.evaluate_batches(_Oracle(7, perfect=False), batches, "cpu")
    ones = batches[0][1][8:].mean().item()              # the answer bits that are 1
    assert zeros["bit_error_rate"] == pytest.approx(ones)
    assert zeros["bits_per_sequence"] == pytest.approx(ones * 7 * 8)


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
    short = [] if task == "ntm-recall" else ["data.max_len=3"]
    assert main(["train", task, "--out", str(run), "--json", "--set", "train.threads=1",
                 "train.device=cpu", "train.steps=2", f"model.arch={arch}", "model.hidden=8",
                 "model.memory_slots=6", "model.memory_width=4", "data.valid_size=4",
                 "data.test_size=4", *short]) == 0
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


@pytest.mark.slow
def test_copy_generalises_to_twice_the_training_length(tmp_path, capsys):
    """The documented run (docs/10.12-memory.md): trained on lengths 1..20, bit error at
    length 40 (the test split) within the paper's few per cent."""
    run = tmp_path / "run"
    assert main(["train", "ntm-copy", "--out", str(run), "--json", "--set", "train.threads=1",
                 "train.device=cpu", "train.seed=0"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["valid_bit_error_rate"] <= 0.05
    assert result["test_bit_error_rate"] <= 0.05


@pytest.mark.slow
def test_repeat_copy_generalises_to_twice_the_training_length(tmp_path, capsys):
    """The documented run (docs/10.12-memory.md): trained on lengths and repeats 1..5, bit
    error in range near 0 and at length 10 with 5 repeats (the test split) under 5 %."""
    run = tmp_path / "run"
    assert main(["train", "ntm-repeat-copy", "--out", str(run), "--json", "--set",
                 "train.threads=1", "train.device=cpu", "train.seed=0"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["valid_bit_error_rate"] <= 0.01
    assert result["test_bit_error_rate"] <= 0.05
