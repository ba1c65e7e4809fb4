"""Pascanu et al.'s regulariser Ω: the value against a brute-force Jacobian computation, its
gradient (the paper's immediate derivative for the Elman cell), ragged batches, and the
training option."""

import json

import pytest
import torch
from torch import nn

from rnnlab import ElmanCell, Stack
from rnnlab.cells import LSTMCell
from rnnlab.cli import main
from rnnlab.layers import Recurrent
from rnnlab.trace import tracing
from rnnlab.training.regularizers import pascanu_penalty, step_ratios


def brute_force(cell, xs, w, lengths=None):
    """Ω by explicit one-step Jacobians, for a loss = w · (last output of each sequence):
    the mean of (r_k - 1)² over every live (step, sequence) pair, the first step's included."""
    T, B, _ = xs.shape
    total, count = 0.0, 0
    for b in range(B):
        L = T if lengths is None else int(lengths[b])
        x = xs[:L, b:b + 1]
        states = [cell.init_state(1)]
        for t in range(L):
            states.append(cell(states[-1], x[t])[0])
        flat = [torch.cat([f for f in (s if isinstance(s, tuple) else (s,))], 1)
                for s in states]
        last = states[-1][0] if isinstance(states[-1], tuple) else states[-1]   # y_T = h_T
        loss = (last * w).sum()
        grads = torch.autograd.grad(loss, [f for s in states[1:]
                                           for f in (s if isinstance(s, tuple) else (s,))])
        n = len(grads) // L
        v = [torch.cat(grads[k * n:(k + 1) * n], 1)[0] for k in range(L)]   # ∂L/∂h_{k+1}
        for k in range(L):
            def step(h, k=k, states=states, x=x):
                sizes = [f.shape[1] for f in (states[k] if isinstance(states[k], tuple)
                                              else (states[k],))]
                parts = [p.unsqueeze(0) for p in h.split(sizes)]
                state = type(states[k])(*parts) if isinstance(states[k], tuple) else parts[0]
                new = cell(state, x[k])[0]
                return torch.cat([f[0] for f in (new if isinstance(new, tuple) else (new,))])
            J = torch.autograd.functional.jacobian(step, flat[k][0].detach())
            if v[k].norm() > 1e-12:
                total += (((v[k] @ J).norm() / v[k].norm() - 1) ** 2).item()
                count += 1
    return total / count


@pytest.mark.parametrize("cell_cls", [ElmanCell, LSTMCell])
@pytest.mark.parametrize("ragged", [False, True])
def test_omega_equals_the_brute_force_sum(cell_cls, ragged):
    torch.manual_seed(0)
    cell = cell_cls(3, 4).double()
    xs = torch.randn(6, 3, 3, dtype=torch.float64)
    w = torch.randn(4, dtype=torch.float64)
    lengths = torch.tensor([6, 3, 1]) if ragged else None
    layer = Recurrent(cell, use_kernel=False)
    with tracing(nn.Sequential(layer)) as traces:
        ys, _ = layer(xs, lengths=lengths)
    last = ys[-1] if lengths is None else ys[lengths - 1, torch.arange(3)]
    loss = (last * w).sum()
    omega = pascanu_penalty(loss, traces)
    assert omega.item() == pytest.approx(brute_force(cell, xs, w, lengths), rel=1e-6)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_elman_omega_gradient_is_the_papers_immediate_derivative(nonlinearity):
    """Pascanu et al. eq. 10: h_k, h_{k+1} and ∂L/∂h_{k+1} held constant, so Ω moves only
    W_hh, by the derivative of ‖(v ⊙ f'(a_{k+1})) W_hh‖ / ‖v‖ with the rest frozen."""
    torch.manual_seed(1)
    cell = ElmanCell(3, 5, nonlinearity).double()
    layer = Recurrent(cell, use_kernel=False)
    xs = torch.randn(7, 4, 3, dtype=torch.float64)
    with tracing(nn.Sequential(layer)) as traces:
        ys, _ = layer(xs)
    loss = ys[-1].pow(2).sum()
    omega = pascanu_penalty(loss, traces)
    g_hh, g_xh = torch.autograd.grad(omega, [cell.W_hh, cell.W_xh], allow_unused=True)
    assert g_xh is None or g_xh.abs().max() == 0
    steps = traces[0].by_time()
    afters = [after for _, _, after in steps]
    v = torch.cat(torch.autograd.grad(loss, afters)).detach()          # (T·B, H)
    h = torch.cat([a.detach() for a in afters])
    slope = 1 - h * h if nonlinearity == "tanh" else (h > 0).double()
    W = cell.W_hh.detach().clone().requires_grad_()
    live = v.norm(dim=1) > 1e-12
    r = ((v * slope) @ W).norm(dim=1)[live] / v.norm(dim=1)[live]
    expected = torch.autograd.grad((r - 1).pow(2).mean(), W)[0]
    torch.testing.assert_close(g_hh, expected, rtol=1e-10, atol=1e-12)


def test_step_ratios_are_one_for_an_orthogonal_linear_step():
    """A norm-preserving step (W_hh orthogonal, slope 1 on the relu's positive side with
    positive states) has r_k = 1 at every step: Ω = 0."""
    cell = ElmanCell(2, 4, "relu").double()
    with torch.no_grad():
        cell.W_hh.copy_(torch.eye(4, dtype=torch.float64)[[1, 2, 3, 0]])   # a permutation
        cell.W_xh.fill_(0.0)
        cell.b_xh.fill_(1.0)
        cell.b_hh.fill_(0.0)
    layer = Recurrent(cell, use_kernel=False)
    with tracing(nn.Sequential(layer)) as traces:
        ys, _ = layer(torch.randn(5, 3, 2, dtype=torch.float64))
    ratios = step_ratios(ys[-1].sum(), traces)
    assert ratios[0].numel() == 5 * 3
    torch.testing.assert_close(ratios[0], torch.ones(15, dtype=torch.float64))
    assert pascanu_penalty(ys[-1].sum(), traces).item() == pytest.approx(0.0, abs=1e-20)


def test_omega_has_a_gradient_through_the_recurrent_weights():
    torch.manual_seed(0)
    model = Stack.build("rnn", 2, 5)
    xs = torch.randn(8, 4, 2)
    with tracing(model) as traces:
        ys, _ = model(xs)
    omega = pascanu_penalty(ys[-1].sum(), traces)
    omega.backward()
    W = model.layers[0].cell.W_hh
    assert omega > 0 and W.grad is not None and W.grad.abs().sum() > 0


def test_training_with_the_regulariser(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "adding", "--out", str(run), "--json", "--set", "train.threads=1",
                 "train.device=cpu", "model.cell=rnn", "model.hidden=8", "data.length=10",
                 "data.valid_size=8", "data.test_size=8", "train.steps=3",
                 "train.pascanu=1.0", "train.log_every=1"]) == 0
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    omegas = [r["pascanu_omega"] for r in lines if r["split"] == "train"]
    assert len(omegas) == 3 and all(o >= 0 for o in omegas) and any(o > 0 for o in omegas)
    ratios = [r["pascanu_ratio"] for r in lines if r["split"] == "train"]
    assert all(0 < r < 10 for r in ratios)
