"""char-lm with ``model.cell=feedback``: the output-to-hidden recurrence of book Fig. 10.4,
trained by teacher forcing and scored free-running, against explicit step-by-step loops."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from rnnlab.cli import main
from rnnlab.config import ConfigError
from rnnlab.models.language import FeedbackLM
from rnnlab.tasks import CharLM


def loop(model: FeedbackLM, tokens, fed):
    """Logits by an explicit loop over t; ``fed(t, o_prev)`` is the vector fed back at t."""
    cell = model.rnn.cell
    xs = model.embed(tokens)
    out, o = [], None
    for t in range(tokens.shape[0]):
        h = torch.tanh(xs[t] @ cell.W_xh.T + fed(t, o) @ cell.W_yh.T + cell.b_h)
        o = h @ cell.W_hy.T + cell.b_y
        out.append(o)
    return torch.stack(out)


def make(V=7, seed=0):
    torch.manual_seed(seed)
    model = FeedbackLM(V, 4, 5).double()
    window = torch.randint(0, V, (9, 3))                            # (T + 1, B)
    return model, window[:-1], window[1:]


def test_free_running_feeds_back_its_own_softmax():
    model, tokens, _ = make()
    logits, state = model(tokens)
    B, V = tokens.shape[1], 7
    expected = loop(model, tokens, lambda t, o: torch.zeros(B, V, dtype=torch.float64)
                    if o is None else torch.softmax(o, -1))
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(state[0], torch.softmax(expected[-1], -1))
    more, _ = model(tokens[:3], state)                               # the state carries on
    torch.testing.assert_close(more[0], loop(model, torch.cat([tokens, tokens[:3]]),
                                             lambda t, o: torch.zeros(3, V, dtype=torch.float64)
                                             if o is None else torch.softmax(o, -1))[8])


def test_teacher_forcing_feeds_back_the_true_previous_character():
    model, tokens, targets = make()
    logits = model.teacher_forced(tokens, targets)
    expected = loop(model, tokens, lambda t, o: F.one_hot(tokens[t], 7).double())
    torch.testing.assert_close(logits, expected)
    # the hand-written backward against the cell's plain-ops reference
    w = torch.randn_like(logits)
    grads = torch.autograd.grad((logits * w).sum(), list(model.parameters()))
    model.rnn.use_kernel = False
    ref = torch.autograd.grad((model.teacher_forced(tokens, targets) * w).sum(),
                              list(model.parameters()))
    for g, r in zip(grads, ref):
        torch.testing.assert_close(g, r)


def small_cfg(path, **model):
    cfg = CharLM.default_config()
    cfg.data.path, cfg.data.seq_len = str(path), 8
    cfg.model.cell, cfg.model.hidden, cfg.model.embed = "feedback", 6, 3
    for key, value in model.items():
        setattr(cfg.model, key, value)
    return cfg


def test_task_trains_by_teacher_forcing_and_scores_both_ways(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat. " * 40, encoding="utf-8")
    task = CharLM(small_cfg(text))
    model = task.build_model()
    assert isinstance(model, FeedbackLM)
    inputs, targets = task.batch(torch.Generator().manual_seed(0), 4, "cpu")
    loss, _ = task.loss(model, (inputs, targets))
    forced = F.cross_entropy(model.teacher_forced(inputs, targets).flatten(0, 1),
                             targets.flatten())
    torch.testing.assert_close(loss, forced)
    scores = task.evaluate(model, "valid", "cpu")
    assert {"bpc", "tf_bpc", "loss"} <= set(scores)
    assert scores["bpc"] != scores["tf_bpc"]
    for bad in ({"num_layers": 2}, {"dropout": 0.1}, {"zoneout": 0.1}):
        with pytest.raises(ConfigError, match="model.cell=feedback"):
            CharLM(small_cfg(text, **bad)).build_model()


def test_cli_trains_the_feedback_model(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("abcabcabd " * 60, encoding="utf-8")
    run = tmp_path / "r"
    assert main(["train", "char-lm", "--data", str(text), "--out", str(run), "--json",
                 "--set", "model.cell=feedback", "model.hidden=6", "model.embed=0",
                 "data.seq_len=10", "train.steps=3", "train.eval_every=3"]) == 0
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in lines if r["split"] == "valid"][-1]
    assert valid["bpc"] > 0 and valid["tf_bpc"] > 0


def test_the_figure_script_draws_the_committed_results(tmp_path):
    path = Path(__file__).resolve().parents[1] / "docs" / "figures" / "feedback_lm.py"
    spec = importlib.util.spec_from_file_location("feedback_lm_figure", path)
    figure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figure)
    out = figure.main(out=tmp_path / "f.png")
    assert out.stat().st_size > 10_000
