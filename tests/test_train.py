"""The training loop and the run directory, on tiny configs."""

import json

import pytest
import torch

from rnnlab.config import apply_overrides
from rnnlab.tasks import Adding, CharLM, load_run
from rnnlab.training import clip_gradients, rundir, train

TINY = ["train.threads=1", "train.device=cpu", "train.log_every=1"]


def tiny_adding(*overrides):
    cfg = apply_overrides(Adding.default_config(), [
        *TINY, "model.hidden=16", "data.length=10", "data.valid_size=200",
        "data.test_size=200", "train.lr=0.01", *overrides])
    return Adding(cfg), cfg


def tiny_char(tmp_path, *overrides):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat. " * 60, encoding="utf-8")
    cfg = apply_overrides(CharLM.default_config(), [
        *TINY, "model.hidden=32", "model.embed=8", "data.seq_len=16", "train.lr=0.01",
        f"data.path={text}", *overrides])
    return CharLM(cfg), cfg


def test_adding_loss_falls(tmp_path):
    task, cfg = tiny_adding("train.steps=40", "train.eval_every=40")
    _, final = train(task, cfg, tmp_path, log=lambda s: None)
    records = rundir.read_metrics(tmp_path / rundir.METRICS)
    valid = [r["mse"] for r in records if r["split"] == "valid"]
    assert valid[-1] < 0.5 * valid[0]               # untrained output is far from the sums
    assert final["test_mse"] == pytest.approx(final["test_loss"])
    assert {"valid_mse", "test_mse", "valid_loss", "test_loss"} <= set(final)


def test_char_lm_loss_falls_and_metrics_are_logged(tmp_path):
    task, cfg = tiny_char(tmp_path, "train.steps=30", "train.eval_every=15")
    run = tmp_path / "run"
    run.mkdir()
    _, final = train(task, cfg, run, log=lambda s: None)
    records = rundir.read_metrics(run / rundir.METRICS)
    train_rows = [r for r in records if r["split"] == "train"]
    assert len(train_rows) == 30
    assert all(r["grad_norm"] > 0 for r in train_rows)
    assert train_rows[-1]["loss"] < 0.6 * train_rows[0]["loss"]
    valid = [r for r in records if r["split"] == "valid"]
    assert [r["step"] for r in valid] == [0, 15, 30]
    assert valid[-1]["bpc"] < valid[0]["bpc"]
    assert final["valid_bpc"] == pytest.approx(valid[-1]["bpc"])
    assert final["test_bpc"] == pytest.approx(final["test_loss"] / torch.log(torch.tensor(2.)))


def test_checkpoints_at_checkpoint_every_with_all_files(tmp_path):
    task, cfg = tiny_adding("train.steps=5", "train.checkpoint_every=2", "train.eval_every=100")
    seen = []

    def on_checkpoint(step, run):
        state = rundir.load_train_state(run / rundir.TRAIN_STATE)
        seen.append((step, state["step"], sorted(p.name for p in run.iterdir())))

    train(task, cfg, tmp_path, log=lambda s: None, on_checkpoint=on_checkpoint)
    assert [s for s, _, _ in seen] == [2, 4, 5]
    assert all(step == saved for step, saved, _ in seen)
    for _, _, files in seen:
        assert {rundir.CONFIG, rundir.TASK_STATE, rundir.WEIGHTS, rundir.TRAIN_STATE,
                rundir.METRICS} <= set(files)
    final_files = {p.name for p in tmp_path.iterdir()}
    assert {rundir.PLOT, rundir.SUMMARY} <= final_files
    assert not [f for f in final_files if f.endswith(".tmp")]
    state = torch.load(tmp_path / rundir.TRAIN_STATE, weights_only=True)
    assert state["step"] == 5 and "optimizer" in state and "batch_rng" in state


def test_reload_gives_identical_weights_and_metrics(tmp_path):
    task, cfg = tiny_char(tmp_path, "train.steps=4", "train.eval_every=4")
    run = tmp_path / "run"
    run.mkdir()
    model, final = train(task, cfg, run, log=lambda s: None)
    task2, cfg2, model2 = load_run(run)
    assert cfg2 == cfg and task2.vocab == task.vocab
    saved, loaded = model.state_dict(), model2.state_dict()
    assert saved.keys() == loaded.keys()
    for key in saved:
        assert torch.equal(saved[key], loaded[key]), key
    model2.eval()
    assert task2.evaluate(model2, "test", "cpu")["bpc"] == pytest.approx(final["test_bpc"])
    config = json.loads((run / rundir.CONFIG).read_text())
    assert config["task"] == "char-lm" and config["train"]["steps"] == 4


def test_same_seed_same_run(tmp_path):
    finals = []
    for _ in range(2):
        task, cfg = tiny_adding("train.steps=3", "train.seed=5")
        finals.append(train(task, cfg, None, log=lambda s: None)[1]["test_mse"])
    assert finals[0] == finals[1]


def test_clipping_records_norm_before_clipping():
    w = torch.nn.Parameter(torch.zeros(4))
    w.grad = torch.tensor([3.0, 4.0, 0.0, 0.0])
    assert clip_gradients([w], clip_norm=1.0, clip_value=None) == pytest.approx(5.0)
    assert w.grad.norm().item() == pytest.approx(1.0)
    w.grad = torch.tensor([3.0, -4.0, 0.5, 0.0])
    clip_gradients([w], clip_norm=None, clip_value=1.0)
    assert torch.equal(w.grad, torch.tensor([1.0, -1.0, 0.5, 0.0]))


@pytest.mark.slow
def test_default_adding_lstm_solves_t100(tmp_path):
    cfg = Adding.default_config()
    _, final = train(Adding(cfg), cfg, tmp_path, log=print)
    assert final["test_mse"] < 0.01


@pytest.mark.slow
def test_default_adding_rnn_stays_near_the_mean_predictor(tmp_path):
    cfg = apply_overrides(Adding.default_config(), ["model.cell=rnn"])
    _, final = train(Adding(cfg), cfg, tmp_path, log=print)
    assert final["test_mse"] > 0.1


@pytest.mark.slow
def test_default_copy_lstm_recalls(tmp_path):
    from rnnlab.tasks import Copy

    cfg = Copy.default_config()
    _, final = train(Copy(cfg), cfg, tmp_path, log=print)
    assert final["test_accuracy"] > 0.9


def test_step_decay_halves_after_start_then_every_interval(tmp_path):
    task, cfg = tiny_adding("train.steps=7", "train.optimizer=sgd", "train.lr=1.0",
                            "train.lr_decay=step", "train.lr_decay_start=3",
                            "train.lr_decay_every=2", "train.lr_decay_factor=0.5")
    train(task, cfg, tmp_path, log=lambda _: None, progress=False)
    lrs = [json.loads(line)["lr"] for line in (tmp_path / rundir.METRICS).read_text().splitlines()
           if json.loads(line)["split"] == "train"]
    # the lr logged after step s is the one the next step uses: step_decay(s)
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125]
