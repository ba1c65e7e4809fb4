"""The tour's pictures reproduce: the runs behind docs/results/*.json, repeated, show what the
pages say they show (slow: minutes each on one thread; ``pytest -m slow``)."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def figures():
    """docs/figures as a package (its scripts import ``from . import ...``)."""
    if "docs.figures" not in sys.modules:
        for name, path in (("docs", ROOT / "docs" / "__init__.py"),
                           ("docs.figures", ROOT / "docs" / "figures" / "__init__.py")):
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
    return sys.modules["docs.figures"]


def committed(name: str) -> dict:
    return json.loads((ROOT / "docs" / "results" / f"{name}.json").read_text())


@pytest.mark.slow
def test_esn_free_run_reproduces_the_committed_figure(tmp_path):
    from rnnlab.tasks import load_run

    final, _, run = figures().train(["mackey-glass"], keep=tmp_path)     # ~15 s
    r = committed("esn")
    assert abs(final["test_log10_nrmse"] - r["final"]["test_log10_nrmse"]) < 0.1
    task, _, model = load_run(run)
    pred, truth = task.free_run(model, "cpu", 0, len(r["truth"]))
    assert float((pred - truth).abs().max()) < 1e-3                 # 8.6e-5 committed


@pytest.mark.slow
def test_gated_cell_solves_the_adding_problem_the_tanh_rnn_cannot(tmp_path):
    # the GRU's and the tanh RNN's runs of docs/figures/adding.py (~1-3 min each, quiet CPU)
    train = figures().train
    gru, _, _ = train(["adding", "--set", "model.cell=gru"], keep=tmp_path / "gru")
    rnn, _, _ = train(["adding", "--set", "model.cell=rnn"], keep=tmp_path / "rnn")
    assert gru["test_mse"] < 0.01
    assert rnn["test_mse"] > 0.15                                    # the mean predictor: 1/6


@pytest.mark.slow
def test_bidirectional_tagger_beats_forward_only(shared_data, tmp_path):
    data = str(shared_data("ud_english_ewt"))
    steps = ["train.steps=500", "train.eval_every=500", "train.checkpoint_every=500"]
    train = figures().train
    bi, _, _ = train(["pos", "--data", data, "--set", *steps], keep=tmp_path / "bi")
    fwd, _, _ = train(["pos", "--data", data, "--set", *steps, "model.bidirectional=false"],
                      keep=tmp_path / "fwd")
    assert bi["test_accuracy"] > fwd["test_accuracy"] + 0.01         # 90.0 vs 86.9 % committed
    assert math.isfinite(bi["test_loss"])
