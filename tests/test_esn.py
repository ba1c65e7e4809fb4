"""Echo state networks (rnnlab.models.esn) and the mackey-glass task."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rnnlab.cli import main
from rnnlab.config import apply_overrides
from rnnlab.data.mackey_glass import mackey_glass
from rnnlab.models.esn import (
    ESN,
    ReadoutStats,
    Reservoir,
    RLSReadout,
    echo_state_distance,
    memory_capacity,
    spectral_radius,
)
from rnnlab.tasks.mackey_glass import MackeyGlass

f64 = torch.float64


@pytest.fixture(autouse=True)
def one_thread():
    """The time loops here are many tiny ops: a second intra-op thread only adds
    synchronisation (30x slower FORCE on the busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- reservoir -------------------------------------------------------------------------------


@pytest.mark.parametrize("rho, sparsity", [(0.9, 0.9), (1.25, 0.5), (0.5, 0.0)])
def test_spectral_radius_and_sparsity_are_the_targets(rho, sparsity):
    res = Reservoir(2, 60, spectral_radius=rho, sparsity=sparsity, seed=3, dtype=f64)
    assert spectral_radius(res.W) == pytest.approx(rho, rel=1e-10)
    eig = np.abs(np.linalg.eigvals(res.W.numpy())).max()          # an independent check
    assert eig == pytest.approx(rho, rel=1e-10)
    assert int((res.W == 0).sum()) == round(sparsity * 60 * 60)


def test_reservoir_is_seeded_and_scaled():
    a = Reservoir(3, 20, seed=7, input_scaling=0.5, bias_scaling=0.1, feedback_size=2,
                  feedback_scaling=2.0)
    b = Reservoir(3, 20, seed=7, input_scaling=0.5, bias_scaling=0.1, feedback_size=2,
                  feedback_scaling=2.0)
    c = Reservoir(3, 20, seed=8)
    assert all(torch.equal(x, y) for x, y in zip(a.buffers(), b.buffers()))
    assert not torch.equal(a.W, c.W)
    assert a.W_in[:, 0].abs().max() <= 0.1 and a.W_in[:, 1:].abs().max() <= 0.5
    assert a.W_fb.shape == (20, 2) and 1.0 < a.W_fb.abs().max() <= 2.0
    assert a.W_in.shape == (20, 4)


def test_leaky_update_matches_a_hand_loop():
    torch.manual_seed(0)
    res = Reservoir(2, 15, spectral_radius=0.8, sparsity=0.5, input_scaling=0.7,
                    bias_scaling=0.3, leak_rate=0.3, feedback_size=1, seed=1, dtype=f64)
    us, fb, x0 = torch.randn(12, 4, 2, dtype=f64), torch.randn(12, 4, 1, dtype=f64), \
        torch.rand(4, 15, dtype=f64)
    xs = res(us, x0, fb)
    x, a = x0, 0.3
    for t in range(12):
        x_new = torch.tanh(res.W_in @ torch.cat([torch.ones(4, 1, dtype=f64), us[t]], 1).T
                           + res.W @ x.T + res.W_fb @ fb[t].T).T
        x = (1 - a) * x + a * x_new
        torch.testing.assert_close(xs[t], x, rtol=1e-12, atol=1e-12)


def test_reservoir_errors():
    with pytest.raises(ValueError, match="sparsity"):
        Reservoir(1, 5, sparsity=1.0)
    with pytest.raises(ValueError, match="leak_rate"):
        Reservoir(1, 5, leak_rate=0.0)
    res = Reservoir(1, 5, feedback_size=1)
    with pytest.raises(ValueError, match="feedback"):
        res(torch.zeros(3, 1, 1))
    with pytest.raises(ValueError, match="shape"):
        res(torch.zeros(3, 1, 2), feedback=torch.zeros(3, 1, 1))


# --- readouts --------------------------------------------------------------------------------


def _linear_problem(rows=400, features=8, outputs=2, noise=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    Z = torch.randn(rows, features, generator=g, dtype=f64)
    W = torch.randn(outputs, features, generator=g, dtype=f64)
    Y = Z @ W.T + noise * torch.randn(rows, outputs, generator=g, dtype=f64)
    return Z, Y, W


@pytest.mark.parametrize("ridge", [0.0, 1e-3, 10.0])
def test_ridge_readout_equals_lstsq(ridge):
    Z, Y, _ = _linear_problem()
    W = ReadoutStats(8, 2).update(Z, Y).solve(ridge)
    # ridge = least squares on the augmented system [Z; sqrt(l) I] w = [Y; 0]
    A = np.vstack([Z.numpy(), math.sqrt(ridge) * np.eye(8)])
    B = np.vstack([Y.numpy(), np.zeros((8, 2))])
    ref = np.linalg.lstsq(A, B, rcond=None)[0].T
    np.testing.assert_allclose(W.numpy(), ref, rtol=1e-9, atol=1e-11)


def test_esn_fit_equals_lstsq_on_its_extended_states():
    esn = ESN(1, 1, 30, spectral_radius=0.9, sparsity=0.8, seed=2, dtype=f64)
    us = torch.rand(200, 3, 1, dtype=f64, generator=torch.Generator().manual_seed(0))
    targets = torch.roll(us, 2, dims=0)                               # a delayed copy
    esn.fit(us, targets, ridge=1e-6, washout=20)
    xs = esn.reservoir(us)
    Z = esn.extended(us, xs)[20:].reshape(-1, 32).numpy()
    Y = targets[20:].reshape(-1, 1).numpy()
    ref = np.linalg.solve(Z.T @ Z + 1e-6 * np.eye(32), Z.T @ Y).T
    np.testing.assert_allclose(esn.W_out.detach().numpy(), ref, rtol=1e-6, atol=1e-8)
    ys, _ = esn(us)
    assert (ys[20:] - targets[20:]).pow(2).mean() < 0.02 * targets.var()   # recalls u(t-2)


def test_merged_statistics_equal_the_whole():
    Z, Y, _ = _linear_problem(rows=301)
    whole = ReadoutStats(8, 2).update(Z, Y)
    a = ReadoutStats(8, 2).update(Z[:120], Y[:120])
    b = ReadoutStats(8, 2).update(Z[120:].view(-1, 1, 8), Y[120:].view(-1, 1, 2))  # any shape
    for merged in (a + b, a.merge(b), b + a):
        assert merged.count == 301
        torch.testing.assert_close(merged.ZtZ, whole.ZtZ, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(merged.ZtY, whole.ZtY, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(merged.solve(1e-2), whole.solve(1e-2), rtol=1e-10,
                                   atol=1e-12)
    with pytest.raises(ValueError, match="merge"):
        a + ReadoutStats(8, 3)


def _all_reduce_worker(rank, world, port, Z, Y, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        half = len(Z) // 2
        rows = slice(0, half) if rank == 0 else slice(half, None)
        stats = ReadoutStats(Z.shape[1], Y.shape[1]).update(Z[rows], Y[rows]).all_reduce()
        out[rank] = stats.solve(0.5)
        out[2 + rank] = torch.tensor(float(stats.count), dtype=f64)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow          # ~15 s: two spawned processes each import torch
def test_all_reduce_of_two_processes_gives_the_one_process_readout():
    import socket

    import torch.multiprocessing as mp

    Z, Y, _ = _linear_problem(rows=100)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = mp.get_context("spawn").Manager()
    out = manager.dict()
    mp.spawn(_all_reduce_worker, args=(2, port, Z, Y, out), nprocs=2, join=True)
    whole = ReadoutStats(8, 2).update(Z, Y).solve(0.5)
    for rank in (0, 1):
        torch.testing.assert_close(out[rank], whole, rtol=1e-12, atol=1e-12)
        assert out[2 + rank].item() == 100


def test_rls_reaches_the_ridge_solution():
    Z, Y, _ = _linear_problem(rows=300)
    rls = RLSReadout(8, 2, delta=0.5)
    errors = rls.update(Z, Y)
    assert errors.shape == (300, 2)
    ridge = ReadoutStats(8, 2).update(Z, Y).solve(0.5)
    torch.testing.assert_close(rls.W, ridge, rtol=1e-8, atol=1e-10)


def test_rls_with_forgetting_converges_and_tracks_a_change():
    Z, Y, W = _linear_problem(rows=600, noise=0.0)
    rls = RLSReadout(8, 2, delta=1.0, forgetting=0.98)
    rls.update(Z, Y)
    torch.testing.assert_close(rls.W, W, rtol=1e-4, atol=1e-4)
    Z2, Y2, W2 = _linear_problem(rows=600, noise=0.0, seed=1)       # the target changes
    rls.update(Z2, Y2)
    torch.testing.assert_close(rls.W, W2, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="forgetting"):
        RLSReadout(8, 2, forgetting=1.5)


def test_force_learning_makes_a_sine_generator():
    """FORCE (Sussillo & Abbott 2009): RLS while the network's own output is fed back."""
    esn = ESN(0, 1, 200, feedback=True, spectral_radius=1.0, sparsity=0.9, leak_rate=0.3,
              seed=0, dtype=f64)
    t = torch.arange(4000, dtype=f64)
    target = (0.5 * torch.sin(2 * math.pi * t / 60)).view(-1, 1, 1)
    rls = RLSReadout(esn.features, 1, delta=1.0)
    x, y = esn.reservoir.init_state(1), torch.zeros(1, 1, dtype=f64)
    ys, x = esn.generate(3000, x, y, rls=rls, targets=target[:3000])
    errors = (ys - target[:3000]).abs()
    assert errors[:100].max() > 0.05 and errors[-400:].max() < 0.005   # it learned
    free, _ = esn.generate(1000, x, ys[-1])                              # weights now fixed
    assert (free - target[3000:]).abs().max() < 0.01
    assert torch.equal(esn.W_out.detach(), rls.W)


# --- closed loop ------------------------------------------------------------------------------


@pytest.mark.parametrize("feedback", [True, False])
def test_generate_reproduces_the_teacher_forced_run_on_its_own_outputs(feedback):
    """Free running = driving the net with its own outputs: both paths give the same ys."""
    esn = ESN(0 if feedback else 1, 1, 20, feedback=feedback, sparsity=0.5, seed=4, dtype=f64)
    torch.nn.init.normal_(esn.W_out, std=0.3)
    x0, y0 = torch.rand(3, 20, dtype=f64), torch.rand(3, 1, dtype=f64) - 0.5
    free, x = esn.generate(15, x0, y0)
    prev = torch.cat([y0[None], free[:-1]])                           # y(t-1) at each step
    us = prev.new_zeros(15, 3, 0) if feedback else prev
    ys, xs = esn(us, x0, prev if feedback else None)
    torch.testing.assert_close(ys, free, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xs[-1], x, rtol=1e-12, atol=1e-12)


def test_generate_needs_a_way_back():
    esn = ESN(2, 1, 10)
    with pytest.raises(ValueError, match="closed loop"):
        esn.generate(3, torch.zeros(1, 10), torch.zeros(1, 1))


# --- diagnostics ------------------------------------------------------------------------------


def test_echo_state_property_holds_for_small_rho():
    res = Reservoir(1, 100, spectral_radius=0.8, sparsity=0.9, input_scaling=0.5, seed=0,
                    dtype=f64)
    us = torch.rand(300, 2, 1, dtype=f64, generator=torch.Generator().manual_seed(0)) - 0.5
    d = echo_state_distance(res, us)
    assert d.shape == (300,) and d[0] > 0.1
    assert d[199] < 1e-10                                          # after a washout of 200


def test_echo_state_property_fails_for_large_rho_without_input():
    """The documented caveat: rho = 3 and no input drive (input and bias scaling 0) leave
    an autonomous net whose two runs never meet."""
    res = Reservoir(1, 100, spectral_radius=3.0, sparsity=0.9, input_scaling=0.0, seed=0,
                    dtype=f64)
    us = torch.rand(300, 2, 1, dtype=f64, generator=torch.Generator().manual_seed(0))
    d = echo_state_distance(res, us)
    assert d[199:].min() > 0.05


def test_memory_capacity_is_within_bounds_and_grows_with_size():
    caps = {}
    for n in (10, 40):
        res = Reservoir(1, n, spectral_radius=0.9, sparsity=0.5, input_scaling=0.1, seed=0,
                        dtype=f64)
        caps[n], per_delay = memory_capacity(res, length=3000)
        assert per_delay.shape == (2 * n,) and torch.all((per_delay >= 0) & (per_delay <= 1))
        assert 0 < caps[n] <= n
        assert per_delay[0] > 0.9                                # one step back: remembered
    assert caps[40] > caps[10] + 5


def test_linear_reservoir_memory_capacity_approaches_its_size():
    """Jaeger (2002): MC = N for a generic linear reservoir and i.i.d. input."""
    res = Reservoir(1, 12, spectral_radius=0.9, sparsity=0.0, activation="linear", seed=0,
                    dtype=f64)
    mc, _ = memory_capacity(res, length=6000, ridge=1e-12)
    assert 0.85 * 12 < mc <= 12


# --- Mackey-Glass ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_mackey_glass_is_bounded_and_oscillates(method):
    x = mackey_glass(2000, method=method)
    assert x.shape == (2000,) and x.dtype == f64
    assert 0.2 < float(x.min()) and float(x.max()) < 1.5       # the tau=17 attractor
    crossings = ((x[1:] - 0.9) * (x[:-1] - 0.9) < 0).sum()     # quasi-period ~50
    assert 40 < crossings < 160


def test_mackey_glass_is_chaotic_and_integrators_agree_short_term():
    a = mackey_glass(3000, x0=1.2, discard=0)
    b = mackey_glass(3000, x0=1.2 + 1e-9, discard=0)
    gap = (a - b).abs()
    assert gap[:250].max() < 1e-7                               # nearby starts, close at first
    assert gap[-300:].max() > 0.1                               # ... far apart 2500 units on
    fine = mackey_glass(100, dt=0.05, method="rk4", discard=0)
    coarse = mackey_glass(100, dt=0.1, method="rk4", discard=0)
    euler = mackey_glass(100, dt=0.1, method="euler", discard=0)
    assert (fine - coarse).abs().max() < 1e-4 < (fine - euler).abs().max()
    with pytest.raises(ValueError, match="whole"):
        mackey_glass(10, dt=0.3)


# --- the task ---------------------------------------------------------------------------------

SMALL = ["model.size=60", "model.sparsity=0.8", "data.train_length=800", "data.washout=100",
         "data.warmup=100", "data.trials=8", "data.stride=20"]


def test_task_fit_beats_the_untrained_readout_and_reloads(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "mackey-glass", "--out", str(out), "--json",
                 "--set", *SMALL]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["test_nrmse"] < 0.2 and result["valid_nrmse"] < 0.2
    assert result["test_log10_nrmse"] == pytest.approx(math.log10(result["test_nrmse"]))
    for name in ("model.safetensors", "metrics.jsonl", "summary.txt", "free_run.png",
                 "config.json"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    untrained = [r for r in records if r["split"] == "valid" and r["step"] == 0][0]
    fitted = [r for r in records if r["split"] == "train"][0]
    assert untrained["nrmse"] > 5 * result["valid_nrmse"]
    assert fitted["step"] == 1 and fitted["nrmse_1"] < 0.01 and fitted["esp_distance"] < 1e-3

    assert main(["evaluate", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["test_nrmse"] == pytest.approx(result["test_nrmse"], rel=1e-9)
    assert main(["generate", str(out), "--length", "30", "--out", str(tmp_path / "f.png")]) == 0
    text = capsys.readouterr().out.strip().splitlines()
    assert text[0] == "step prediction truth" and len(text) == 31
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_task_errors_through_the_cli(tmp_path, capsys):
    assert main(["train", "mackey-glass", "--out", str(tmp_path / "r"),
                 "--set", "model.sparsity=1.5"]) == 2
    assert "model.sparsity" in capsys.readouterr().err
    assert main(["train", "mackey-glass", "--out", str(tmp_path / "r"),
                 "--set", "data.dt=0.3"]) == 2
    assert "whole numbers" in capsys.readouterr().err
    assert main(["train", "mackey-glass", "--out", str(tmp_path / "r"),
                 "--set", "data.washout=900", "data.train_length=800"]) == 2
    assert "data.washout" in capsys.readouterr().err


def test_rls_and_input_loop_readouts_match_ridge():
    def fitted(*extra):
        task = MackeyGlass(apply_overrides(MackeyGlass.default_config(), [*SMALL, *extra]))
        model = task.build_model()
        metrics = task.fit(model, "cpu")
        return task, model, metrics

    _, ridge_model, ridge = fitted("model.ridge=1e-4", "model.noise=0")
    _, rls_model, rls = fitted("model.ridge=1e-4", "model.noise=0", "model.readout=rls")
    torch.testing.assert_close(rls_model.W_out, ridge_model.W_out, rtol=1e-6, atol=1e-8)
    task, _, inp = fitted("model.loop=input")
    assert inp["nrmse_1"] < 0.01


def test_gradient_readout_trains_in_the_ordinary_loop(tmp_path, capsys):
    assert main(["train", "mackey-glass", "--out", str(tmp_path / "g"), "--json", "--set",
                 *SMALL, "model.readout=gradient", "train.steps=30", "train.lr=0.01",
                 "train.batch_size=4", "train.eval_every=30"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    records = [json.loads(line)
               for line in (tmp_path / "g" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["split"] == "valid"]
    assert losses[-1] < 0.5 * losses[0] and math.isfinite(result["test_nrmse"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    esn = ESN(0, 1, 50, feedback=True, sparsity=0.8, bias_scaling=0.2, seed=0, dtype=f64)
    s = torch.tanh(mackey_glass(600) - 1).view(-1, 1, 1)
    us = s.new_zeros(599, 1, 0)
    esn.fit(us, s[1:], feedback=s[:-1], washout=100, ridge=1e-8)
    gpu = ESN(0, 1, 50, feedback=True, sparsity=0.8, bias_scaling=0.2, seed=0, dtype=f64,
              device="cuda")
    gpu.fit(us.cuda(), s[1:].cuda(), feedback=s[:-1].cuda(), washout=100, ridge=1e-8)
    torch.testing.assert_close(gpu.W_out.cpu(), esn.W_out, rtol=1e-6, atol=1e-8)
    ys, xs = esn(us, feedback=s[:-1])
    free = esn.generate(20, xs[-1], s[-1])[0]
    free_gpu = gpu.generate(20, xs[-1].cuda(), s[-1].cuda())[0]
    torch.testing.assert_close(free_gpu.cpu(), free, rtol=1e-6, atol=1e-8)
