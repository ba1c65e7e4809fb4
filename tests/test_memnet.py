"""End-to-end memory network: the generated stories are right, the model learns task 1."""

import json
import random

import torch

from rnnlab.cli import main
from rnnlab.data.babi import ACTORS, OBJECTS, PLACES, generate_story
from rnnlab.models.memnet import MemN2N, position_encoding


def replay(sentences, question):
    """Answer a generated question by simulating the story (an independent oracle)."""
    where, holder, dropped = {}, {}, {}
    for s in sentences:
        actor, obj_or_place = s[0], s[-2]
        if obj_or_place in PLACES:
            where[actor] = obj_or_place
        elif s[1] in ("picked", "grabbed", "got"):
            holder[obj_or_place] = actor
        else:
            holder.pop(obj_or_place, None)
            dropped[obj_or_place] = where[actor]
    target = question[-2]
    if target in ACTORS:
        return where[target]
    return where[holder[target]] if target in holder else dropped[target]


def test_generated_answers_follow_from_the_story():
    rng = random.Random(0)
    for task in (1, 2):
        for _ in range(300):
            sentences, question, answer, support = generate_story(rng, task, 10)
            assert 2 <= len(sentences) <= 10 and answer in PLACES
            assert replay(sentences, question) == answer
            if task == 2:
                assert question[-2] in OBJECTS and 1 <= len(support) <= 2


def test_position_encoding_and_attention_masks_padding():
    l = position_encoding(6, 4)
    assert l.shape == (6, 4) and torch.allclose(l[:, 0], 1 - torch.arange(1, 7) / 6 -
                                                 (1 / 4) * (1 - 2 * torch.arange(1, 7) / 6))
    model = MemN2N(30, 8, 2, 5, 6)
    stories = torch.zeros(2, 5, 6, dtype=torch.long)
    stories[:, :2, 0] = 7
    model(stories, torch.ones(2, 6, dtype=torch.long))
    assert model.last_attention.shape == (2, 2, 5)
    assert model.last_attention[:, :, 2:].abs().max() < 1e-6     # empty memory slots


def test_memnet_learns_task_1_and_predicts(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "memnet", "--out", str(run), "--json", "--set", "train.threads=1",
                 "train.device=cpu", "train.steps=400", "data.max_sentences=4",
                 "data.valid_size=200", "data.test_size=200", "train.eval_every=400"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["test_accuracy"] > 0.9                 # chance: 1/6 of the places
    assert main(["predict", str(run), "mary went to the kitchen . john went to the garden . "
                 "where is mary ?"]) == 0
    assert capsys.readouterr().out.strip() in PLACES
    assert main(["predict", str(run), "bob went home . where is bob ?"]) == 2
    assert "outside the memnet vocabulary: bob, home" in capsys.readouterr().err
