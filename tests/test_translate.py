"""The translate task: TSV reading and its errors, tokenisation, filters and split, a short
training run through the CLI, beam-search translation of a saved run, and the real
Tatoeba file."""

from __future__ import annotations

import gzip
import json

import pytest
import torch

from rnnlab.cli import main
from rnnlab.config import ConfigError, apply_overrides
from rnnlab.data.text import DataError
from rnnlab.data.tokenize import detokenize_translation as detokenize
from rnnlab.data.tokenize import normalize_translation as normalize
from rnnlab.data.tokenize import tokenize_translation as tokenize
from rnnlab.data.tsv import read_pairs
from rnnlab.tasks import TASKS
from rnnlab.tasks.translate import EOS, PAD, Translate

WORDS = {"one": "un", "two": "deux", "three": "trois", "red": "rouge", "big": "grand",
         "cat": "chat", "dog": "chien", "sees": "voit", "eats": "mange"}


def _toy_tsv(path, n=400, seed=0, extra_column=False):
    """A word-for-word 'language' with French-like punctuation: 'the cat sees one dog .'"""
    g = torch.Generator().manual_seed(seed)
    words = list(WORDS)
    lines = []
    for _ in range(n):
        k = int(torch.randint(2, 6, (1,), generator=g))
        src = [words[int(i)] for i in torch.randint(0, len(words), (k,), generator=g)]
        tgt = [WORDS[w] for w in src]
        line = " ".join(src).capitalize() + ".\t" + " ".join(tgt).capitalize() + "\u202f!"
        lines.append(line + ("\tCC-BY 2.0 (France) Attribution: tatoeba.org" if extra_column
                             else ""))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _cfg(path, *overrides):
    cfg = Translate.default_config()
    cfg.data.path = str(path)
    return apply_overrides(cfg, ["data.prefixes=none", "data.eval_size=20", *overrides])


def test_registered():
    assert TASKS["translate"] is Translate and Translate.main_metric == "bleu"


def test_tokenize_and_detokenize():
    assert tokenize("J\u2019ai froid\u202f!") == ["j'", "ai", "froid", "!"]
    assert tokenize("Qu'est-ce que c'est ?") == ["qu'", "est", "-", "ce", "que", "c'", "est",
                                                 "?"]
    assert tokenize("I'm 3.5 years old, really.") == ["i'", "m", "3.5", "years", "old", ",",
                                                      "really", "."]
    for text in ("i'm 3.5 years old, really.", "qu'est-ce que c'est?", "aujourd'hui",
                 "il a (presque) 20 ans!"):
        assert detokenize(tokenize(text)) == text
    assert normalize("  Ça\u00a0VA  ") == "ça va"


def test_read_pairs_plain_gz_and_extra_columns(tmp_path):
    plain = _toy_tsv(tmp_path / "p.tsv", n=5, extra_column=True)
    gz = tmp_path / "p.tsv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = read_pairs(plain), read_pairs(gz)
    assert a == b and len(a) == 5
    lineno, src, tgt = a[0]
    assert lineno == 1 and "\t" not in tgt and tgt.endswith("\u202f!")


@pytest.mark.parametrize("content,message", [
    ("hello\tbonjour\nno tab here\n", ":2: no TAB"),
    ("hello\tbonjour\n\t bonjour\n", ":2: the first (source) column is empty"),
    ("\n\nhello\t  \n", ":3: the second (target) column is empty"),
    ("", "holds no pairs"),
])
def test_tsv_errors_through_the_cli(tmp_path, capsys, content, message):
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    assert main(["train", "translate", "--data", str(path), "--out",
                 str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnlab: error:") and message in err
    if ":" in message[:3]:
        assert f"{path}{message}" in err


def test_data_errors_through_the_cli(tmp_path, capsys):
    out = ["--out", str(tmp_path / "run")]
    assert main(["train", "translate", "--data", str(tmp_path / "missing.tsv"), *out]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "translate", *out]) == 2
    assert "needs a TSV file: --data FILE" in capsys.readouterr().err
    toy = _toy_tsv(tmp_path / "toy.tsv", n=50)
    assert main(["train", "translate", "--data", str(toy), *out]) == 2   # tutorial prefixes
    assert "no pair is left after the filters" in capsys.readouterr().err
    assert main(["train", "translate", "--data", str(toy), "--set", "data.prefixes=none",
                 *out]) == 2                                               # eval_size=500
    assert "lower data.eval_size" in capsys.readouterr().err
    assert main(["train", "translate", "--data", str(toy), "--set", "data.prefixes=none",
                 "data.eval_size=5", "model.sampling_schedule=exponential", *out]) == 2
    assert "0 < k < 1" in capsys.readouterr().err


def test_filters_split_and_vocab(tmp_path):
    path = _toy_tsv(tmp_path / "toy.tsv", n=300)
    task = Translate(_cfg(path))
    sizes = {k: len({" ".join(s) for s, _ in v}) for k, v in task.splits.items()}
    assert sizes["valid"] == sizes["test"] == 20 and sizes["train"] > 50
    seen = {k: {" ".join(s) for s, _ in v} for k, v in task.splits.items()}
    assert not (seen["train"] & seen["test"]) and not (seen["train"] & seen["valid"])
    assert task.src_vocab[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert "chat" in task.tgt_vocab and "cat" in task.src_vocab
    again = Translate(_cfg(path))
    assert again.splits == task.splits                                     # deterministic
    other = Translate(_cfg(path, "data.seed=7"))
    assert other.splits["test"] != task.splits["test"]
    # max_len on either side, max_pairs, reverse, prefixes
    short = Translate(_cfg(path, "data.max_len=4", "data.eval_size=5"))
    assert all(len(s) <= 4 and len(t) <= 4 for v in short.splits.values() for s, t in v)
    few = Translate(_cfg(path, "data.max_pairs=60", "data.eval_size=5"))
    assert sum(len(v) for v in few.splits.values()) == 60
    rev = Translate(_cfg(path, "data.reverse=true"))
    assert "chat" in rev.src_vocab and "cat" in rev.tgt_vocab
    cats = Translate(_cfg(path, "data.prefixes=cat |dog ", "data.eval_size=5"))
    assert all(s[0] in ("cat", "dog") for v in cats.splits.values() for s, _ in v)
    # batches: BOS-shifted input, EOS-terminated target, padding
    src, lengths, tgt_in, tgt_out = task.batch(torch.Generator().manual_seed(0), 8, "cpu")
    assert src.shape[1] == 8 and (tgt_in[0] == 2).all()
    for b in range(8):
        n = int((tgt_out[:, b] != PAD).sum())
        assert tgt_out[n - 1, b] == EOS and (tgt_in[1:n, b] == tgt_out[:n - 1, b]).all()
    assert int(lengths.max()) == src.shape[0]


def test_scheduled_sampling_ratio_follows_the_step(tmp_path):
    path = _toy_tsv(tmp_path / "toy.tsv", n=200)
    task = Translate(_cfg(path, "model.sampling_schedule=inverse-sigmoid",
                          "model.schedule_k=10", "model.hidden=16", "model.embed=8",
                          "model.encoder_hidden=8", "model.readout=0"))
    torch.manual_seed(0)
    model = task.build_model()
    batch = task.batch(torch.Generator().manual_seed(0), 4, "cpu")
    ratios = []
    for step in (1, 30, 100):
        task.set_position({"drawn": step})
        _, metrics = task.loss(model, batch)
        ratios.append(metrics["tf"])
    assert ratios == pytest.approx([10 / (10 + torch.e ** (s / 10)) for s in (1, 30, 100)])
    assert Translate(_cfg(path)).teacher_forcing(10 ** 6) == 1.0           # constant 1.0
    with pytest.raises(ConfigError, match="teacher_forcing"):
        Translate(_cfg(path, "model.teacher_forcing=1.5"))


def test_train_translate_evaluate_through_the_cli(tmp_path, capsys):
    path = _toy_tsv(tmp_path / "toy.tsv", n=400)
    run = tmp_path / "run"
    args = ["train", "translate", "--data", str(path), "--out", str(run), "--json", "--set",
            "data.prefixes=none", "data.eval_size=20", "train.steps=100", "train.lr=0.01",
            "train.eval_every=100", "model.embed=32", "model.encoder_hidden=32",
            "model.hidden=64", "model.readout=0", "model.dropout=0", "model.beam=3",
            "train.batch_size=32"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # a word-for-word toy language: the model must get most of it right
    assert result["test_bleu"] > 50 and result["test_beam_bleu"] > 50, result
    assert result["valid_acc"] > 0.8
    path.rename(tmp_path / "moved.tsv")          # translating needs only the run directory
    assert main(["translate", str(run), "Cat sees one dog.", "Two red zebras", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["inputs"] == ["Cat sees one dog.", "Two red zebras"]
    assert out["outputs"][0] == "chat voit un chien!"
    assert out["outputs"][1].startswith("deux")                   # 'zebras' is <unk>
    assert main(["translate", str(run), "   ", "--json"]) == 2
    assert "nothing to translate" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--data", str(tmp_path / "moved.tsv"), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["test_bleu"] == pytest.approx(result["test_bleu"])


def test_real_tatoeba_head(shared_data):
    path = shared_data("tatoeba_eng_fra") / "fra.txt.gz"
    pairs = read_pairs(path)
    assert len(pairs) == 142_787
    assert pairs[0] == (1, "Go.", "Va !")
    assert tokenize(pairs[1][2]) == ["cours", "!"]            # U+202F before '!' normalised
    cfg = Translate.default_config()
    cfg.data.path = str(path)
    apply_overrides(cfg, ["data.max_pairs=3000", "data.eval_size=200"])
    task = Translate(cfg)
    assert sum(len(v) for v in task.splits.values()) == 3000
    english = [s for v in task.splits.values() for s, _ in v]
    assert all(" ".join(s).startswith(("i am", "i' m", "he", "she", "you", "we", "they"))
               for s in english)
    assert "je" in task.tgt_vocab and "suis" in task.tgt_vocab and "am" in task.src_vocab
    rev = Translate(apply_overrides(cfg, ["data.reverse=true"]))
    assert "suis" in rev.src_vocab and "am" in rev.tgt_vocab


def test_read_pairs_bad_utf8_and_directory(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"ok\tok\n\xff\tx\n")
    with pytest.raises(DataError, match=r"bad.tsv:2: not UTF-8"):
        read_pairs(bad)
    with pytest.raises(DataError, match="is a directory"):
        read_pairs(tmp_path)
