"""The three length strategies: their losses, the reversed targets, and the task."""

import json

import pytest
import torch
from torch.nn import functional as F

from rnnlab.cli import main
from rnnlab.config import apply_overrides
from rnnlab.models.length import HaltHead, LengthHead
from rnnlab.tasks import SeqLength


def test_halt_loss_targets_the_last_valid_step():
    logits = torch.randn(4, 2)
    lengths = torch.tensor([3, 1])
    expected = F.binary_cross_entropy_with_logits(
        torch.stack([logits[0, 0], logits[1, 0], logits[2, 0], logits[0, 1]]),
        torch.tensor([0.0, 0.0, 1.0, 1.0]))
    torch.testing.assert_close(HaltHead.loss(logits, lengths), expected)


def test_length_head_is_a_categorical_over_1_to_max_len():
    head = LengthHead(6, 5)
    logits = head(torch.randn(3, 6))
    assert logits.shape == (3, 5)
    lengths = torch.tensor([1, 5, 2])
    torch.testing.assert_close(LengthHead.loss(logits, lengths),
                               F.cross_entropy(logits, torch.tensor([0, 4, 1])))


def test_targets_are_the_reversed_sequences_then_eos():
    task = SeqLength(apply_overrides(SeqLength.default_config(), ["data.max_len=4"]))
    src = torch.tensor([[1, 5], [2, 6], [3, 0], [0, 0]])
    targets = task._targets(src, torch.tensor([3, 2]))
    eos = task.eos
    assert targets[:, 0].tolist() == [3, 2, 1, eos, eos]
    assert targets[:, 1].tolist() == [6, 5, eos, eos, eos]


@pytest.mark.parametrize("strategy", ["eos", "halt", "predict"])
def test_each_strategy_trains_and_decodes(tmp_path, capsys, strategy):
    run = tmp_path / strategy
    assert main(["train", "seq-length", "--out", str(run), "--json", "--set",
                 "train.threads=1", "train.device=cpu", f"model.length={strategy}",
                 "train.steps=80", "model.hidden=48", "data.max_len=6", "data.valid_size=100",
                 "data.test_size=100", "train.eval_every=80"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("test_exact_match", "test_length_accuracy", "test_token_accuracy"):
        assert 0 <= result[key] <= 1
    if strategy == "predict":
        assert result["test_length_accuracy"] > 0.7     # the length is easy to read off
