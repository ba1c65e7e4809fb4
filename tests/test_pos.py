"""POS tagging: the CoNLL-U reader, its errors through the CLI, batching, training, predict."""

import gzip
import json
import random
import re

import pytest
import torch

from rnnlab.cli import main
from rnnlab.config import apply_overrides
from rnnlab.data.conllu import Sentence, read_conllu, ud_split_files
from rnnlab.data.text import DataError
from rnnlab.models.tagger import CharCNN, CharEncoder
from rnnlab.tasks import TaskError
from rnnlab.tasks.pos import UNK, Pos
from rnnlab.training import train

TINY = ["train.threads=1", "train.device=cpu"]
TAGGED = re.compile(r"\S+/[A-Z]+")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: a second intra-op thread only adds synchronisation (and on a busy machine
    made the evaluation test 40x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def token_line(i: int, form: str, upos: str) -> str:
    return "\t".join([str(i), form, form.lower(), upos, "_", "_", "0", "dep", "_", "_"])


def conllu(sentences) -> str:
    """CoNLL-U text of [[(form, upos), ...], ...] with a comment before each sentence."""
    blocks = []
    for k, sentence in enumerate(sentences):
        lines = [f"# sent_id = s{k}", "# text = " + " ".join(f for f, _ in sentence)]
        lines += [token_line(i, f, t) for i, (f, t) in enumerate(sentence, start=1)]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks) + "\n"


# A toy language in which "fish" and "ships" are nouns after a determiner or adjective and
# verbs after a noun: the tag of a word depends on its context, as in real POS tagging.
LEXICON = {"DET": ["the", "a", "this", "every"], "ADJ": ["big", "small", "red", "old"],
           "NOUN": ["cat", "dog", "man", "bird", "fish", "ships"],
           "VERB": ["sees", "likes", "chases", "fish", "ships"]}


def toy_sentence(rng: random.Random):
    def noun_phrase():
        words = [(rng.choice(LEXICON["DET"]), "DET")]
        words += [(rng.choice(LEXICON["ADJ"]), "ADJ") for _ in range(rng.randint(0, 2))]
        return words + [(rng.choice(LEXICON["NOUN"]), "NOUN")]
    first = noun_phrase()
    if rng.random() < 0.5:
        first[0] = (first[0][0].capitalize(), "DET")
    return first + [(rng.choice(LEXICON["VERB"]), "VERB")] + noun_phrase() + [(".", "PUNCT")]


def toy_corpus(n: int, seed: int = 0):
    rng = random.Random(seed)
    return [toy_sentence(rng) for _ in range(n)]


@pytest.fixture
def toy_folder(tmp_path):
    folder = tmp_path / "ud_toy"
    folder.mkdir()
    (folder / "xx_toy-ud-train.conllu").write_text(conllu(toy_corpus(300, 0)), encoding="utf-8")
    (folder / "xx_toy-ud-dev.conllu.gz").write_bytes(
        gzip.compress(conllu(toy_corpus(40, 1)).encode()))
    (folder / "xx_toy-ud-test.conllu").write_text(conllu(toy_corpus(40, 2)), encoding="utf-8")
    return folder


def pos_task(path, *overrides) -> Pos:
    cfg = apply_overrides(Pos.default_config(), [
        f"data.path={path}", "model.word_embed=16", "model.char_embed=8", "model.char_hidden=8",
        "model.hidden=16", *overrides])
    return Pos(cfg)


# --- the CoNLL-U reader ---

TINY_CONLLU = "\n".join([
    "# newdoc id = d1",
    "# sent_id = 1",
    "# text = I don't know.",
    token_line(1, "I", "PRON"),
    "2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_",
    token_line(2, "do", "AUX"),
    token_line(3, "n't", "PART"),
    token_line(4, "know", "VERB"),
    "4.1\tknows\tknow\tVERB\t_\t_\t_\t_\t2:conj\t_",
    token_line(5, ".", "PUNCT"),
    "",
    "# sent_id = 2",
    token_line(1, "Ünïcode", "PROPN"),
    token_line(2, "#", "SYM"),                 # a FORM "#" is a word, not a comment
    "",
    "",                                        # two blank lines: still one boundary
    token_line(1, "Last", "ADJ"),              # no blank line at the end of the file
])
TINY_SENTENCES = [
    Sentence(("I", "do", "n't", "know", "."), ("PRON", "AUX", "PART", "VERB", "PUNCT")),
    Sentence(("Ünïcode", "#"), ("PROPN", "SYM")),
    Sentence(("Last",), ("ADJ",)),
]


@pytest.mark.parametrize("name", ["tiny.conllu", "tiny.conllu.gz", "crlf.conllu"])
def test_reader_skips_comments_multiword_tokens_and_empty_nodes(tmp_path, name):
    text = TINY_CONLLU.replace("\n", "\r\n") if name.startswith("crlf") else TINY_CONLLU
    data = ("\ufeff" + text).encode("utf-8")
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    assert read_conllu(path) == TINY_SENTENCES


def test_ud_split_files_finds_plain_and_gz(toy_folder, tmp_path):
    files = ud_split_files(toy_folder)
    assert {k: p.name for k, p in files.items()} == {
        "train": "xx_toy-ud-train.conllu", "dev": "xx_toy-ud-dev.conllu.gz",
        "test": "xx_toy-ud-test.conllu"}
    (toy_folder / "yy-ud-test.conllu.gz").write_bytes(b"")
    with pytest.raises(DataError, match="more than one test file"):
        ud_split_files(toy_folder)
    with pytest.raises(DataError, match=r"no \*-ud-train.conllu"):
        ud_split_files(tmp_path)


def good_lines(n: int = 30) -> list[str]:
    return conllu(toy_corpus(n)).splitlines()


def malformed(kind: str) -> tuple[bytes, int, str]:
    """(file bytes, the line the error must name, a phrase of its message)."""
    lines = good_lines()
    bad = 7                                    # a token line of the second sentence
    assert lines[bad - 1][0].isdigit() and lines[bad - 1].split("\t")[0] != "1"
    cols = lines[bad - 1].split("\t")
    if kind == "columns":
        lines[bad - 1] = "\t".join(cols[:9])
        return "\n".join(lines).encode(), bad, "expected 10 tab-separated columns"
    if kind == "spaces":
        lines[bad - 1] = " ".join(cols)
        return "\n".join(lines).encode(), bad, "spaces instead of tabs"
    if kind == "id":
        lines[bad - 1] = "\t".join(["two"] + cols[1:])
        return "\n".join(lines).encode(), bad, "is not an integer word index"
    if kind == "order":
        lines[bad - 1] = "\t".join(["9"] + cols[1:])
        return "\n".join(lines).encode(), bad, "out of order"
    if kind == "upos":
        lines[bad - 1] = "\t".join(cols[:3] + ["_"] + cols[4:])
        return "\n".join(lines).encode(), bad, "has no UPOS tag"
    if kind == "empty-upos":
        lines[bad - 1] = "\t".join(cols[:3] + [""] + cols[4:])
        return "\n".join(lines).encode(), bad, "has no UPOS tag"
    if kind == "utf8":
        raw = "\n".join(lines).encode().split(b"\n")
        raw[bad - 1] = raw[bad - 1].replace(b"\t", b"\t\xff", 1)
        return b"\n".join(raw), bad, "not UTF-8: byte 0xff"
    raise AssertionError(kind)


def run_train(data, tmp_path, *overrides) -> int:
    return main(["train", "pos", "--data", str(data), "--out", str(tmp_path / "run"),
                 "--set", *TINY, "train.steps=1", *overrides])


@pytest.mark.parametrize("kind", ["columns", "spaces", "id", "order", "upos", "empty-upos",
                                  "utf8"])
@pytest.mark.parametrize("gz", [False, True])
def test_malformed_line_is_an_error_naming_file_and_line(tmp_path, capsys, kind, gz):
    data, line, phrase = malformed(kind)
    path = tmp_path / ("bad.conllu.gz" if gz else "bad.conllu")
    path.write_bytes(gzip.compress(data) if gz else data)
    assert run_train(path, tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnlab: error: ") and f"{path}:{line}: " in err and phrase in err
    assert not (tmp_path / "run").exists()


def test_malformed_file_in_a_ud_folder_is_named(toy_folder, tmp_path, capsys):
    data, line, _ = malformed("upos")
    dev = toy_folder / "xx_toy-ud-dev.conllu.gz"
    dev.write_bytes(gzip.compress(data))
    assert run_train(toy_folder, tmp_path) == 2
    assert f"{dev}:{line}: " in capsys.readouterr().err


def test_truncated_and_fake_gzip_are_errors_with_a_line(tmp_path, capsys):
    whole = gzip.compress(conllu(toy_corpus(2000)).encode())
    path = tmp_path / "cut.conllu.gz"
    path.write_bytes(whole[:len(whole) // 2])
    assert run_train(path, tmp_path) == 2
    err = capsys.readouterr().err
    found = re.search(re.escape(str(path)) + r":(\d+): the gzip stream ends early", err)
    assert found and int(found.group(1)) > 100       # it got some way in before the cut
    fake = tmp_path / "plain.conllu.gz"
    fake.write_text(conllu(toy_corpus(30)), encoding="utf-8")
    assert run_train(fake, tmp_path) == 2
    assert f"{fake}:1: not a valid gzip file" in capsys.readouterr().err
    unnamed = tmp_path / "packed.conllu"
    unnamed.write_bytes(whole)
    assert run_train(unnamed, tmp_path) == 2
    assert f"{unnamed}:1: not UTF-8" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "no-data", "empty", "too-few", "no-dev",
                                  "bad-cell"])
def test_data_errors_through_the_cli(tmp_path, capsys, case):
    if case == "missing":
        code = run_train(tmp_path / "nope.conllu", tmp_path)
        phrase = "does not exist"
    elif case == "no-data":
        code = main(["train", "pos", "--out", str(tmp_path / "run"), "--set", *TINY])
        phrase = "needs CoNLL-U data: --data DIR"
    elif case == "empty":
        path = tmp_path / "empty.conllu"
        path.write_text("# only a comment\n\n", encoding="utf-8")
        code, phrase = run_train(path, tmp_path), f"{path}: no sentences"
    elif case == "too-few":
        path = tmp_path / "few.conllu"
        path.write_text(conllu(toy_corpus(5)), encoding="utf-8")
        code, phrase = run_train(path, tmp_path), "only 5 sentences"
    elif case == "no-dev":
        (tmp_path / "xx-ud-train.conllu").write_text(conllu(toy_corpus(5)), encoding="utf-8")
        code, phrase = run_train(tmp_path, tmp_path), "no *-ud-dev.conllu"
    else:
        path = tmp_path / "all.conllu"
        path.write_text(conllu(toy_corpus(40)), encoding="utf-8")
        code, phrase = run_train(path, tmp_path, "model.cell=lstmm"), "model.cell must be one of"
    assert code == 2
    assert phrase in capsys.readouterr().err


# --- task: splits, vocabularies, batches ---


def test_folder_splits_and_vocabularies(toy_folder):
    task = pos_task(toy_folder, "data.min_count=1")
    assert task.tags == ["ADJ", "DET", "NOUN", "PUNCT", "VERB"]
    lowered = {w.lower() for ws in LEXICON.values() for w in ws} | {"."}
    assert set(task.words[2:]) == lowered                  # lower-cased keys
    assert {"T", "t", "E", "e"} <= set(task.chars)          # characters keep their case
    sizes = {k: len(v.offsets) - 1 for k, v in task.splits.items()}
    assert sizes == {"train": 300, "valid": 40, "test": 40}


def test_single_file_is_split_90_5_5(tmp_path):
    path = tmp_path / "all.conllu"
    path.write_text(conllu(toy_corpus(100)), encoding="utf-8")
    task = pos_task(path)
    assert {k: len(v.offsets) - 1 for k, v in task.splits.items()} == {
        "train": 90, "valid": 5, "test": 5}


def test_min_count_makes_rare_words_unknown(tmp_path):
    path = tmp_path / "all.conllu"
    corpus = toy_corpus(100) + [[("Zyzzyva", "NOUN")]]
    path.write_text(conllu([corpus[-1]] + corpus[:-1]), encoding="utf-8")
    task = pos_task(path, "data.min_count=2")
    assert "zyzzyva" not in task.words and "cat" in task.words
    assert task.splits["train"].words[0] == UNK


def test_batch_collects_similar_lengths_and_restores_sentences(toy_folder):
    task = pos_task(toy_folder, "data.word_dropout=0")
    gen = torch.Generator().manual_seed(0)
    train_sents = read_conllu(toy_folder / "xx_toy-ud-train.conllu")
    seen = set()
    for _ in range(20):
        b = task.batch(gen, 16, "cpu")
        T, B = b.words.shape
        assert b.lengths.max() - b.lengths.min() <= 2 and T == int(b.lengths.max())
        forms = [task.chars[i] for i in range(len(task.chars))]
        for j in range(B):
            n = int(b.lengths[j])
            tags = tuple(task.tags[int(t)] for t in b.tags[:n, j])
            words = tuple("".join(forms[int(c)] for c in b.chars[:int(b.char_lengths[u]), u])
                          for u in b.types[:n, j].tolist())
            assert Sentence(words, tags) in train_sents
            assert [task.words[int(w)] for w in b.words[:n, j]] == [w.lower() for w in words]
            assert torch.all(b.tags[n:, j] == -100) and torch.all(b.words[n:, j] == 0)
            seen.add(words)
    assert len(seen) > 100


def test_word_dropout_rate(toy_folder):
    task = pos_task(toy_folder, "data.word_dropout=0.25", "data.min_count=1")
    gen = torch.Generator().manual_seed(0)
    unk = real = 0
    for _ in range(50):
        b = task.batch(gen, 32, "cpu")
        mask = b.tags != -100
        unk += int((b.words[mask] == UNK).sum())
        real += int(mask.sum())
    assert 0.2 < unk / real < 0.3


@pytest.mark.parametrize("kind", ["lstm", "cnn"])
def test_char_features_ignore_padding(kind):
    torch.manual_seed(0)
    enc = CharEncoder("lstm", 10, 4, 5) if kind == "lstm" else CharCNN(10, 4, 5)
    chars = torch.tensor([[2, 3, 4], [5, 6, 0], [7, 0, 0]]).t()       # (L, U) = (3, 3)
    lengths = torch.tensor([3, 2, 1])
    together = enc(chars, lengths)                              # (U, 2C)
    for u in range(3):
        alone = enc(chars[:int(lengths[u]), u:u + 1], lengths[u:u + 1])
        assert torch.allclose(together[u], alone[0], atol=1e-6)


@pytest.mark.parametrize("options", [["model.char_model=cnn"], ["model.char_hidden=0"],
                                     ["model.cell=gru", "model.num_layers=2"]])
def test_model_options_train_a_step(toy_folder, options):
    task = pos_task(toy_folder, *options)
    model = task.build_model()
    loss, metrics = task.loss(model, task.batch(torch.Generator().manual_seed(0), 4, "cpu"))
    loss.backward()
    assert torch.isfinite(loss) and 0 <= metrics["accuracy"] <= 1
    assert all(p.grad is not None for p in model.parameters())
    assert (model.chars is None) == ("model.char_hidden=0" in options)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_forward_only_tagger_does_not_see_later_words(toy_folder, bidirectional):
    task = pos_task(toy_folder, f"model.bidirectional={str(bidirectional).lower()}")
    model = task.build_model().eval()
    batch = task.batch(torch.Generator().manual_seed(0), 2, "cpu")
    T = int(batch.lengths.min())
    assert T >= 2
    changed = batch._replace(words=batch.words.clone())
    changed.words[T - 1] = (changed.words[T - 1] + 1) % len(task.words)   # the last word
    with torch.no_grad():
        before, after = model(batch)[:T - 1], model(changed)[:T - 1]
    assert torch.equal(before, after) == (not bidirectional)


def test_evaluate_counts_every_token(toy_folder):
    task = pos_task(toy_folder, "data.eval_batch=7")
    model = task.build_model().eval()
    metrics = task.evaluate(model, "test", "cpu")
    # the same figures sentence by sentence
    split, correct, n = task.splits["test"], 0, 0
    for i in range(len(split.offsets) - 1):
        b = task._collate(split, [i], "cpu")
        with torch.no_grad():
            correct += int((model(b).argmax(-1) == b.tags).sum())
        n += int(b.lengths[0])
    assert n == sum(len(s) for s in toy_corpus(40, 2))
    assert metrics["accuracy"] == pytest.approx(correct / n)


# --- training and predict ---


def test_training_beats_the_majority_tag(toy_folder):
    task = pos_task(toy_folder, *TINY, "train.steps=120", "train.batch_size=16",
                    "train.lr=1e-2", "train.eval_every=120")
    counts = torch.bincount(task.splits["test"].tags)
    majority = float(counts.max() / counts.sum())
    torch.manual_seed(0)
    untrained = task.evaluate(task.build_model().eval(), "test", "cpu")["accuracy"]
    model, final = train(task, task.cfg, None, log=lambda _: None, progress=False)
    assert majority < 0.4 and untrained < 0.5
    assert final["test_accuracy"] > 0.95 and final["valid_accuracy"] > 0.95
    # the context decides: "fish" after a determiner is a noun, after a noun a verb
    assert task.predict(model, ["The fish fish a fish ."], "cpu") == [
        "The/DET fish/NOUN fish/VERB a/DET fish/NOUN ./PUNCT"]


@pytest.fixture
def pos_run(toy_folder, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "pos", "--data", str(toy_folder), "--out", str(out), "--json",
                 "--set", *TINY, "train.steps=40", "train.batch_size=16", "train.lr=1e-2",
                 "train.eval_every=40", "model.word_embed=16", "model.char_embed=8",
                 "model.char_hidden=8", "model.hidden=16"])
    assert code == 0
    return out, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_cli_train_evaluate_predict(pos_run, capsys):
    out, result = pos_run
    assert result["task"] == "pos" and 0 <= result["test_accuracy"] <= 1
    assert set(result) >= {"valid_loss", "valid_accuracy", "test_loss", "test_accuracy"}
    state = json.loads((out / "task_state.json").read_text())
    assert state["tags"] == ["ADJ", "DET", "NOUN", "PUNCT", "VERB"]
    assert main(["evaluate", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["test_accuracy"] == pytest.approx(result["test_accuracy"])

    inputs = ["The cat sees a dog .", "  Quokkas   ❤  big ships  "]     # unknown word and char
    assert main(["predict", str(out), *inputs]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for text, line in zip(inputs, lines):
        pairs = [tok.rsplit("/", 1) for tok in line.split(" ")]
        assert all(TAGGED.fullmatch(tok) for tok in line.split(" "))
        assert [w for w, _ in pairs] == text.split()
        assert {t for _, t in pairs} <= set(state["tags"])
    assert main(["predict", str(out), "--json", "a/b c"]) == 0
    outputs = json.loads(capsys.readouterr().out)["outputs"]
    assert len(outputs) == 1 and outputs[0].startswith("a/b/") and " c/" in outputs[0]


def test_predict_rejects_an_empty_input(toy_folder):
    task = pos_task(toy_folder)
    with pytest.raises(TaskError, match="input 2 is empty"):
        task.predict(task.build_model(), ["the cat", "   "], "cpu")


# --- the real treebank ---


def test_real_ewt_dev_matches_its_source_md(shared_data):
    folder = shared_data("ud_english_ewt")
    files = ud_split_files(folder)
    assert files["dev"].name == "en_ewt-ud-dev.conllu.gz"
    dev = read_conllu(files["dev"])
    # SOURCE.md: dev 2,001 sentences, 25,147 tokens; 17 UPOS tags
    assert len(dev) == 2001 and sum(len(s.words) for s in dev) == 25147
    assert len({t for s in dev for t in s.tags}) == 17
    assert dev[0].words[:3] == ("From", "the", "AP") and dev[0].tags[:3] == ("ADP", "DET", "PROPN")
    assert all(len(s.words) == len(s.tags) > 0 for s in dev)


@pytest.mark.slow
def test_default_config_tags_ewt(shared_data, tmp_path, capsys):
    folder = shared_data("ud_english_ewt")
    assert main(["train", "pos", "--data", str(folder), "--out", str(tmp_path / "run"),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["test_accuracy"] >= 0.93
