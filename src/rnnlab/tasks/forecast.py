"""Time-series forecasting with a recurrent net (book sections 10.2 and 10.2.4).

The net reads a window of ``data.window`` past steps of the input columns and forecasts the
next ``data.horizon`` steps of the target columns:

    xs (T, B, F) -> Stack(cell) -> ys (T, B, H) -> linear -> (T, B, horizon * K)

with T = window, F = input columns, K = target columns. Two output modes (``data.mode``):

- ``many-to-one`` (default; book fig. 10.5): only the last state is read out,
  ŷ(o..o+horizon-1) = W h(T) + b, a direct multi-step forecast from the forecast origin o.
- ``many-to-many`` (book fig. 10.3): every step t outputs a forecast of the ``horizon``
  values after it, ŷ(t+1..t+horizon) = W h(t) + b, and training scores all T of them.
  ``horizon`` therefore applies per step (horizon 1 is plain next-step prediction).
  Evaluation reads only the last step, whose forecast covers exactly the same future
  ``horizon`` values as many-to-one's, so the two modes are scored on identical targets.

The loss is the mean squared error over all forecast values (steps x horizon x targets).

**Level** (``data.relative``, on by default; many-to-one only). The net reads each window
minus its last step and forecasts the change from each target's last observed value,

    ŷ(o+h) = y(o-1) + f(x(1..T) - x(T))_h,        h = 0 .. horizon-1,

as NLinear does (Zeng et al., "Are Transformers Effective for Time Series Forecasting?",
AAAI 2023). Its forecasts move with the level of the series; on ETTh1 this matters because
the test months (winter) lie far below the training level of OT. ``data.relative=false``
is the plain net, the setting of the LSTMa baseline of the ETT papers. Many-to-many needs
``data.relative=false``: the earlier steps of its window have not seen the last step.

**Data.** ``--data FILE.csv``: a header, a time column and numeric columns, one row per
step in chronological order (:mod:`rnnlab.data.series`; e.g. ETTh1: ``date`` + 7 load and
temperature variables; daily stock prices: ``Date,Open,High,Low,Close[,Volume]``).
``data.target`` names the target column(s), comma-separated (default: the last column);
``data.inputs`` the columns the net reads (default: every numeric column, targets
included). Univariate forecasting is ``data.inputs=OT data.target=OT``; multivariate is
``data.target=HUFL,HULL,MUFL,MULL,LUFL,LULL,OT``. Without ``--data`` the task generates a
two-column hourly series itself (:func:`rnnlab.data.synthetic.synthetic_series`: daily and
weekly cycles + AR(1) noise; target ``temp`` lags ``load``).

**Splits** are chronological. ``data.split=auto`` takes the ETT convention for files named
``ETTh*`` (12/4/4 months of 30 days = 8640/2880/2880 rows; ``ETTm*``: x4 for 15-minute
steps; rows after them are unused) and 70/10/20 % otherwise (as Informer's custom-data
loader). As in the Informer code, a valid or test window is one whose *forecast* lies in
the split; its input window may reach back into the rows before it. Training windows lie
wholly in the training rows.

**Normalisation.** Every used column is z-scored with the mean and standard deviation of
the training rows only (a constant input column gets std 1; a constant target is an
error). The statistics are saved with the run (``task_state.json``).

**Metrics**, over every window of the split (stride 1), all horizon steps and targets:
``mse`` (= ``loss``, the main metric) and ``mae``, both on the *normalised* scale, as the
ETT papers (Informer, Autoformer, ...) report them. Two baselines are scored on the same
windows and reported beside them: ``last_value_*`` repeats the last observed value for the
whole horizon; ``seasonal_naive_*`` forecasts each step with the value one season
(``data.season`` steps, default 24 = a day of hourly data) before it, k seasons before for
steps more than a season ahead. The baselines read the history before the forecast origin,
which may be older than the net's input window.

**Plot and forecasts** (``rnnlab predict``; the run directory is not known to the task
during training, so the plot is made from the saved run):

    rnnlab train forecast --data data/ett_small/ETTh1.csv --set data.target=OT
    rnnlab predict runs/forecast runs/forecast/forecast.png   # plot + test metrics
    rnnlab predict runs/forecast recent.csv                   # forecast after recent.csv

A ``.png`` input writes prediction vs truth of the first target over a stretch of the test
split (lead-1 and lead-``horizon`` forecasts, and one full forecast from a single origin
beside both baselines) and returns the test metrics; a ``.csv`` input (same columns)
returns the forecast of the ``horizon`` steps after its last row, in the original units.

Measured figures: docs/results.md (forecast).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..config import ConfigError
from ..data.series import Series, read_series
from ..data.synthetic import synthetic_series
from ..data.text import DataError
from ..models.forecaster import Forecaster
from .base import Task, TaskError

__all__ = ["Forecast", "ForecastModel", "ForecastData", "split_bounds", "naive_forecasts"]


@dataclass
class ForecastModel:
    cell: str = "lstm"
    hidden: int = 64
    num_layers: int = 1
    dropout: float = 0.0


@dataclass
class ForecastData:
    path: str | None = None    # CSV file; None = the generated hourly series
    target: str | None = None  # comma-separated target column(s); None = the last column
    inputs: str | None = None  # comma-separated input columns; None = every numeric column
    window: int = 96           # T, input steps the net reads
    horizon: int = 24          # steps forecast from each origin
    mode: Literal["many-to-one", "many-to-many"] = "many-to-one"
    season: int = 24           # period of the seasonal-naive baseline (24 = daily, hourly data)
    split: Literal["auto", "ratio", "etth", "ettm"] = "auto"
    relative: bool = True      # read changes from the window's last step, forecast changes
    #                            from the target's last value (NLinear); many-to-one only
    eval_batch: int = 512      # windows per forward pass when scoring a split
    synthetic_rows: int = 6000  # length of the generated series (no --data)
    seed: int = 1234           # seeds the generated series


# --- data -----------------------------------------------------------------------------------


def split_bounds(n: int, split: str, name: str) -> tuple[int, int, int]:
    """``(train_end, valid_end, test_end)`` row indices of the chronological split."""
    if split == "auto":
        split = ("etth" if name.startswith("ETTh") else "ettm" if name.startswith("ETTm")
                 else "ratio")
    if split == "ratio":                  # Informer's Dataset_Custom: 70 / 10 / 20 %
        n_train, n_test = int(n * 0.7), int(n * 0.2)
        return n_train, n - n_test, n
    month = 30 * 24 * (4 if split == "ettm" else 1)
    bounds = 12 * month, 16 * month, 20 * month
    if n < bounds[2]:
        raise DataError(f"{name}: the ETT split (data.split={split}: 12/4/4 months = "
                        f"{bounds[0]}/{month * 4}/{month * 4} rows) needs {bounds[2]} rows, "
                        f"the file has {n}; use data.split=ratio")
    return bounds


def naive_forecasts(Y: Tensor, origins: Tensor, horizon: int,
                    season: int) -> tuple[Tensor, Tensor]:
    """The last-value and seasonal-naive forecasts ``(N, horizon, K)`` from each origin.

    ``Y (rows, K)``; the forecast from origin o covers rows o .. o+horizon-1. Last value:
    Y[o-1] at every step. Seasonal naive (Hyndman & Athanasopoulos, FPP 5.2): step h
    (0-based) gets Y[o + h - season * (h // season + 1)], the latest observed value a
    whole number of seasons earlier.
    """
    h = torch.arange(horizon)
    last = Y[origins - 1].unsqueeze(1).expand(-1, horizon, -1)             # (N, horizon, K)
    back = season * (h // season + 1)                                      # (horizon,)
    seasonal = Y[origins[:, None] + h[None, :] - back[None, :]]            # (N, horizon, K)
    return last, seasonal


def _names(text: str | None, key: str) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise ConfigError(f"data.{key}={text!r}: expected comma-separated column names")
    return names


class Forecast(Task):
    name = "forecast"
    description = ("time-series forecasting from a CSV (ETTh1, stock prices; default: a "
                   "generated series); MSE/MAE beside last-value and seasonal-naive")
    ModelConfig, DataConfig = ForecastModel, ForecastData
    main_metric = "mse"
    uses_data_file = True
    # threads=1: small per-step GEMMs (B=32, H=64); a second thread only synchronises
    train_defaults = dict(steps=2000, batch_size=32, lr=1e-3, clip_norm=1.0,
                          eval_every=250, checkpoint_every=1000, threads=1)
    presets = {
        # Informer's univariate setting: OT from its own history
        "univariate": ["data.inputs=OT", "data.target=OT"],
        # Informer's multivariate setting: all 7 ETT variables from all 7
        "multivariate": ["data.target=HUFL,HULL,MUFL,MULL,LUFL,LULL,OT"],
    }

    def __init__(self, cfg, state=None):
        super().__init__(cfg, state)
        d = cfg.data
        for key in ("window", "horizon", "season", "eval_batch", "synthetic_rows"):
            if getattr(d, key) < 1:
                raise ConfigError(f"data.{key} must be at least 1, got {getattr(d, key)}")
        if d.relative and d.mode != "many-to-one":
            raise ConfigError("data.relative=true needs data.mode=many-to-one (the offset is "
                              "the window's last step, which the earlier steps of a "
                              "many-to-many forecast have not seen); set data.relative=false "
                              "for many-to-many")
        self.X: Tensor | None = None        # (rows, F) normalised inputs
        self.Y: Tensor | None = None        # (rows, K) normalised targets
        self._baselines: dict[str, dict[str, float]] = {}
        if state is None:
            self._load(None)
        else:
            for key in ("inputs", "targets", "mean", "std"):
                if not isinstance(state.get(key), list) or not state[key]:
                    raise TaskError(f"task state has no {key!r}")
            self.inputs, self.targets = state["inputs"], state["targets"]
            self.used = self.inputs + [c for c in self.targets if c not in self.inputs]
            self.mean = np.array(state["mean"], dtype=np.float64)
            self.std = np.array(state["std"], dtype=np.float64)

    # --- data ---

    def _read(self) -> Series:
        d = self.cfg.data
        return synthetic_series(d.synthetic_rows, d.seed) if d.path is None else read_series(
            d.path)

    def _columns(self, series: Series, names: list[str], key: str) -> list[int]:
        missing = [n for n in names if n not in series.columns]
        if missing:
            raise DataError(f"{series.path}: no column {', '.join(map(repr, missing))} "
                            f"(data.{key}); its numeric columns: {', '.join(series.columns)}")
        return [series.column_index(n) for n in names]

    def _load(self, stats: tuple[np.ndarray, np.ndarray] | None) -> None:
        """Read the series, cut the splits, z-score with training statistics (or ``stats``,
        the saved ones of a reloaded run)."""
        d = self.cfg.data
        series = self._read()
        if stats is None:
            self.targets = _names(d.target, "target") or [series.columns[-1]]
            self.inputs = _names(d.inputs, "inputs") or list(series.columns)
            self.used = self.inputs + [c for c in self.targets if c not in self.inputs]
        self._columns(series, self.targets, "target")
        self._columns(series, self.inputs, "inputs")
        cols = self._columns(series, self.used, "inputs")
        n = len(series.values)
        name = Path(series.path).name
        train_end, valid_end, test_end = split_bounds(n, d.split, name)
        need = d.window + d.horizon
        if train_end < need:
            raise DataError(f"{series.path}: too few rows: the training split has {train_end} "
                            f"of the {n} rows, fewer than data.window + data.horizon = {need}")
        for split, rows in (("valid", valid_end - train_end), ("test", test_end - valid_end)):
            if rows < d.horizon:
                raise DataError(f"{series.path}: too few rows: the {split} split has {rows} "
                                f"of the {n} rows, fewer than data.horizon = {d.horizon}")
        if d.season > train_end:
            raise ConfigError(f"data.season={d.season} reaches back past the first row from "
                              f"the first valid window (the training split has {train_end} "
                              f"rows)")
        values = series.values[:, cols]                                   # (rows, used)
        if stats is None:
            train = values[:train_end]
            self.mean, self.std = train.mean(axis=0), train.std(axis=0)
            flat = [c for c, s in zip(self.used, self.std) if s == 0]
            constant_targets = [c for c in flat if c in self.targets]
            if constant_targets:
                raise DataError(f"{series.path}: target column(s) "
                                f"{', '.join(map(repr, constant_targets))} are constant over "
                                f"the training split; choose another with data.target")
            self.std = np.where(self.std == 0, 1.0, self.std)
        else:
            self.mean, self.std = stats
        z = torch.from_numpy((values - self.mean) / self.std).float()        # (rows, used)
        self.X = z[:, [self.used.index(c) for c in self.inputs]]             # (rows, F)
        self.Y = z[:, [self.used.index(c) for c in self.targets]]            # (rows, K)
        self.times = series.times
        self.origins = {                    # first forecast row of every window of a split
            "train": torch.arange(d.window, train_end - d.horizon + 1),
            "valid": torch.arange(max(train_end, d.window), valid_end - d.horizon + 1),
            "test": torch.arange(max(valid_end, d.window), test_end - d.horizon + 1),
        }

    def _ensure_data(self) -> None:
        if self.X is None:             # a reloaded run: read the file, keep the saved stats
            self._load((self.mean, self.std))

    def state_dict(self) -> dict:
        return {"inputs": self.inputs, "targets": self.targets, "mean": self.mean.tolist(),
                "std": self.std.tolist()}

    # --- model, batches, loss ---

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        return Forecaster(m.cell, len(self.inputs), m.hidden, m.num_layers,
                          self.cfg.data.horizon * len(self.targets), m.dropout)

    def _windows(self, origins: Tensor) -> Tensor:
        """Input windows ``(T, B, F)`` ending just before each origin ``(B,)``."""
        rows = origins[:, None] - self.cfg.data.window + torch.arange(self.cfg.data.window)
        return self.X[rows].transpose(0, 1)                                  # (T, B, F)

    def _futures(self, origins: Tensor) -> Tensor:
        """Targets ``(B, horizon, K)`` of the rows origin .. origin+horizon-1."""
        return self.Y[origins[:, None] + torch.arange(self.cfg.data.horizon)]

    def batch(self, generator, batch_size, device):
        """Random training windows: inputs (T, B, F) and targets, (B, horizon, K) in
        many-to-one mode or (T, B, horizon, K) in many-to-many mode."""
        self._ensure_data()
        d, train = self.cfg.data, self.origins["train"]
        origins = train[torch.randint(0, len(train), (batch_size,), generator=generator)]
        xs = self._windows(origins)
        if d.relative:                  # changes from the window's last step (many-to-one)
            xs = xs - xs[-1:]
            ys = self._futures(origins) - self.Y[origins - 1][:, None]      # (B, horizon, K)
        elif d.mode == "many-to-one":
            ys = self._futures(origins)                                      # (B, horizon, K)
        else:        # step t of the window (row origin - T + t) forecasts rows after it
            steps = origins[:, None] - d.window + 1 + torch.arange(d.window)  # (B, T)
            rows = steps[:, :, None] + torch.arange(d.horizon)              # (B, T, horizon)
            ys = self.Y[rows].transpose(0, 1)                                # (T, B, horizon, K)
        return xs.to(device), ys.to(device)

    def _predict(self, model, xs: Tensor) -> Tensor:
        """All steps' forecasts ``(T, B, horizon, K)``."""
        out, _ = model(xs)                                                   # (T, B, h * K)
        return out.view(*out.shape[:2], self.cfg.data.horizon, len(self.targets))

    def loss(self, model, batch):
        xs, ys = batch
        preds = self._predict(model, xs)
        if self.cfg.data.mode == "many-to-one":
            preds = preds[-1]                                                # (B, horizon, K)
        mse = torch.mean((preds - ys) ** 2)
        return mse, {"mse": mse.item(), "mae": torch.mean(torch.abs(preds - ys)).item()}

    def _forecast_windows(self, model, xs: Tensor, last: Tensor) -> Tensor:
        """Forecasts ``(B, horizon, K)`` from input windows ``xs (T, B, F)`` whose targets'
        last observed values are ``last (B, K)`` (used by ``data.relative``)."""
        if not self.cfg.data.relative:
            return self._predict(model, xs)[-1]
        return self._predict(model, xs - xs[-1:])[-1] + last[:, None]

    @torch.no_grad()
    def forecast(self, model, origins: Tensor, device) -> Tensor:
        """The net's forecasts ``(N, horizon, K)`` (normalised) from each origin, on CPU."""
        self._ensure_data()
        out = []
        for i in range(0, len(origins), self.cfg.data.eval_batch):
            chunk = origins[i:i + self.cfg.data.eval_batch]
            xs, last = self._windows(chunk).to(device), self.Y[chunk - 1].to(device)
            out.append(self._forecast_windows(model, xs, last).float().cpu())
        return torch.cat(out)                                                # (N, horizon, K)

    @torch.no_grad()
    def evaluate(self, model, split, device):
        """MSE and MAE (normalised scale) over every window of ``split``, with the
        last-value and seasonal-naive baselines on the same windows."""
        self._ensure_data()
        origins = self.origins[split]
        truth = self._futures(origins)                                       # (N, horizon, K)
        preds = self.forecast(model, origins, device)
        mse = torch.mean((preds - truth) ** 2).item()
        metrics = {"loss": mse, "mse": mse, "mae": torch.mean(torch.abs(preds - truth)).item()}
        if split not in self._baselines:
            last, seasonal = naive_forecasts(self.Y, origins, self.cfg.data.horizon,
                                             self.cfg.data.season)
            self._baselines[split] = {
                "last_value_mse": torch.mean((last - truth) ** 2).item(),
                "last_value_mae": torch.mean(torch.abs(last - truth)).item(),
                "seasonal_naive_mse": torch.mean((seasonal - truth) ** 2).item(),
                "seasonal_naive_mae": torch.mean(torch.abs(seasonal - truth)).item(),
            }
        return {**metrics, **self._baselines[split]}

    # --- predict: plot, or forecast after a CSV ---

    def predict(self, model, inputs, device):
        """For each input: ``*.png`` -> plot the test split there, return its metrics;
        ``*.csv`` -> the forecast of the ``horizon`` steps after the file's last row."""
        for item in inputs:
            if Path(item).suffix.lower() not in (".png", ".csv"):
                raise TaskError(f"forecast predict takes a .png path (to plot the test split) "
                                f"or a .csv file (to forecast after it), got {item!r}")
        model.eval()
        return [self.plot(model, item, device) if Path(item).suffix.lower() == ".png"
                else self._forecast_csv(model, item, device) for item in inputs]

    def _forecast_csv(self, model, path, device) -> str:
        series = read_series(path)
        cols = self._columns(series, self.used, "inputs/target")
        window = self.cfg.data.window
        if len(series.values) < window:
            raise DataError(f"{path}: too few rows: {len(series.values)}, the model reads "
                            f"data.window = {window}")
        z = (series.values[-window:, cols] - self.mean) / self.std                 # (T, used)
        z = torch.from_numpy(z).float()
        xs = z[:, [self.used.index(c) for c in self.inputs]]                       # (T, F)
        k = [self.used.index(c) for c in self.targets]
        with torch.no_grad():
            pred = self._forecast_windows(model, xs[:, None].to(device),
                                          z[-1:, k].to(device))[0].cpu().double()
        pred = pred.numpy() * self.std[k] + self.mean[k]                          # (horizon, K)
        lines = [f"forecast after {path} (last row {series.times[-1]}):",
                 "step  " + "  ".join(f"{c:>12}" for c in self.targets)]
        lines += [f"+{h + 1:<4} " + "  ".join(f"{v:>12.4f}" for v in row)
                  for h, row in enumerate(pred)]
        return "\n".join(lines)

    def plot(self, model, out, device, split: str = "test", length: int = 336) -> str:
        """Write prediction vs truth of the first target over the first ``length`` steps of
        ``split`` to the PNG ``out``; return a line of the split's metrics."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        metrics = self.evaluate(model, split, device)
        d, origins = self.cfg.data, self.origins[split]
        name, k = self.targets[0], self.used.index(self.targets[0])
        scale, shift = self.std[k], self.mean[k]
        origins = origins[:length]
        preds = self.forecast(model, origins, device)[:, :, 0].numpy() * scale + shift
        o0 = int(origins[0])
        truth = self.Y[o0:o0 + len(origins) + d.horizon - 1, 0].numpy() * scale + shift

        fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7))
        x = np.arange(len(truth))
        top.plot(x, truth, color="black", lw=1, label="truth")
        top.plot(x[:len(preds)], preds[:, 0], lw=1, label="forecast, 1 step ahead")
        top.plot(x[d.horizon - 1:d.horizon - 1 + len(preds)], preds[:, -1], lw=1,
                 label=f"forecast, {d.horizon} steps ahead")
        top.set_title(f"{name}, {split} split from row {o0} ({self.times[o0]}): "
                      f"mse {metrics['mse']:.3f}, mae {metrics['mae']:.3f} (normalised)")
        top.set_xlabel(f"steps after row {o0}")
        top.legend(fontsize=8)

        one = torch.tensor([o0 + min(len(origins) - 1, 2 * d.horizon)])
        o = int(one[0])
        last, seasonal = naive_forecasts(self.Y, one, d.horizon, d.season)
        past = np.arange(-d.window, 0)
        future = np.arange(d.horizon)
        bottom.plot(past, self.Y[o - d.window:o, 0].numpy() * scale + shift, color="gray",
                    lw=1, label="input window")
        bottom.plot(future, self.Y[o:o + d.horizon, 0].numpy() * scale + shift,
                    color="black", lw=1.5, label="truth")
        bottom.plot(future, self.forecast(model, one, device)[0, :, 0].numpy() * scale + shift,
                    lw=1.5, label="forecast")
        bottom.plot(future, last[0, :, 0].numpy() * scale + shift, ls="--", lw=1,
                    label=f"last value (test mse {metrics['last_value_mse']:.3f})")
        bottom.plot(future, seasonal[0, :, 0].numpy() * scale + shift, ls=":", lw=1,
                    label=f"seasonal naive, season {d.season} "
                          f"(test mse {metrics['seasonal_naive_mse']:.3f})")
        bottom.axvline(-0.5, color="gray", lw=0.5)
        bottom.set_title(f"one forecast from row {o} ({self.times[o]})")
        bottom.set_xlabel("steps from the forecast origin")
        bottom.legend(fontsize=8)
        for ax in (top, bottom):
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        try:
            fig.savefig(out, format="png", dpi=100)
        except OSError as e:
            raise DataError(f"cannot write the plot {str(out)!r}: {e.strerror or e}") from None
        finally:
            plt.close(fig)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "loss")
        return f"wrote {out}; {split}: {shown}"
