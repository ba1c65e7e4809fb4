"""Tasks: data generators, splits, vocabularies, models for every cell, sampling."""

import math

import pytest
import torch

from rnnlab import CELL_NAMES
from rnnlab.config import apply_overrides
from rnnlab.data import DataError, default_corpus, read_text
from rnnlab.data.synthetic import adding_batch, copy_batch
from rnnlab.tasks import TASKS, Adding, CharLM, Copy, TaskError


def test_adding_batch_marks_one_value_in_each_half():
    xs, target = adding_batch(torch.Generator().manual_seed(0), 256, 30)
    assert xs.shape == (30, 256, 2) and target.shape == (256,)
    marks = xs[..., 1]
    assert torch.all(marks.sum(0) == 2)
    assert torch.all(marks[:15].sum(0) == 1) and torch.all(marks[15:].sum(0) == 1)
    assert torch.allclose((xs[..., 0] * marks).sum(0), target)
    assert 0 <= xs[..., 0].min() and xs[..., 0].max() <= 1


def test_copy_batch_layout():
    tokens, targets = copy_batch(torch.Generator().manual_seed(0), 16, symbols=4, delay=5,
                                 alphabet=8)
    assert tokens.shape == (2 * 4 + 5, 16) and targets.shape == (4, 16)
    assert torch.equal(tokens[:4], targets) and targets.max() < 8
    assert torch.all(tokens[4:9] == 8) and torch.all(tokens[9] == 9)
    assert torch.all(tokens[10:] == 8) and tokens.shape[0] - 9 == 4   # recall steps


def test_synthetic_held_out_sets_do_not_depend_on_train_seed():
    a = Adding(apply_overrides(Adding.default_config(), ["train.seed=1", "data.length=10"]))
    b = Adding(apply_overrides(Adding.default_config(), ["train.seed=2", "data.length=10"]))
    assert torch.equal(a.splits["test"][0], b.splits["test"][0])
    assert not torch.equal(a.splits["valid"][0], a.splits["test"][0])


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("name", ["adding", "copy"])
def test_every_cell_trains_a_step_on_every_synthetic_task(name, cell):
    cls = TASKS[name]
    cfg = apply_overrides(cls.default_config(), [
        f"model.cell={cell}", "model.hidden=8", "data.valid_size=4", "data.test_size=4",
        *(["data.length=6"] if name == "adding" else ["data.delay=2", "data.symbols=2"])])
    task = cls(cfg)
    model = task.build_model()
    loss, _ = task.loss(model, task.batch(torch.Generator().manual_seed(0), 3, "cpu"))
    loss.backward()
    assert math.isfinite(loss.item())
    assert all(p.grad is not None for p in model.parameters())
    assert set(task.evaluate(model, "test", "cpu")) >= {"loss", task.main_metric}


def char_task(tmp_path, text, *overrides):
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    cfg = apply_overrides(CharLM.default_config(), [
        f"data.path={path}", "model.hidden=8", "model.embed=4", "data.seq_len=5", *overrides])
    return CharLM(cfg)


def test_char_split_is_contiguous_90_5_5_with_full_vocab(tmp_path):
    text = "".join(chr(ord("a") + i % 26) for i in range(1000)) + "ü"
    task = char_task(tmp_path, text)
    parts = {k: task.decode(v.tolist()) for k, v in task.splits.items()}
    assert parts["train"] + parts["valid"] + parts["test"] == text
    assert [len(parts[k]) for k in ("train", "valid", "test")] == [901, 50, 50]
    assert task.vocab == "".join(sorted(set(text)))


@pytest.mark.parametrize("embed", [0, 4])
def test_char_bpc_is_cross_entropy_in_bits(tmp_path, embed):
    task = char_task(tmp_path, "abcab" * 40, f"model.embed={embed}", "data.eval_streams=2")
    model = task.build_model().eval()
    metrics = task.evaluate(model, "valid", "cpu")
    ids = task.splits["valid"]
    L = (len(ids) - 1) // 2
    x, y = ids[:2 * L].view(2, L).t(), ids[1:2 * L + 1].view(2, L).t()
    with torch.no_grad():
        logits, _ = model(x)
    nats = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).item()
    assert metrics["bpc"] == pytest.approx(nats / math.log(2), rel=1e-5)


def test_char_generate(tmp_path):
    task = char_task(tmp_path, "hello world. " * 10)
    model = task.build_model()
    greedy = [task.generate(model, "he", 20, 0.0, torch.Generator().manual_seed(s), "cpu")
              for s in (0, 1)]
    assert greedy[0] == greedy[1] and greedy[0].startswith("he") and len(greedy[0]) == 22
    sampled = task.generate(model, None, 10, 1.0, torch.Generator().manual_seed(0), "cpu")
    assert len(sampled) == 11 and set(sampled) <= set(task.vocab)
    with pytest.raises(TaskError, match="'xy'"):
        task.generate(model, "hey x", 5, 1.0, torch.Generator(), "cpu")


def test_text_errors(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok\n\xff")
    with pytest.raises(DataError, match="offset 3 .line 2"):
        read_text(path)
    with pytest.raises(DataError, match="directory"):
        read_text(tmp_path)


def test_default_corpus_is_english_text():
    text = default_corpus()
    assert len(text) > 400_000 and text.count(" the ") > 1000


def test_task_registry_descriptions():
    assert {"char-lm", "adding", "copy"} <= set(TASKS)
    for name, cls in TASKS.items():
        assert cls.name == name and cls.description and "\n" not in cls.description
    assert Copy.main_metric == "accuracy" and Adding.main_metric == "mse"
