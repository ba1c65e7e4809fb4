"""Data-parallel training: ``torchrun --nproc_per_node=2 -m rnnlab train ...`` on the CPU
(gloo) keeps the parameters identical across ranks and equals one process training on the
same global batches."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from rnnlab.config import apply_overrides
from rnnlab.tasks import Adding
from rnnlab.training import RANK_STRIDE, clip_gradients, make_optimizer, rundir

SETTINGS = ["train.threads=1", "train.device=cpu", "model.hidden=12", "data.length=10",
            "data.valid_size=32", "data.test_size=32", "train.batch_size=16", "train.steps=6",
            "train.lr=0.01", "train.eval_every=3", "train.checkpoint_every=3"]


def torchrun(*args, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", "-m", "rnnlab", *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ddp") / "run"
    done = torchrun("train", "adding", "--out", str(run), "--json", "--set", *SETTINGS)
    assert done.returncode == 0, done.stderr[-3000:]
    return run, json.loads(done.stdout.strip().splitlines()[-1])


def test_two_processes_stay_identical(ddp_run):
    run, result = ddp_run
    assert result["world_size"] == 2
    assert result["max_param_diff_across_ranks"] == 0.0
    assert (run / rundir.WEIGHTS).is_file() and "test_mse" in result


def test_two_processes_equal_one_process_on_the_global_batch(ddp_run):
    run, _ = ddp_run
    cfg = apply_overrides(Adding.default_config(), SETTINGS)
    tc = cfg.train
    task = Adding(cfg)
    torch.manual_seed(tc.seed)
    model = task.build_model()
    optimizer = make_optimizer(model, tc)
    params = list(model.parameters())
    streams = [torch.Generator().manual_seed(tc.seed + RANK_STRIDE * r) for r in range(2)]
    for _ in range(tc.steps):
        # the global batch: both ranks' halves; the mean of the two half-batch means
        losses = [task.loss(model, task.batch(g, tc.batch_size // 2, "cpu"))[0]
                  for g in streams]
        optimizer.zero_grad()
        (sum(losses) / 2).backward()
        clip_gradients(params, tc.clip_norm, tc.clip_value)
        optimizer.step()
    saved = load_file(str(run / rundir.WEIGHTS))
    for name, value in model.state_dict().items():
        torch.testing.assert_close(saved[name], value, rtol=1e-5, atol=1e-6)


def test_resume_under_two_processes(ddp_run, tmp_path):
    run, _ = ddp_run
    # a finished 2-process run resumes (nothing left to do) under 2 processes, not under 1
    done = torchrun("train", "--resume", str(run), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    from rnnlab.cli import main
    assert main(["train", "--resume", str(run)]) == 2
