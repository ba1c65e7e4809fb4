"""benchmarks/esn_reservoirpy.py: skips cleanly without ReservoirPy, and with it the two
libraries give the same closed-loop error on the same reservoir matrices."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "esn_reservoirpy.py"


def load_script():
    spec = importlib.util.spec_from_file_location("esn_reservoirpy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_reservoirpy_it_says_so_and_exits_0(monkeypatch, capsys):
    script = load_script()
    monkeypatch.setattr(script, "reservoirpy", None)
    assert script.main(["--seeds", "0"]) == 0
    assert "reservoirpy is not installed" in capsys.readouterr().out


def test_same_matrices_same_nrmse():
    pytest.importorskip("reservoirpy", reason="benchmark-only dependency (pip install "
                                              "'.[bench]')")
    script = load_script()
    task = script.task_for(0, 60, 0.0, ("data.train_length=2000", "data.washout=200",
                                        "data.trials=5"))
    model, _ = script.fit_rnnlab(task)
    esn, _ = script.fit_reservoirpy(task, script.reservoirpy_esn(task, model, 0))
    ours, _ = script.nrmse_rnnlab(task, model)
    theirs, _ = script.nrmse_reservoirpy(task, esn)
    assert 0 < ours < 1
    # the same network: the reservoirs' states agree to rounding over the training series
    s = task.series["train"].double()
    xs = model.reservoir(s[:-1].view(-1, 1, 1))[:, 0].numpy()             # (T, N)
    esn.reservoir.reset()
    assert np.abs(esn.reservoir.run(s[:-1].numpy().reshape(-1, 1)) - xs).max() < 1e-12
    # readouts solved differently (ReservoirPy centres, rnnlab scales; ridge 1e-10 on an
    # ill-conditioned system) and 84 free-running steps amplify the difference a little
    assert theirs == pytest.approx(ours, rel=2e-2)
