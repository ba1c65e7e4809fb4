"""forecast: the CSV reader and its errors, splits, train-only normalisation, baselines,
many-to-one / many-to-many batches, tiny runs through the CLI, the ETTh1 file."""

import json
import math

import numpy as np
import pytest
import torch

from rnnlab.cli import main
from rnnlab.config import ConfigError, apply_overrides
from rnnlab.data.series import read_series
from rnnlab.data.text import DataError
from rnnlab.tasks import TASKS
from rnnlab.tasks.forecast import Forecast, naive_forecasts, split_bounds

TINY = ["train.threads=1", "train.device=cpu"]


def write_csv(path, columns, rows, times=True):
    header = (["date"] if times else []) + columns
    lines = [",".join(header)]
    for i, row in enumerate(rows):
        cells = [f"2020-01-01 {i:05d}"] if times else []
        lines.append(",".join(cells + [repr(float(v)) for v in row]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sine_csv(tmp_path, n=400, period=24, name="sine.csv"):
    t = np.arange(n)
    rows = np.stack([np.cos(2 * np.pi * t / period), np.sin(2 * np.pi * t / period)], 1)
    return write_csv(tmp_path / name, ["c", "y"], rows)


def task_for(path, *overrides):
    return Forecast(apply_overrides(Forecast.default_config(),
                                    [f"data.path={path}", "model.hidden=8", *overrides]))


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


# --- the CSV reader -------------------------------------------------------------------------


def test_read_series_time_column_numbers_and_blank_lines(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("\ufeffDate,Open,Close\n2020-01-02,1.5,2\n\n2020-01-03, 3 ,-4e-1\n",
                    encoding="utf-8")
    s = read_series(path)
    assert s.time_name == "Date" and s.columns == ["Open", "Close"]
    assert s.times == ["2020-01-02", "2020-01-03"]
    np.testing.assert_array_equal(s.values, [[1.5, 2.0], [3.0, -0.4]])


def test_read_series_without_time_column(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("a,b\n1,2\n3,4\n", encoding="utf-8")
    s = read_series(path)
    assert s.time_name is None and s.columns == ["a", "b"] and s.values.shape == (2, 2)


@pytest.mark.parametrize("text, message", [
    ("date,a,b\nt0,1,2\nt1,3\n", ":3: expected 3 columns (as in the header), got 2"),
    ("date,a,b\nt0,1,2\nt1,3,4,5\n", ":3: expected 3 columns (as in the header), got 4"),
    ("date,a,b\nt0,1,2\n\nt1,3,x7\n", ":4: column 'b': 'x7' is not a number"),
    ("date,a,b\nt0,,2\n", ":2: column 'a': empty value"),
    ("date,a,b\nt0,nan,2\n", ":2: column 'a': 'nan' is not a finite number"),
    ("date,a,a\nt0,1,2\n", ":1: duplicated column name(s) in the header: 'a'"),
    ("date,a,b\n", "the header is not followed by any data rows"),
])
def test_csv_errors_name_file_and_line_through_the_cli(tmp_path, capsys, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    code = main(["train", "forecast", "--data", str(path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("rnnlab: error: ")
    assert f"{path}{message}" in err or (str(path) in err and message in err)
    assert not (tmp_path / "run").exists()


def test_missing_file_and_missing_target_column(tmp_path, capsys):
    assert main(["train", "forecast", "--data", str(tmp_path / "nope.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    path = sine_csv(tmp_path)
    assert main(["train", "forecast", "--data", str(path), "--set", "data.target=OT"]) == 2
    err = capsys.readouterr().err
    assert "no column 'OT' (data.target)" in err and "its numeric columns: c, y" in err
    assert main(["train", "forecast", "--data", str(path), "--set", "data.inputs=c,zz"]) == 2
    assert "no column 'zz' (data.inputs)" in capsys.readouterr().err


def test_too_few_rows_for_window_and_horizon(tmp_path, capsys):
    path = sine_csv(tmp_path, n=100)          # ratio split: 70 training rows
    assert main(["train", "forecast", "--data", str(path), "--set", "data.window=60",
                 "data.horizon=12"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: too few rows: the training split has 70 of the 100 rows" in err
    assert "data.window + data.horizon = 72" in err
    assert main(["train", "forecast", "--data", str(path), "--set", "data.window=8",
                 "data.horizon=11", "data.season=4"]) == 2   # valid split: 10 rows
    assert "the valid split has 10 of the 100 rows, fewer than data.horizon = 11" in (
        capsys.readouterr().err)


def test_constant_target_is_an_error_constant_input_is_not(tmp_path):
    rows = np.stack([np.arange(200.0) % 7, np.zeros(200)], 1)
    path = write_csv(tmp_path / "c.csv", ["x", "OpenInt"], rows)
    with pytest.raises(DataError, match="'OpenInt' are constant over the training split"):
        task_for(path, "data.window=8", "data.horizon=2", "data.season=7")
    task = task_for(path, "data.window=8", "data.horizon=2", "data.season=7", "data.target=x")
    assert task.std.tolist() == [pytest.approx(np.std(rows[:140, 0])), 1.0]


def test_relative_needs_many_to_one(tmp_path, capsys):
    path = sine_csv(tmp_path)
    assert main(["train", "forecast", "--data", str(path), "--set", "data.mode=many-to-many"]) == 2
    assert "data.relative=true needs data.mode=many-to-one" in capsys.readouterr().err


# --- splits, normalisation, baselines -------------------------------------------------------


def test_split_bounds_ett_and_ratio():
    assert split_bounds(17420, "auto", "ETTh1.csv") == (8640, 11520, 14400)
    assert split_bounds(69680, "auto", "ETTm2.csv") == (34560, 46080, 57600)
    assert split_bounds(1000, "auto", "msft.csv") == (700, 800, 1000)
    with pytest.raises(DataError, match="needs 14400 rows, the file has 1000"):
        split_bounds(1000, "etth", "x.csv")


def test_normalisation_uses_training_rows_only(tmp_path):
    t = np.arange(300.0)
    rows = np.stack([np.sin(t / 5), t * 0.01], 1)
    rows[210:] *= 1000.0                     # valid and test rows are wildly larger
    path = write_csv(tmp_path / "n.csv", ["a", "b"], rows)
    task = task_for(path, "data.window=10", "data.horizon=3", "data.season=5")
    np.testing.assert_allclose(task.mean, rows[:210].mean(0))
    np.testing.assert_allclose(task.std, rows[:210].std(0))
    z = (rows - rows[:210].mean(0)) / rows[:210].std(0)
    np.testing.assert_allclose(task.X.numpy(), z, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(task.Y[:, 0].numpy(), z[:, 1], rtol=1e-5, atol=1e-5)
    # windows: training windows lie in the training rows, test forecasts in the test rows
    assert int(task.origins["train"][0]) == 10 and int(task.origins["train"][-1]) == 207
    assert int(task.origins["valid"][0]) == 210 and int(task.origins["test"][-1]) == 297


def test_naive_forecasts_by_hand():
    Y = torch.arange(20.0).view(-1, 1)                # row r holds r
    last, seasonal = naive_forecasts(Y, torch.tensor([10, 12]), horizon=5, season=2)
    assert last[:, :, 0].tolist() == [[9] * 5, [11] * 5]
    # step h forecasts row o+h with row o+h-2*(h//2+1): 8, 9, 8, 9, 8 from origin 10
    assert seasonal[:, :, 0].tolist() == [[8, 9, 8, 9, 8], [10, 11, 10, 11, 10]]


def test_seasonal_naive_is_exact_on_a_pure_sine(tmp_path):
    task = task_for(sine_csv(tmp_path, period=24), "data.window=30", "data.horizon=30",
                    "data.season=24")
    metrics = task.evaluate(task.build_model(), "test", "cpu")
    assert metrics["seasonal_naive_mse"] < 1e-10 and metrics["seasonal_naive_mae"] < 1e-5
    assert metrics["last_value_mse"] > 0.5          # repeating one value misses the cycle
    assert set(metrics) >= {"loss", "mse", "mae", "last_value_mse", "last_value_mae",
                            "seasonal_naive_mse", "seasonal_naive_mae"}


def test_many_to_many_targets_are_the_values_after_each_step(tmp_path):
    task = task_for(sine_csv(tmp_path), "data.window=6", "data.horizon=3", "data.season=24",
                    "data.mode=many-to-many", "data.target=c,y", "data.relative=false")
    xs, ys = task.batch(torch.Generator().manual_seed(0), 4, "cpu")
    assert xs.shape == (6, 4, 2) and ys.shape == (6, 4, 3, 2)
    for b in range(4):      # find the window by its first input row
        start = int(torch.nonzero((task.X == xs[0, b]).all(1))[0])
        for t in range(6):
            assert torch.equal(ys[t, b], task.Y[start + t + 1:start + t + 4])
    loss, metrics = task.loss(task.build_model(), (xs, ys))
    assert math.isfinite(loss.item()) and set(metrics) == {"mse", "mae"}


def test_relative_forecasts_move_with_the_level_plain_ones_do_not(tmp_path):
    path = sine_csv(tmp_path)
    for relative in (True, False):
        task = task_for(path, "data.window=12", "data.horizon=4", "data.season=24",
                        "data.inputs=y", "data.target=y", f"data.relative={relative}")
        torch.manual_seed(0)
        model = task.build_model()
        origins = task.origins["test"][:5]
        before = task.forecast(model, origins, "cpu")
        task.X += 3.0                                # the same series, 3 std higher
        task.Y += 3.0
        shift = task.forecast(model, origins, "cpu") - before
        assert torch.allclose(shift, torch.full_like(shift, 3.0), atol=1e-5) == relative


# --- tiny runs through the CLI --------------------------------------------------------------


def two_tone_csv(tmp_path):
    t = np.arange(1200)
    rng = np.random.default_rng(0)
    y = np.sin(2 * np.pi * t / 12) + 0.6 * np.sin(2 * np.pi * t / 17) + rng.normal(0, .05, 1200)
    return write_csv(tmp_path / "tones.csv", ["y"], y[:, None])


@pytest.mark.parametrize("mode, relative", [("many-to-one", "true"), ("many-to-many", "false")])
def test_tiny_run_beats_both_baselines(tmp_path, capsys, mode, relative):
    path, out = two_tone_csv(tmp_path), tmp_path / "run"
    code = main(["train", "forecast", "--data", str(path), "--out", str(out), "--json",
                 "--set", *TINY, "train.steps=150", "train.lr=1e-2", "train.eval_every=150",
                 "model.hidden=24", "data.window=24", "data.horizon=6", "data.season=12",
                 f"data.mode={mode}", f"data.relative={relative}"])
    assert code == 0
    r = last_json(capsys.readouterr().out)
    assert r["test_mse"] < 0.5 * min(r["test_last_value_mse"], r["test_seasonal_naive_mse"])
    assert r["test_mae"] < r["test_last_value_mae"]


def test_predict_writes_the_plot_and_forecasts_after_a_csv(tmp_path, capsys):
    path, out = two_tone_csv(tmp_path), tmp_path / "run"
    assert main(["train", "forecast", "--data", str(path), "--out", str(out), "--json",
                 "--set", *TINY, "train.steps=20", "model.hidden=8", "data.window=24",
                 "data.horizon=6", "data.season=12"]) == 0
    trained = last_json(capsys.readouterr().out)
    assert main(["evaluate", str(out), "--json"]) == 0
    again = last_json(capsys.readouterr().out)
    assert again["test_mse"] == pytest.approx(trained["test_mse"], rel=1e-5)
    png, recent = tmp_path / "plot.png", tmp_path / "recent.csv"
    recent.write_text("\n".join(path.read_text().splitlines()[:31]) + "\n")  # header + 30
    assert main(["predict", str(out), str(png), str(recent)]) == 0
    printed = capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {png}; test: mse {trained['test_mse']:.4f}" in printed
    lines = printed.split("forecast after")[1].strip().splitlines()
    assert len(lines) == 1 + 1 + 6 and lines[-1].startswith("+6")   # title, header, 6 steps
    assert main(["predict", str(out), "x.txt"]) == 2
    assert "takes a .png path" in capsys.readouterr().err


def test_default_generated_series_task():
    task = Forecast(apply_overrides(Forecast.default_config(), ["model.hidden=8"]))
    assert task.inputs == ["load", "temp"] and task.targets == ["temp"]
    assert TASKS["forecast"] is Forecast


# --- the real data --------------------------------------------------------------------------


def test_etth1_header_rows_and_split(shared_data):
    path = shared_data("ett_small") / "ETTh1.csv"
    s = read_series(path)
    assert s.time_name == "date"
    assert s.columns == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    assert s.values.shape == (17420, 7)
    assert s.times[0] == "2016-07-01 00:00:00" and s.times[-1] == "2018-06-26 19:00:00"
    task = task_for(path, "data.target=OT")
    assert task.targets == ["OT"] and len(task.inputs) == 7
    # Informer's windows: 8640 - 96 - 24 + 1 training, 2880 - 24 + 1 valid and test
    assert [len(task.origins[k]) for k in ("train", "valid", "test")] == [8521, 2857, 2857]
    np.testing.assert_allclose(task.mean, s.values[:8640].mean(0))


def test_config_errors():
    with pytest.raises(ConfigError, match="data.window must be at least 1"):
        Forecast(apply_overrides(Forecast.default_config(), ["data.window=0"]))
    with pytest.raises(ConfigError, match="comma-separated column names"):
        Forecast(apply_overrides(Forecast.default_config(), ["data.target=a,,b"]))
