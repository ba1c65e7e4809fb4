"""word-lm: PTB-layout reading, stream layout, carried state, perplexity, presets, epochs,
sampling, errors through the CLI, resume position."""

import json
import math
import random
import re

import pytest
import torch
from torch.nn import functional as F

from rnnlab.cli import main
from rnnlab.config import ConfigError, apply_overrides
from rnnlab.data import DataError
from rnnlab.data.ptb import make_ptb_layout, ptb_layout_lines
from rnnlab.data.tokenize import tokenize_words as tokenize
from rnnlab.data.vocab import EOS, UNK
from rnnlab.tasks import TASKS, TaskError
from rnnlab.tasks.word_lm import WordLM, batchify
from rnnlab.training import rundir, step_decay

WORDS = "the a cat dog sat ran on under mat log and then".split()


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8))) for _ in range(n)]


def write_ptb(root, train=None, valid=None, test=None):
    """A tiny PTB-layout directory; each split a list of lines."""
    root.mkdir(parents=True, exist_ok=True)
    for split, lines, seed in (("train", train, 0), ("valid", valid, 1), ("test", test, 2)):
        lines = sentences({"train": 120, "valid": 15, "test": 15}[split], seed) \
            if lines is None else lines
        (root / f"ptb.{split}.txt").write_text("".join(f" {x} \n" for x in lines),
                                               encoding="utf-8")
    return root


def make_task(root, *overrides, state=None):
    cfg = apply_overrides(WordLM.default_config(), [
        f"data.path={root}", "model.embed=8", "model.hidden=12", "model.dropout=0",
        "data.bptt=5", "train.batch_size=4", "data.eval_streams=3", *overrides])
    return WordLM(cfg, state=state)


def tokens_of(lines):
    return [w for line in lines for w in line.split() + [EOS]]


# --- converter and reading ------------------------------------------------------------------


def test_tokenize_lowercases_and_splits_punctuation():
    assert tokenize("Nay, sir! I don't KNOW.") == ["nay", ",", "sir", "!", "i", "don't",
                                                  "know", "."]


def test_make_ptb_layout_splits_90_5_5_and_replaces_rare_words(tmp_path):
    lines = [f"The cat, line {i % 7}!" for i in range(39)] + ["", "Rare Zebra twice zebra"]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    paths = make_ptb_layout(src, tmp_path / "out", min_count=3)
    assert [p.name for p in paths.values()] == ["ptb.train.txt", "ptb.valid.txt",
                                                "ptb.test.txt"]
    out = {k: p.read_text(encoding="utf-8").splitlines() for k, p in paths.items()}
    assert [len(v) for v in out.values()] == [36, 2, 2]        # 40 non-blank lines
    assert out["train"][0] == "the cat , line 0 !"
    # "zebra" occurs twice, "rare" and "twice" once: all below min_count 3
    assert out["test"][-1] == f"{UNK} {UNK} {UNK} {UNK}"
    assert ptb_layout_lines("\n".join(lines), min_count=1)["test"][-1] == \
        "rare zebra twice zebra"


def test_vocab_from_train_eos_per_line_and_unk_handling(tmp_path):
    root = write_ptb(tmp_path / "d", train=["b a b", "c"], valid=["a z"], test=["q"])
    task = make_task(root, "train.batch_size=1", "data.bptt=1")
    # by count (b 2, <eos> 2: first occurrence decides), then <unk> added: no <unk> in train
    assert task.vocab == ["b", EOS, "a", "c", UNK]
    assert task.decode(task.splits["train"].tolist()) == "b a b\nc\n"
    unk = task.index[UNK]
    assert task.splits["valid"].tolist() == [task.index["a"], unk, task.index[EOS]]
    # a training split that has <unk> (like PTB) gets no second entry
    root2 = write_ptb(tmp_path / "e", train=[f"a {UNK} a", "b"], valid=["zz"], test=["a"])
    task2 = make_task(root2, "train.batch_size=1", "data.bptt=1")
    assert task2.vocab.count(UNK) == 1 and task2.vocab[-1] == "b"
    assert task2.splits["valid"][0] == task2.index[UNK]


def test_default_data_is_the_converted_python_docs():
    task = WordLM(WordLM.default_config())
    assert {EOS, UNK, "the", "."} <= set(task.vocab)
    n = {k: len(v) for k, v in task.splits.items()}
    assert n["train"] > 100_000 and 0.03 < n["valid"] / sum(n.values()) < 0.07


# --- streams and carried state --------------------------------------------------------------


def test_batchify_columns_are_contiguous_streams():
    ids = torch.arange(23)
    data = batchify(ids, 4)                                  # (5, 4)
    assert data.shape == (5, 4)
    for b in range(4):
        assert data[:, b].tolist() == list(range(5 * b, 5 * b + 5))


def test_consecutive_batches_continue_each_stream_and_epochs_wrap(tmp_path):
    task = make_task(write_ptb(tmp_path / "d"))
    ids, B, T = task.splits["train"], 4, 5
    n = len(ids) // B
    E = (n - 1) // T
    assert task.windows_per_epoch == E and E >= 3
    g = torch.Generator().manual_seed(0)
    for epoch in range(2):
        for k in range(E):
            x, y = task.batch(g, B, "cpu")
            assert x.shape == y.shape == (T, B)
            for b in range(B):
                start = b * n + k * T
                assert x[:, b].tolist() == ids[start:start + T].tolist()
                assert y[:, b].tolist() == ids[start + 1:start + T + 1].tolist()
            assert task.position() == {"epoch": epoch, "window": k + 1, "batch_size": B}
    with pytest.raises(TaskError, match="batch_size must stay 4"):
        task.batch(g, 5, "cpu")


def test_state_is_carried_detached_and_reset_each_epoch(tmp_path):
    task = make_task(write_ptb(tmp_path / "d"))
    torch.manual_seed(0)
    model = task.build_model().eval()
    g = torch.Generator().manual_seed(0)
    b1, b2 = task.batch(g, 4, "cpu"), task.batch(g, 4, "cpu")
    task.loss(model, b1)
    assert all(not t.requires_grad for layer in task.carry for t in layer)
    carried, _ = task.loss(model, b2)
    # the carried loss is the loss of window 2 read after window 1 in one pass ...
    logits, _ = model(torch.cat([b1[0], b2[0]]))
    joint = F.cross_entropy(logits[5:].flatten(0, 1), b2[1].flatten())
    assert torch.allclose(carried, joint, atol=1e-6)
    # ... and not the loss from a zero state
    fresh = F.cross_entropy(model(b2[0])[0].flatten(0, 1), b2[1].flatten())
    assert abs(carried.item() - fresh.item()) > 1e-4
    for _ in range(task.windows_per_epoch - 2):
        task.batch(g, 4, "cpu")
        task.loss(model, (b1[0], b1[1]))
    assert task.carry is not None
    task.batch(g, 4, "cpu")                                  # first window of epoch 2
    assert task.carry is None and task.position()["epoch"] == 1


# --- metric ---------------------------------------------------------------------------------


def test_perplexity_is_exp_of_the_loss_over_every_token(tmp_path):
    task = make_task(write_ptb(tmp_path / "d"), "data.eval_streams=3")
    torch.manual_seed(0)
    model = task.build_model().eval()
    ids = task.splits["valid"]
    n = len(ids) - 1
    L = n // 3
    assert n % 3, "the fixture should leave a tail after the 3 x L block"
    # streams 0 and 1 hold L targets each, the last stream runs on to the end of the split
    segments = [ids[0:L + 1], ids[L:2 * L + 1], ids[2 * L:]]
    total = sum(F.cross_entropy(model(s[:-1].view(-1, 1))[0].flatten(0, 1), s[1:],
                                reduction="sum").item() for s in segments)
    metrics = task.evaluate(model, "valid", "cpu")
    assert metrics["loss"] == pytest.approx(total / n, rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]), rel=1e-12)
    one = make_task(tmp_path / "d", "data.eval_streams=1", "data.bptt=150", "train.batch_size=1")
    logits, _ = model(ids[:-1].view(-1, 1))
    whole = F.cross_entropy(logits.flatten(0, 1), ids[1:]).item()
    assert one.evaluate(model, "valid", "cpu")["loss"] == pytest.approx(whole, rel=1e-5)
    _, metrics = task.loss(model, task.batch(torch.Generator(), 4, "cpu"))
    assert set(metrics) == {"perplexity"}


def test_unigram_baseline(tmp_path):
    root = write_ptb(tmp_path / "d", train=["a a b", "a"], valid=["b c"], test=["a"])
    task = make_task(root, "train.batch_size=1", "data.bptt=1")
    # vocab a, <eos>, b, <unk>; train counts 3, 2, 1, 0 -> add-one: 4, 3, 2, 1 over 10
    p = {"a": 0.4, EOS: 0.3, "b": 0.2, UNK: 0.1}
    nats = -(math.log(p[UNK]) + math.log(p[EOS])) / 2        # targets of "b c <eos>"
    got = task.unigram("valid")
    assert got["loss"] == pytest.approx(nats) and got["perplexity"] == pytest.approx(
        math.exp(nats))


# --- presets, init, tying, epochs -----------------------------------------------------------


def test_presets_set_the_zaremba_values():
    small = apply_overrides(WordLM.default_config(), WordLM.presets["small"])
    m, d, t = small.model, small.data, small.train
    assert (m.cell, m.num_layers, m.embed, m.hidden, m.dropout, m.init, m.tie) == \
        ("lstm", 2, 200, 200, 0.0, 0.1, False)
    assert (d.bptt, d.epochs, d.decay_after_epochs) == (20, 13, 4)
    assert (t.optimizer, t.momentum, t.batch_size, t.lr_decay, t.lr_decay_factor) == \
        ("sgd", 0.0, 20, "step", 0.5)
    # lr 1 and clip 5 on the loss summed over the window = lr T and clip 5/T on the mean
    assert (t.lr, t.clip_norm) == (1.0 * d.bptt, 5.0 / d.bptt)
    medium = apply_overrides(WordLM.default_config(), WordLM.presets["medium"])
    m, d, t = medium.model, medium.data, medium.train
    assert (m.num_layers, m.embed, m.hidden, m.dropout, m.init) == (2, 650, 650, 0.5, 0.05)
    assert (d.bptt, d.epochs, d.decay_after_epochs, t.batch_size) == (35, 39, 6, 20)
    assert t.lr == 35.0 and t.clip_norm == pytest.approx(5 / 35)
    assert t.lr_decay_factor == pytest.approx(1 / 1.2) and t.momentum == 0.0


@pytest.mark.parametrize("clip", [5.0, 0.2])
def test_mean_loss_with_lr_T_and_clip_over_T_is_zarembas_update(tmp_path, clip):
    """One SGD step on Zaremba's loss (summed over T, mean over B; lr 1, clip c) moves the
    weights exactly as rnnlab's mean-per-token loss with lr T and clip c/T (c = 5 in the
    paper; c = 0.2 makes the clipping active here)."""
    task = make_task(write_ptb(tmp_path / "d"), "model.init=0.1")
    batch = task.batch(torch.Generator(), 4, "cpu")
    T = batch[0].shape[0]
    after, norms = [], []
    for lr, c, scale in ((1.0, clip, T), (float(T), clip / T, 1)):
        torch.manual_seed(0)
        model = task.build_model()
        task.carry = None
        loss, _ = task.loss(model, batch)
        (loss * scale).backward()
        norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), c).item())
        torch.optim.SGD(model.parameters(), lr=lr).step()
        after.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert norms[0] == pytest.approx(T * norms[1], rel=1e-5)
    assert (norms[0] > clip) == (clip < 1)
    assert torch.allclose(after[0], after[1], atol=1e-6)


def test_uniform_init_and_tied_weights(tmp_path):
    root = write_ptb(tmp_path / "d")
    model = make_task(root, "model.init=0.05").build_model()
    assert all(p.abs().max() <= 0.05 for p in model.parameters())
    tied = make_task(root, "model.tie=true", "model.embed=12").build_model()
    names = dict(tied.named_parameters())
    assert "out.weight" not in names and "out_bias" in names
    logits, _ = tied(torch.zeros(3, 2, dtype=torch.long))
    h, _ = tied.rnn(tied.embed(torch.zeros(3, 2, dtype=torch.long)))
    assert torch.allclose(logits, h @ tied.embed.weight.t() + tied.out_bias)
    with pytest.raises(ConfigError, match="model.tie"):
        make_task(root, "model.tie=true", "model.embed=8").build_model()


def test_epochs_become_steps_and_decay_points(tmp_path):
    root = write_ptb(tmp_path / "d")
    task = make_task(root, "data.epochs=3", "data.decay_after_epochs=1",
                     "train.lr_decay=step", "train.lr_decay_factor=0.5")
    E, t = task.windows_per_epoch, task.cfg.train
    assert (t.steps, t.lr_decay_start, t.lr_decay_every) == (3 * E, E, E)
    for step in range(1, t.steps + 1):      # LambdaLR gives step s the factor of s - 1
        epoch = (step - 1) // E + 1
        assert step_decay(step - 1, t.lr_decay_start, t.lr_decay_every, 0.5) == \
            0.5 ** max(epoch - 1, 0)
    plain = make_task(root, "data.epochs=2", "train.lr_decay_start=7")
    assert plain.cfg.train.steps == 2 * E and plain.cfg.train.lr_decay_start == 7


# --- CLI: train, config.json, evaluate, generate, errors ------------------------------------


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


TINY = ["model.embed=8", "model.hidden=12", "data.bptt=5", "train.batch_size=4",
        "train.eval_every=50", "train.threads=1", "train.device=cpu"]


def test_cli_train_records_resolved_steps_then_evaluate_and_generate(tmp_path, capsys):
    root, out = write_ptb(tmp_path / "d"), tmp_path / "run"
    assert main(["train", "word-lm", "--data", str(root), "--out", str(out), "--json",
                 "--set", *TINY, "data.epochs=2", "train.lr_decay=step"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["valid_perplexity"] == pytest.approx(math.exp(result["valid_loss"]))
    saved = json.loads((out / rundir.CONFIG).read_text())
    E = make_task(root).windows_per_epoch
    assert saved["data"]["epochs"] == 2 and saved["train"]["steps"] == 2 * E
    assert saved["train"]["lr_decay_start"] == 4 * E and saved["train"]["lr_decay_every"] == E
    assert main(["evaluate", str(out), "--json"]) == 0
    again = last_json(capsys.readouterr().out)
    assert again["test_perplexity"] == pytest.approx(result["test_perplexity"], rel=1e-6)

    assert main(["generate", str(out), "--prompt", "the cat", "--length", "12",
                 "--temperature", "0", "--json"]) == 0
    text = last_json(capsys.readouterr().out)["sample"]
    assert text.startswith("the cat")
    assert len(text.split()) + text.count("\n") == 2 + 12      # words + <eos> line breaks
    assert main(["generate", str(out), "--prompt", "the", "--length", "12",
                 "--temperature", "0", "--seed", "5"]) == 0
    greedy = capsys.readouterr().out
    assert main(["generate", str(out), "--prompt", "the", "--length", "12",
                 "--temperature", "0", "--seed", "6"]) == 0
    assert capsys.readouterr().out == greedy
    assert main(["generate", str(out), "--prompt", "the zebra Cat"]) == 2
    assert "not in the model's vocabulary: Cat zebra" in capsys.readouterr().err


def test_generate_samples_words_from_the_vocabulary(tmp_path):
    task = make_task(write_ptb(tmp_path / "d"))
    torch.manual_seed(0)
    model = task.build_model()
    g = torch.Generator().manual_seed(0)
    text = task.generate(model, None, 40, 1.0, g, "cpu", out=tmp_path / "s.txt")
    assert set(text.split()) <= set(WORDS) | {UNK}
    assert (tmp_path / "s.txt").read_text(encoding="utf-8") == text
    with pytest.raises(TaskError, match="temperature"):
        task.generate(model, "the", 3, -1.0, g, "cpu")


@pytest.mark.parametrize("case, message", [
    ("missing-dir", "does not exist"),
    ("missing-split", r"no valid split: expected a file named \*\.valid\.txt"),
    ("bad-utf8", r"ptb\.test\.txt.*not UTF-8.*line 3"),
    ("empty", r"ptb\.valid\.txt' is empty"),
    ("blank", r"ptb\.valid\.txt' has no words"),
    ("two-train", "2 train files"),
    ("file", "not a directory"),
])
def test_data_errors_through_the_cli(tmp_path, capsys, case, message):
    root = write_ptb(tmp_path / "d")
    if case == "missing-dir":
        root = tmp_path / "nowhere"
    elif case == "missing-split":
        (root / "ptb.valid.txt").unlink()
    elif case == "bad-utf8":
        (root / "ptb.test.txt").write_bytes(b"the cat\nsat on\nthe \xff mat\n")
    elif case == "empty":
        (root / "ptb.valid.txt").write_bytes(b"")
    elif case == "blank":
        (root / "ptb.valid.txt").write_text("\n  \n", encoding="utf-8")
    elif case == "two-train":
        (root / "train.txt").write_text("the cat\n", encoding="utf-8")
    elif case == "file":
        root = root / "ptb.train.txt"
    code = main(["train", "word-lm", "--data", str(root), "--out", str(tmp_path / "r"),
                 "--set", *TINY])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnlab: error: ") and err.count("\n") == 1
    assert re.search(message, err), err


def test_too_short_training_split_and_bad_config(tmp_path):
    root = write_ptb(tmp_path / "d", train=["the cat"])
    with pytest.raises(DataError, match="needs at least|need at least"):
        make_task(root)
    with pytest.raises(ConfigError, match="data.bptt"):
        make_task(write_ptb(tmp_path / "e"), "data.bptt=0")


# --- resume position ------------------------------------------------------------------------


def test_position_round_trip_continues_with_the_same_window(tmp_path):
    root = write_ptb(tmp_path / "d")
    a = make_task(root)
    g = torch.Generator()
    for _ in range(a.windows_per_epoch + 2):                # into the second epoch
        a.batch(g, 4, "cpu")
    a.carry = ["something"]
    pos = json.loads(json.dumps(a.position()))              # JSON round trip
    assert pos == {"epoch": 1, "window": 2, "batch_size": 4}
    b = make_task(root, state=a.state_dict())               # a reloaded task, lazy data
    b.set_position(pos)
    assert b.carry is None and b.position() == pos
    for _ in range(a.windows_per_epoch):                    # across the next epoch boundary
        xa, xb = a.batch(g, 4, "cpu"), b.batch(g, 4, "cpu")
        assert torch.equal(xa[0], xb[0]) and torch.equal(xa[1], xb[1])
    assert a.position() == b.position()
    with pytest.raises(TaskError, match="batch_size=5"):
        b.set_position({**pos, "batch_size": 5})
    with pytest.raises(TaskError, match="bad word-lm position"):
        b.set_position({"epoch": 0, "window": a.windows_per_epoch + 1})


def test_resume_through_the_training_loop_continues_the_stream(tmp_path):
    from rnnlab.tasks import load_run
    from rnnlab.training import train

    root = write_ptb(tmp_path / "d")
    E = make_task(root).windows_per_epoch
    over = [f"train.steps={E + 3}", "train.checkpoint_every=4", "train.eval_every=1000",
            "train.threads=1", "train.device=cpu"]
    whole_task = make_task(root, *over)
    whole = tmp_path / "whole"
    whole.mkdir()
    train(whole_task, whole_task.cfg, whole, log=lambda _: None, progress=False)

    class Crash(Exception):
        pass

    def crash_at_8(step, run):
        if step == 8:
            raise Crash

    broken = tmp_path / "broken"
    broken.mkdir()
    task = make_task(root, *over)
    with pytest.raises(Crash):
        train(task, task.cfg, broken, log=lambda _: None, progress=False,
              on_checkpoint=crash_at_8)
    assert task.position() == {"epoch": 0, "window": 8, "batch_size": 4}
    resumed, cfg, _ = load_run(broken, need=(rundir.CONFIG, rundir.TASK_STATE))
    seen = []
    batch = resumed.batch
    resumed.batch = lambda *a: (seen.append(dict(resumed.position())), batch(*a))[1]
    train(resumed, cfg, broken, log=lambda _: None, progress=False, resume=True)
    assert seen[0] == {"epoch": 0, "window": 8, "batch_size": 4}      # window 9 comes next
    assert resumed.position() == whole_task.position() == \
        {"epoch": 1, "window": 3, "batch_size": 4}


def test_registered():
    assert TASKS["word-lm"] is WordLM and WordLM.main_metric == "perplexity"
