"""The sentiment task: TSV and SST readers, splits, the many-to-one model, training, predict."""

import json
import random

import pytest
import torch

from rnnlab.cli import main
from rnnlab.config import apply_overrides
from rnnlab.data import DataError
from rnnlab.data.tokenize import tokenize_sentiment as tokenize
from rnnlab.data.tsv import read_labelled
from rnnlab.layers import Recurrent
from rnnlab.models.classifier import SentenceClassifier
from rnnlab.tasks import TASKS
from rnnlab.tasks.sentiment import SST_BINARY, SST_FINE, Sentiment, sst_label

TINY = ["train.threads=1", "train.device=cpu", "model.embed=8", "model.hidden=8"]
GOOD = "good great fine superb lovely nice".split()
BAD = "bad awful poor dull boring ugly".split()
FILLER = "the a movie film plot it was is this and".split()


def separable_corpus(n: int, seed: int = 0) -> str:
    """Sentences of filler words plus one or two sentiment words; label pos / neg."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = rng.choices(FILLER, k=rng.randint(2, 9))
        for _ in range(rng.randint(1, 2)):
            words.insert(rng.randint(0, len(words)), rng.choice(GOOD if label == "pos" else BAD))
        lines.append(" ".join(words) + f"\t{label}")
    return "\n".join(lines) + "\n"


def task_for(path, *overrides):
    cfg = apply_overrides(Sentiment.default_config(), [f"data.path={path}", *overrides])
    return Sentiment(cfg)


def test_registered_and_tokenizer():
    assert TASKS["sentiment"] is Sentiment and Sentiment.main_metric == "accuracy"
    assert tokenize("It isn't BAD, it's 8.5/10!") == [
        "it", "is", "n't", "bad", ",", "it", "'s", "8.5", "/", "10", "!"]
    assert tokenize("Slow-moving", lowercase=False) == ["Slow-moving"]


def test_read_labelled_splits_on_last_tab_and_keeps_nel(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_bytes("one\ttab inside \t1\r\n\nnext \u0085 line\t0\n".encode())
    assert read_labelled(path) == [("one\ttab inside ", "1", 1), ("next \u0085 line", "0", 3)]


@pytest.mark.parametrize("line, what", [
    ("no tab here 1", "no TAB"),
    ("a sentence\t  ", "empty label"),
    ("   \t1", "empty sentence"),
    ("\u00a0\u2003\t1", "empty sentence"),
])
def test_tsv_errors_through_the_cli_name_file_and_line(tmp_path, capsys, line, what):
    path = tmp_path / "data.tsv"
    path.write_text(f"a fine film\t1\nawful\t0\n{line}\n", encoding="utf-8")
    code = main(["train", "sentiment", "--data", str(path), "--out", str(tmp_path / "r"),
                 "--set", *TINY, "train.steps=1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"rnnlab: error: {path}:3: "), err
    assert what in err


def test_data_errors(tmp_path, capsys):
    def error(*args):
        code = main(["train", "sentiment", *args, "--out", str(tmp_path / "r"),
                     "--set", *TINY, "train.steps=1"])
        assert code == 2
        return capsys.readouterr().err

    assert "--data PATH" in error()
    assert "unknown model.cell 'lsmt'; valid cells: rnn" in error("--set", "model.cell=lsmt")
    assert "does not exist" in error("--data", str(tmp_path / "nope"))
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    assert "no train/dev/test files" in error("--data", str(empty_dir))
    one_label = tmp_path / "one.tsv"
    one_label.write_text("".join(f"s{i}\tyes\n" for i in range(20)), encoding="utf-8")
    assert "single label 'yes'" in error("--data", str(one_label))
    few = tmp_path / "few.tsv"
    few.write_text("a\t1\nb\t0\n", encoding="utf-8")
    assert "too few" in error("--data", str(few))
    tsv = tmp_path / "ok.tsv"
    tsv.write_text(separable_corpus(40), encoding="utf-8")
    assert "apply to SST trees only" in error("--data", str(tsv), "--set", "data.binary=true")
    assert "apply to SST trees only" in error("--data", str(tsv), "--config", "full")
    split = tmp_path / "split"
    split.mkdir()
    (split / "train.txt").write_text("(3 (3 good))\n", encoding="utf-8")
    assert "no dev or test file" in error("--data", str(split))
    (split / "dev.txt").write_text("(3 (3 good))\n", encoding="utf-8")
    (split / "test.txt").write_text("(3 (3 good))\n(7 (3 bad))\n", encoding="utf-8")
    assert f"{split / 'test.txt'}:2: SST label 7 is outside 0..4" in error("--data", str(split))
    (split / "test.txt").write_text("(3 (3 good)\n", encoding="utf-8")
    assert f"{split / 'test.txt'}:1:1: unbalanced" in error("--data", str(split))


def test_labels_are_sorted_numerically_and_saved(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("".join(f"w{i} x\t{[10, 2, 9][i % 3]}\n" for i in range(30)),
                    encoding="utf-8")
    task = task_for(path)
    assert task.labels == ["2", "9", "10"]
    assert task.state_dict()["labels"] == ["2", "9", "10"]
    (tmp_path / "s.tsv").write_text("a\tpos\nb\tneg\n" * 10, encoding="utf-8")
    assert task_for(tmp_path / "s.tsv").labels == ["neg", "pos"]


def test_split_is_seeded_80_10_10_and_independent_of_train_seed(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("".join(f"common word{i // 2} rare{i}\t{i % 2}\n" for i in range(100)),
                    encoding="utf-8")

    def decoded(task, split):
        return [" ".join(task.words[i] for i in t.tolist()) for t in task.splits[split][0]]

    a = task_for(path, "train.seed=1", "data.min_count=1")
    b = task_for(path, "train.seed=2", "data.min_count=1")
    c = task_for(path, "data.split_seed=7", "data.min_count=1")
    assert {k: len(v[0]) for k, v in a.splits.items()} == {"train": 80, "valid": 10,
                                                           "test": 10}
    for split in ("train", "valid", "test"):
        assert decoded(a, split) == decoded(b, split)
    assert decoded(a, "test") != decoded(c, "test")
    train_words = {w for sentence in decoded(a, "train") for w in sentence.split()}
    assert len([w for w in train_words if w.startswith("rare")]) == 80
    # the vocabulary counts the training split only; min_count=2 leaves one-off words <unk>
    d = task_for(path)
    assert d.words[:3] == ["<pad>", "<unk>", "common"]
    assert not any(w.startswith("rare") for w in d.words)
    assert all(t.tolist()[2] == 1 for t in d.splits["test"][0])      # rare{i} -> <unk>


def test_folder_of_labelled_files_ignores_other_files(tmp_path):
    (tmp_path / "a_labelled.txt").write_text(separable_corpus(30, 1), encoding="utf-8")
    (tmp_path / "b.tsv").write_text(separable_corpus(30, 2), encoding="utf-8")
    (tmp_path / "readme.txt").write_text("Score is 1 or 0\t\n", encoding="utf-8")
    task = task_for(tmp_path)
    assert task.format == "tsv" and sum(len(v[0]) for v in task.splits.values()) == 60


SST = ["(3 (2 It) (4 (2 's) (3 good)))", "(1 (2 quite) (1 bad))", "(2 (2 so) (2 so))",
       "(0 (0 (1 awful) (2 .)) (2 yes))", "(4 (4 superb) (2 film))"]


def sst_folder(tmp_path):
    for name in ("train", "dev", "test"):
        (tmp_path / f"{name}.txt").write_text("\n".join(SST) + "\n", encoding="utf-8")
    return tmp_path


def test_sst_fine_and_binary_labels(tmp_path):
    folder = sst_folder(tmp_path)
    fine = task_for(folder)
    assert fine.format == "sst" and fine.labels == SST_FINE
    assert fine.splits["test"][1].tolist() == [3, 1, 2, 0, 4]
    binary = task_for(folder, "data.binary=true")
    assert binary.labels == SST_BINARY
    # neutral (2) dropped; 0-1 -> negative, 3-4 -> positive
    assert binary.splits["valid"][1].tolist() == [1, 0, 0, 1]
    assert [sst_label(k, True) for k in range(5)] == [0, 0, None, 1, 1]
    assert [sst_label(k, False) for k in range(5)] == [0, 1, 2, 3, 4]
    # words of the dropped neutral sentence ("so") are not in the binary vocabulary
    assert "so" not in binary.index and "so" in task_for(folder, "data.min_count=1").index


def test_sst_phrases_train_on_every_labelled_subtree(tmp_path):
    folder = sst_folder(tmp_path)
    task = task_for(folder, "data.phrases=true", "data.binary=true", "data.min_count=1")
    ids, y = task.splits["train"]
    phrases = [([task.words[i] for i in t.tolist()], int(c)) for t, c in zip(ids, y)]
    assert (["it", "'s", "good"], 1) in phrases and (["good"], 1) in phrases
    assert (["awful", "."], 0) in phrases and (["awful"], 0) in phrases
    # 3 + 2 + 0 + 3 + 2 non-neutral nodes; valid and test stay whole sentences
    assert len(phrases) == 10 and len(task.splits["test"][0]) == 4
    with pytest.raises(Exception, match="data.phrases needs an SST folder"):
        task_for(folder / "train.txt", "data.phrases=true")


def test_sst_format_auto_detected_for_a_single_file(tmp_path):
    path = tmp_path / "trees.txt"
    path.write_text("\n".join(SST * 4) + "\n", encoding="utf-8")
    task = task_for(path)
    assert task.format == "sst" and sum(len(v[0]) for v in task.splits.values()) == 20
    with pytest.raises(DataError, match="no TAB"):
        task_for(path, "data.format=tsv")


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pool", ["last", "mean", "max"])
def test_padding_never_changes_the_logits(bidirectional, pool):
    torch.manual_seed(0)
    model = SentenceClassifier(20, 3, "lstm", 6, 5, 2, bidirectional, pool, 0.0).eval()
    seqs = [torch.tensor([3, 4, 5, 6]), torch.tensor([7, 8]), torch.tensor([9])]
    lengths = torch.tensor([4, 2, 1])
    tokens = torch.nn.utils.rnn.pad_sequence(seqs)                       # (4, 3)
    batched = model(tokens, lengths)
    padded_more = model(torch.cat([tokens, torch.zeros(3, 3, dtype=torch.long)]), lengths)
    alone = torch.cat([model(s.view(-1, 1), torch.tensor([len(s)])) for s in seqs])
    assert batched.shape == (3, 3)
    assert torch.allclose(batched, alone, atol=1e-6)
    assert torch.allclose(batched, padded_more, atol=1e-6)


def test_last_pool_is_forward_final_and_backward_final():
    torch.manual_seed(0)
    model = SentenceClassifier(20, 2, "gru", 4, 3, 1, True, "last", 0.0).eval()
    tokens, lengths = torch.tensor([[1, 2], [3, 4], [5, 0]]), torch.tensor([3, 2])
    ys, _ = model.rnn(model.embed(tokens), lengths=lengths)              # (3, 2, 6)
    feats = model.features(ys, lengths)
    assert torch.equal(feats[0], torch.cat([ys[2, 0, :3], ys[0, 0, 3:]]))
    assert torch.equal(feats[1], torch.cat([ys[1, 1, :3], ys[0, 1, 3:]]))
    # the backward half equals a forward pass over the reversed sentence's final state
    backward_cell = model.rnn.layers[0].bwd.cell
    flipped = model.embed(torch.tensor([[4], [2]]))                      # sentence 2 reversed
    out, _ = Recurrent(backward_cell)(flipped)
    assert torch.allclose(out[-1, 0], feats[1, 3:], atol=1e-6)


def test_tiny_training_beats_chance_and_predict(tmp_path, capsys):
    path = tmp_path / "toy.tsv"
    path.write_text(separable_corpus(400), encoding="utf-8")
    out = tmp_path / "run"
    code = main(["train", "sentiment", "--data", str(path), "--out", str(out), "--json",
                 "--set", *TINY, "model.embed=16", "model.hidden=16", "model.dropout=0.0",
                 "train.steps=50", "train.lr=0.01", "train.eval_every=50",
                 "train.batch_size=32"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["test_accuracy"] >= 0.9 and result["valid_accuracy"] >= 0.9, result
    assert 0 <= result["test_loss"] < 0.69
    state = json.loads((out / "task_state.json").read_text())
    assert state["labels"] == ["neg", "pos"] and state["format"] == "tsv"

    assert main(["predict", str(out), "a great movie", "the plot was awful", "!!!"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["pos", "neg"] and len(lines) == 3 and lines[2] in ("pos", "neg")
    assert main(["predict", str(out), "superb", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["inputs"] == ["superb"] and shown["outputs"] == ["pos"]

    assert main(["evaluate", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test_accuracy"] == pytest.approx(result["test_accuracy"])


def test_real_sst_dev_and_uci_files(shared_data, tmp_path):
    dev = shared_data("sst") / "dev.txt"
    for name in ("train", "dev", "test"):        # a given split made of the dev file thrice
        (tmp_path / f"{name}.txt").symlink_to(dev)
    fine = task_for(tmp_path)
    assert fine.format == "sst" and len(fine.splits["valid"][0]) == 1101
    assert torch.bincount(fine.splits["valid"][1]).tolist() == [139, 289, 229, 279, 165]
    binary = task_for(tmp_path, "data.binary=true")
    assert len(binary.splits["test"][0]) == 1101 - 229 == 872
    uci = shared_data("sentiment_labelled_sentences")
    for name in ("amazon_cells", "imdb", "yelp"):
        rows = read_labelled(uci / f"{name}_labelled.txt")
        assert len(rows) == 1000 and sorted({r[1] for r in rows}) == ["0", "1"]
        assert sum(r[1] == "1" for r in rows) == 500
    both = task_for(uci)              # the folder: three files combined, readme.txt ignored
    assert both.format == "tsv" and both.labels == ["0", "1"]
    assert {k: len(v[0]) for k, v in both.splits.items()} == {"train": 2400, "valid": 300,
                                                              "test": 300}
