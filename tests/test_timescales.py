"""The 10.9 demonstration (benchmarks/timescales.py, docs/figures/timescales.py): tiny runs
of every strategy and of the clockwork generation experiment in the default run; behind
``-m slow``, one demonstrated success: leaky units recall a symbol 100 steps back, where the
tanh RNN of the same size and budget stays at chance."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from rnnlab.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def timescales():
    return _module(ROOT / "benchmarks" / "timescales.py", "bench_timescales")


@pytest.mark.parametrize("strategy", ["tanh", "leaky-fixed", "leaky-learned", "skip", "delay",
                                      "clockwork", "tanh-2layer"])
def test_every_strategy_trains_and_reports(timescales, strategy):
    r = timescales.run(strategy, 6, 0, task="copy", hidden=8, steps=2, eval_every=1,
                       valid_size=4, d=3, longest=50)
    assert r["strategy"] == strategy and r["task"] == "copy" and r["T"] == 6
    assert 0 <= r["test"] <= 1 and r["success"] == (r["test"] >= 0.99)
    assert [step for step, _ in r["valid_curve"]] == [0, 1, 2]
    adding = timescales.run(strategy, 6, 0, hidden=8, steps=1, valid_size=4, d=3, longest=50)
    assert adding["success"] == (adding["test"] < 0.01)


def test_strategies_are_the_named_cells(timescales):
    names = timescales.cell_names
    assert names("leaky-fixed", 10, 1000) == ["leakyfix1000-rnn"]
    assert names("leaky-learned", 10, 1000) == ["leaky1000-rnn"]
    assert names("skip", 7, 0) == ["skip7-rnn"]
    assert names("delay", 7, 0, chains=3) == ["delay3-rnn", "rnn"]
    model = timescales.Readout(names("leaky-fixed", 10, 100), 3, 4, 2)
    alpha = model.rnn.layers[0].cell.alpha
    torch.testing.assert_close(1 / (1 - alpha[[0, -1]]), torch.tensor([2.0, 100.0]),
                               rtol=1e-3, atol=0)


def test_gradient_flow_has_one_norm_per_step(timescales):
    for strategy in ("tanh", "leaky-fixed", "skip", "clockwork"):
        norms = timescales.flow(strategy, 12, task="adding", hidden=8, d=3, longest=50,
                                batch=4)
        assert len(norms) == 12 and all(n >= 0 for n in norms) and max(norms) > 0


def test_clockwork_generation_setting(timescales):
    signal = timescales.audio_signal(0)
    assert signal.shape == (320,) and signal.min() == -1 and signal.max() == 1
    assert not torch.equal(signal, timescales.audio_signal(1))
    counts = {k: timescales.Generator(k, h).parameters_used()
              for k, h in timescales.GEN_HIDDEN.items()}
    assert max(counts.values()) < 1.1 * min(counts.values())      # comparable sizes
    cw = timescales.Generator("clockwork", 36)
    assert sorted(set(cw.rnn.cell.period.tolist())) == timescales.GEN_PERIODS
    tanh = timescales.Generator("tanh", 28, gain=1.5)
    torch.testing.assert_close(torch.linalg.svdvals(tanh.rnn.cell.W_hh.detach()),
                               torch.full((28,), 1.5))
    with pytest.raises(ValueError, match="tanh RNN only"):
        timescales.Generator("clockwork", 36, gain=1.5)
    r = timescales.generate("clockwork", 0, 0, steps=2)
    assert r["params"] == counts["clockwork"] and r["nmse"] > 0 and len(r["output"]) == 320


def test_figures_draw_from_results(timescales, tmp_path, monkeypatch):
    figures = _module(ROOT / "docs" / "figures" / "timescales.py", "fig_timescales")
    (tmp_path / "results").mkdir()
    runs = [timescales.run(s, 5, 0, task="copy", hidden=4, steps=1, valid_size=4, d=2,
                           longest=20) for s in ("tanh", "leaky-fixed")]
    gen = timescales.generate("tanh", 0, 0, steps=1)
    data = {"machine": timescales.run_info(), "runs": runs,
            "flow": [{"task": "copy", "strategy": "tanh", "T": 5, "hidden": 4,
                      "norms": timescales.flow("tanh", 5, task="copy", hidden=4, batch=2)}],
            "generation": [gen]}
    (tmp_path / "results" / "timescales.json").write_text(json.dumps(data))
    monkeypatch.setattr(figures, "DOCS", tmp_path)
    paths = figures.main()
    assert [p.name for p in paths] == ["timescales.png", "timescales_flow.png",
                                       "timescales_clockwork.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
    table = figures.success_table(runs)
    assert table[("copy", "tanh")] == {5: (int(runs[0]["success"]), 1)}


@pytest.mark.slow
def test_leaky_units_recall_a_symbol_100_steps_back_where_tanh_stays_at_chance(tmp_path,
                                                                                capsys):
    """The sweep's setting (seed 0): copy memory, one symbol of 8, delay 100, 32 units,
    1500 steps of 64 sequences, Adam 3e-3. Leaky units with fixed time constants 2..1000
    steps reach accuracy 1; the tanh RNN stays near chance (1/8)."""
    accuracy = {}
    for cell in ("leakyfix1000-rnn", "rnn"):
        out = tmp_path / cell
        assert main(["train", "copy", "--out", str(out), "--json", "--set",
                     f"model.cell={cell}", "model.hidden=32", "data.symbols=1",
                     "data.delay=100", "train.steps=1500", "train.seed=0", "train.threads=1",
                     "train.device=cpu", "train.keep_checkpoints=false"]) == 0
        accuracy[cell] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        shutil.rmtree(out)
    assert accuracy["leakyfix1000-rnn"]["test_accuracy"] >= 0.99, accuracy
    assert accuracy["rnn"]["test_accuracy"] < 0.3, accuracy


def test_copy_offset_moves_the_symbol_off_the_step_where_every_clockwork_module_updates(
        timescales):
    kind = type("_Copy", (timescales._Copy,), {"offset": 2})
    cfg = kind.default_config()
    cfg.data.symbols, cfg.data.delay, cfg.data.valid_size, cfg.data.test_size = 1, 3, 2, 2
    tokens, targets = kind(cfg).batch(torch.Generator().manual_seed(0), 5, "cpu")
    blank, go = cfg.data.alphabet, cfg.data.alphabet + 1
    assert tokens.shape == (2 + 1 + 3 + 1, 5)
    assert (tokens[:2] == blank).all() and torch.equal(tokens[2], targets[0])
    assert (tokens[-1] == go).all()
    r = timescales.run("clockwork", 4, 0, task="copy", hidden=8, steps=1, valid_size=4,
                       offset=1)
    assert r["task"] == "copy+1"
