"""rnnlab export: the ONNX graph, run in onnxruntime at lengths other than the example's,
gives the PyTorch model's outputs."""

import json

import numpy as np
import pytest
import torch

from rnnlab import Stack
from rnnlab.cli import main
from rnnlab.export import ExportError, export_onnx, onnx_ready
from rnnlab.tasks import load_run

ort = pytest.importorskip("onnxruntime")

TINY = ["train.threads=1", "train.device=cpu", "train.steps=2", "model.hidden=8"]


def run_onnx(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


@pytest.mark.parametrize("cell", ["rnn", "relu", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_stacks_export_with_dynamic_length(tmp_path, cell, bidirectional):
    torch.manual_seed(0)
    model = Stack.build(cell, 3, 6, num_layers=2, bidirectional=bidirectional).eval()
    path = tmp_path / "m.onnx"
    export_onnx(model, torch.randn(5, 2, 3), path)
    for T, B in ((5, 2), (11, 3), (1, 1), (17, 3)):
        x = torch.randn(T, B, 3)
        with torch.no_grad():
            expected, _ = model(x)
        torch.testing.assert_close(run_onnx(path, x), expected, rtol=1e-4, atol=1e-5)


def test_cells_without_an_onnx_operator_are_refused():
    for cell in ("mgu", "gru-before", "leaky-rnn"):
        with pytest.raises(ExportError, match="no ONNX recurrent operator"):
            onnx_ready(Stack.build(cell, 3, 4))


@pytest.mark.parametrize("task, extra", [
    ("adding", ["data.length=6", "data.valid_size=8", "data.test_size=8"]),
    ("copy", ["data.valid_size=8", "data.test_size=8", "data.delay=3"]),
    ("char-lm", ["data.seq_len=8", "model.embed=4"]),
])
def test_export_cli_matches_pytorch(tmp_path, capsys, task, extra):
    data = []
    if task == "char-lm":
        text = tmp_path / "t.txt"
        text.write_text("abc abd " * 50, encoding="utf-8")
        data = ["--data", str(text)]
    run = tmp_path / "run"
    assert main(["train", task, *data, "--out", str(run), "--json", "--set", *TINY,
                 *extra]) == 0
    capsys.readouterr()
    out = tmp_path / "model.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["out"] == str(out) and out.stat().st_size > 0
    task_obj, _, model = load_run(run)
    model.eval()
    example = task_obj.export_example()
    longer = torch.cat([example, example, example])            # 3T steps, same batch
    with torch.no_grad():
        expected = model(longer)[0]
    got = run_onnx(out, longer)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_export_errors(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["train", "adding", "--out", str(run), "--json", "--set", *TINY,
                 "model.cell=mgu", "data.length=4", "data.valid_size=4",
                 "data.test_size=4"]) == 0
    capsys.readouterr()
    assert main(["export", str(run), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "MGUCell has no ONNX recurrent operator" in err and "lstm" in err
    assert main(["export", str(run), "--out", str(tmp_path / "no" / "m.onnx")]) == 2


def test_zoneout_layers_are_refused_and_recurrent_dropout_exports(tmp_path):
    import rnnlab
    from rnnlab.export import TorchRecurrent

    with pytest.raises(ExportError, match=r"zoneout \(0.1, 0.1\) cannot be exported"):
        TorchRecurrent(rnnlab.Recurrent(rnnlab.cells.LSTMCell(3, 4), zoneout=0.1))
    layer = rnnlab.Recurrent(rnnlab.cells.GRUCell(3, 4), recurrent_dropout=0.5).eval()
    xs = torch.randn(5, 2, 3)
    torch.testing.assert_close(TorchRecurrent(layer)(xs)[0], layer(xs)[0])


@pytest.mark.parametrize("name", ["RNN", "GRU", "LSTM"])
def test_torch_onnx_export_of_the_dropins_writes_native_nodes(tmp_path, name):
    """torch.onnx.export (TorchScript-based, opset 17) of rnnlab.RNN/GRU/LSTM on the fused
    path: the kernels' operators become ONNX's RNN / GRU / LSTM nodes (the symbolics of
    rnnlab.export), T and B stay dynamic; onnxruntime at three other lengths, two batch
    sizes, two layers, both directions."""
    import warnings

    import onnx

    import rnnlab

    torch.manual_seed(0)
    model = getattr(rnnlab, name)(3, 4, num_layers=2, bidirectional=True, path="fused").eval()
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings(), torch.no_grad():   # the exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(5, 2, 3),), str(path), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "T", 1: "B"}, "output": {0: "T", 1: "B"}})
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count(name) == 4, ops                  # 2 layers x 2 directions
    for T, B in ((1, 1), (11, 3), (17, 1)):
        x = torch.randn(T, B, 3)
        with torch.no_grad():
            expected = model(x)[0]
        torch.testing.assert_close(run_onnx(path, x), expected, rtol=1e-4, atol=1e-5)
