"""Crash-safe training: a run stopped at any moment and resumed with ``--resume`` ends with
weights bit-identical to an uninterrupted run (CPU), and a diverging run keeps its last
good checkpoint."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from rnnlab.cli import main
from rnnlab.config import apply_overrides
from rnnlab.tasks import CharLM, load_run
from rnnlab.training import TrainingError, rundir, train

# dropout (global RNG), random windows (batch RNG), Adam state and a step-decay schedule:
# everything resume has to restore
CHAR = ["train.threads=1", "train.device=cpu", "model.hidden=24", "model.embed=8",
        "model.num_layers=2", "model.dropout=0.3", "data.seq_len=12", "train.batch_size=8",
        "train.lr=0.01", "train.lr_decay=step", "train.lr_decay_start=5",
        "train.lr_decay_every=4", "train.eval_every=5", "train.checkpoint_every=3",
        "train.log_every=2"]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    return path


def char_config(text_file, *overrides):
    return apply_overrides(CharLM.default_config(),
                           [*CHAR, f"data.path={text_file}", *overrides])


class Crash(Exception):
    pass


def weights(run):
    return load_file(str(run / rundir.WEIGHTS))


def assert_bit_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_after_a_crash_is_bit_identical(tmp_path, text_file):
    cfg = char_config(text_file, "train.steps=17")
    whole = tmp_path / "whole"
    whole.mkdir()
    _, final_whole = train(CharLM(cfg), cfg, whole, log=lambda _: None, progress=False)

    broken = tmp_path / "broken"
    broken.mkdir()

    def crash_at_9(step, run):
        if step == 9:
            raise Crash

    with pytest.raises(Crash):
        train(CharLM(cfg), cfg, broken, log=lambda _: None, progress=False,
              on_checkpoint=crash_at_9)
    # the crashed run logged nothing past its checkpoint; simulate a torn line anyway
    with open(broken / rundir.METRICS, "a") as f:
        f.write('{"step": 10, "split": "tra')
    task, cfg2, _ = load_run(broken, need=(rundir.CONFIG, rundir.TASK_STATE))
    _, final_resumed = train(task, cfg2, broken, log=lambda _: None, progress=False,
                             resume=True)

    assert_bit_identical(weights(whole), weights(broken))
    drop = {"train_seconds"}
    assert {k: v for k, v in final_whole.items() if k not in drop} == \
           {k: v for k, v in final_resumed.items() if k not in drop}
    # the metrics log reads as one uninterrupted run
    strip = [{k: v for k, v in r.items() if k != "grad_norm"}
             for r in rundir.read_metrics(whole / rundir.METRICS)]
    again = [{k: v for k, v in r.items() if k != "grad_norm"}
             for r in rundir.read_metrics(broken / rundir.METRICS)]
    assert strip == again


def test_resume_without_a_checkpoint_starts_over(tmp_path, text_file):
    cfg = char_config(text_file, "train.steps=4")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    train(CharLM(cfg), cfg, a, log=lambda _: None, progress=False)
    rundir.write_json(b / rundir.CONFIG, {"task": "char-lm", **rundir.read_json(a / rundir.CONFIG)}
                      | {"task": "char-lm"})
    rundir.write_json(b / rundir.TASK_STATE, rundir.read_json(a / rundir.TASK_STATE))
    assert main(["train", "--resume", str(b), "--json"]) == 0
    assert_bit_identical(weights(a), weights(b))


def test_resume_of_a_finished_run_changes_nothing(tmp_path, text_file, capsys):
    cfg = char_config(text_file, "train.steps=4")
    run = tmp_path / "done"
    run.mkdir()
    train(CharLM(cfg), cfg, run, log=lambda _: None, progress=False)
    before = weights(run)
    assert main(["train", "--resume", str(run), "--json"]) == 0
    assert_bit_identical(before, weights(run))


def test_resume_argument_errors(tmp_path, capsys):
    for argv, needle in ((["train", "char-lm", "--resume", str(tmp_path)], "takes no TASK"),
                         (["train", "--resume", str(tmp_path), "--set", "train.steps=3"],
                          "takes no TASK"),
                         (["train"], "needs a TASK"),
                         (["train", "--resume", str(tmp_path / "nope")], "does not exist"),
                         (["train", "--resume", str(tmp_path)], "missing config.json")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("rnnlab: error:") and needle in err, (argv, err)


class NaNAt:
    """Wraps a task so that the loss at one step is NaN."""

    def __init__(self, task, step):
        self.task, self.bad, self.calls = task, step, 0

    def __getattr__(self, name):
        return getattr(self.task, name)

    def loss(self, model, batch):
        loss, metrics = self.task.loss(model, batch)
        self.calls += 1                         # one training loss per optimizer step
        if self.calls == self.bad:
            loss = loss * float("nan")
        return loss, metrics


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, text_file):
    cfg = char_config(text_file, "train.steps=20")
    run = tmp_path / "nan"
    run.mkdir()
    task = CharLM(cfg)
    with pytest.raises(TrainingError, match=r"step 8: loss is nan.*checkpoint of step 6"):
        train(NaNAt(task, 8), cfg, run, log=lambda _: None, progress=False)
    state = rundir.load_train_state(run / rundir.TRAIN_STATE)
    assert state["step"] == 6
    assert all(torch.isfinite(t).all() for t in weights(run).values())
    assert_bit_identical(weights(run), {k: v for k, v in state["model"].items()})


STEPS = 80


def _cli_train(out, text_file, extra=()):
    return [sys.executable, "-m", "rnnlab", "train", "char-lm", "--data", str(text_file),
            "--out", str(out), "--json", "--set", *CHAR, f"train.steps={STEPS}",
            "train.checkpoint_every=2", *extra]


def _run_to_end(args, env):
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)


def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path, text_file):
    """The issue's test: kill -9 a real ``rnnlab train`` process at random moments, resume
    until it finishes, compare with an uninterrupted run."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    whole = tmp_path / "whole"
    done = _run_to_end(_cli_train(whole, text_file), env)
    assert done.returncode == 0, done.stderr

    run = tmp_path / "killed"
    rng = random.Random(7)
    # one kill during start-up, then one shortly after each of three random checkpoints
    plan = [None] + sorted(rng.sample(range(4, STEPS - 4, 2), 3))
    resumed_from, attempts = [], 0
    while not (run / rundir.SUMMARY).exists():
        attempts += 1
        assert attempts < 20, "the run never finished"
        started = (run / rundir.CONFIG).exists()
        if not started and run.exists():
            # killed before it wrote its config: nothing to resume, start again
            for leftover in run.iterdir():
                leftover.unlink()
        args = (_cli_train(run, text_file) if not started else
                [sys.executable, "-m", "rnnlab", "train", "--resume", str(run), "--json"])
        if not plan:                                     # every planned kill done: finish
            done = _run_to_end(args, env)
            assert done.returncode == 0, done.stderr
            continue
        target = plan.pop(0)
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if target is None:
            time.sleep(rng.uniform(0.0, 1.5))
        else:
            deadline = time.monotonic() + 120
            while (proc.poll() is None and time.monotonic() < deadline
                   and _checkpoint_step(run) < target):
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.1))          # anywhere in the next steps' work
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        resumed_from.append(_checkpoint_step(run))
    # it was killed mid-training at least twice, and resumed from real checkpoints
    assert sum(0 < step < STEPS for step in resumed_from) >= 2, resumed_from
    print("checkpoint steps at the kills:", resumed_from)
    assert_bit_identical(weights(whole), weights(run))
    assert rundir.read_json(whole / rundir.CONFIG) == rundir.read_json(run / rundir.CONFIG)


def _checkpoint_step(run) -> int:
    try:
        return int(rundir.load_train_state(run / rundir.TRAIN_STATE)["step"])
    except (rundir.RunDirError, FileNotFoundError):
        return 0
