"""rnnlab diagnose: the measured gradients and Jacobians are the true ones, and the report
renders offline."""

import json
import re
import shutil
import subprocess

import pytest
import torch
from torch import nn

from rnnlab import ElmanCell, Stack
from rnnlab.cells import GRUCell, LSTMCell
from rnnlab.cli import main
from rnnlab.diagnose import gate_values, gradient_flow, jacobian_flow, weight_spectra
from rnnlab.layers import Recurrent
from rnnlab.trace import TraceError, tracing
from rnnlab.unroll import unroll

TINY = ["train.threads=1", "train.device=cpu"]


class Sum:
    """A task stand-in: the loss is the sum of the last output times fixed weights."""

    def __init__(self, H):
        self.w = torch.randn(H, generator=torch.Generator().manual_seed(1))

    def loss(self, model, batch):
        ys, _ = model(batch)
        return (ys[-1] * self.w).sum(), {}


def test_tracing_gives_the_true_state_gradients_and_same_outputs():
    torch.manual_seed(0)
    model = Stack.build("lstm", 3, 5, num_layers=2)
    xs = torch.randn(7, 4, 3)
    task = Sum(5)
    reference, _ = model(xs)
    with tracing(model) as traces:
        traced, _ = model(xs)
    torch.testing.assert_close(traced, reference)
    assert [t.name for t in traces] == ["layers.0", "layers.1"]
    norms = gradient_flow(model, lambda: task.loss(model, xs)[0])
    # the same gradients by hand: autograd w.r.t. the states of the reference loop
    layer0 = model.layers[0]
    steps = []
    ys0, _ = unroll(layer0.cell, xs, None, None, False, steps)
    ys1, _ = model.layers[1](ys0)
    loss = (ys1[-1] * task.w).sum()
    grads = torch.autograd.grad(loss, [f for _, _, after in steps for f in after])
    expected = [float(torch.cat([grads[2 * t], grads[2 * t + 1]], 1).norm(dim=1).mean())
                for t in range(7)]
    assert norms["layers.0"] == pytest.approx(expected, rel=1e-5)
    assert all(p.grad is None for p in model.parameters())       # left clean


def test_jacobian_of_an_elman_cell_is_diag_1_minus_h2_times_w():
    torch.manual_seed(0)
    cell = ElmanCell(2, 4)
    layer = Recurrent(cell)
    xs = torch.randn(5, 1, 2)
    with torch.no_grad(), tracing(nn.Sequential(layer)) as traces:
        layer(xs)
    flow = jacobian_flow(traces[0])
    steps = traces[0].by_time()
    product = torch.eye(4, dtype=torch.float64)
    norms = [1.0]
    for t in reversed(range(5)):
        h = steps[t][2][0].double()
        J = torch.diag(1 - h ** 2) @ cell.W_hh.detach().double()
        assert flow["spectral_radius"][t] == pytest.approx(
            float(torch.linalg.eigvals(J).abs().max()), rel=1e-5)
        assert flow["sigma_max"][t] == pytest.approx(float(torch.linalg.matrix_norm(J, 2)),
                                                     rel=1e-5)
        product = product @ J
        norms.append(float(torch.linalg.matrix_norm(product, 2)))
    assert flow["product_norm"] == pytest.approx(norms, rel=1e-5)


def test_weight_spectra_per_gate_block():
    elman = ElmanCell(2, 2)
    with torch.no_grad():
        elman.W_hh.copy_(torch.tensor([[0.5, 0.0], [0.0, 2.0]]))
    (entry,) = weight_spectra(Recurrent(elman))
    assert entry["spectral_radius"] == pytest.approx(2.0)
    assert entry["sigma_max"] == pytest.approx(2.0)
    blocks = weight_spectra(Stack.build("lstm", 3, 4))
    assert [b["block"] for b in blocks] == ["input i", "forget f", "cell g", "output o"]
    assert [b["block"] for b in weight_spectra(Recurrent(GRUCell(3, 4)))] == \
        ["reset r", "update z", "new n"]


def test_lstm_gate_values_are_the_cells_gates():
    torch.manual_seed(0)
    cell = LSTMCell(3, 4)
    state = cell.init_state(2)
    state = type(state)(torch.randn(2, 4), torch.randn(2, 4))
    x = torch.randn(2, 3)
    gates = gate_values(cell, state, x)
    (new, _) = cell(state, x)
    # c' = f * c + i * g: recover f * c + i * g from the returned gates and the g block
    pre = x @ cell.W_xh.T + cell.b_xh + state.h @ cell.W_hh.T + cell.b_hh
    g = pre[:, 8:12].tanh()
    torch.testing.assert_close(new.c, gates["forget f"] * state.c + gates["input i"] * g)
    torch.testing.assert_close(new.h, gates["output o"] * new.c.tanh())


def test_a_model_without_rnnlab_layers_is_a_clear_error():
    with pytest.raises(TraceError, match="no rnnlab Recurrent layer"):
        with tracing(nn.Linear(2, 2)):
            pass


@pytest.fixture(scope="module")
def adding_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("diag") / "run"
    assert main(["train", "adding", "--out", str(run), "--json", "--set", *TINY,
                 "model.cell=rnn", "train.steps=4", "model.hidden=8", "data.length=12",
                 "data.valid_size=16", "data.test_size=16", "train.checkpoint_every=2"]) == 0
    return run


def test_diagnose_cli_writes_figures_report_and_json(adding_run, capsys):
    capsys.readouterr()
    assert main(["diagnose", str(adding_run), "--batch", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["checkpoints"] == [0, 2, 4]
    grads = result["gradient_norm"]["0"]["rnn.layers.0"]
    # adding's loss reads only the last output: the gradient is largest at t = T
    assert grads["first_over_last"] < 1
    for name in ("gradient_flow.png", "jacobian.png", "spectrum.png", "saturation.png",
                 "hidden_heatmap.png", "diagnose.json"):
        assert (adding_run / "diagnose" / name).stat().st_size > 100
    page = (adding_run / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 6
    assert "src=\"http" not in page and "<link" not in page          # nothing to fetch


def test_diagnose_errors(capsys, tmp_path):
    assert main(["diagnose", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_report_renders_in_headless_chromium(adding_run, capsys):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium package is not installed (.ci/run installs it)")
    assert main(["diagnose", str(adding_run), "--batch", "8"]) == 0
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--virtual-time-budget=5000", "--dump-dom",
         (adding_run / "report.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body[^>]*>", dom).group(0)
    total = int(re.search(r'data-figures-total="(\d+)"', body).group(1))
    shown = int(re.search(r'data-figures-shown="(\d+)"', body).group(1))
    assert total == 6 and shown == total, body


def test_zoneout_layer_is_traced_with_its_expectation_and_jacobian():
    """At evaluation a zoneout layer is h(t) = z h(t-1) + (1 - z) tanh(...): the trace
    follows the layer's outputs and J_t = z I + (1 - z) diag(1 - h̃²) W."""
    torch.manual_seed(0)
    cell = ElmanCell(2, 3)
    layer = Recurrent(cell, zoneout=0.3).eval()
    xs = torch.randn(4, 1, 2)
    with torch.no_grad():
        expected = layer(xs)[0]
    with torch.no_grad(), tracing(nn.Sequential(layer)) as traces:
        ys = layer(xs)[0]
    torch.testing.assert_close(ys, expected)
    flow = jacobian_flow(traces[0])
    for t, before, _ in traces[0].by_time():
        h_new = torch.tanh(cell.W_xh @ xs[t, 0] + cell.b_xh + cell.W_hh @ before[0]
                           + cell.b_hh).detach().double()
        J = 0.3 * torch.eye(3, dtype=torch.float64) + 0.7 * torch.diag(1 - h_new ** 2) @ \
            cell.W_hh.detach().double()
        assert flow["sigma_max"][t] == pytest.approx(float(torch.linalg.matrix_norm(J, 2)),
                                                     rel=1e-5)
