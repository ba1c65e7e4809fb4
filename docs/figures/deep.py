"""10.5: depth in the character-level language model at the same size and budget as
docs/figures/char_lm.py (128 units a layer, 500 steps): one LSTM layer (that script's run),
two stacked layers (Fig. 10.13a), and a deep transition with a shortcut (``dts-lstm``,
Fig. 10.13c): validation bits per character against step.

    python -m docs.figures --measure char_lm deep    # three runs, ~10-15 min on one thread
"""

from __future__ import annotations

from . import curve, figure, load, machine, read_run, save_json, savefig, train
from .char_lm import NAME as ONE_LAYER
from .char_lm import SMALL

NAME = "deep"
RUNS = {"2 layers": ["model.num_layers=2"],
        "deep transition + shortcut (dts-lstm)": ["model.cell=dts-lstm"]}


def argv(options: list[str]) -> list[str]:
    return ["char-lm", "--set", *SMALL, *options]


def measure(existing: dict | None = None) -> None:
    runs = {}
    for label, options in RUNS.items():
        final, rows = read_run(existing[label]) if existing else train(argv(options))[:2]
        runs[label] = {"command": "rnnlab train " + " ".join(argv(options)), "final": final,
                       "valid_bpc": curve(rows, "bpc")}
    save_json(NAME, {"machine": machine(1), "runs": runs})


def main() -> None:
    r, one = load(NAME), load(ONE_LAYER)
    runs = {"1 layer (lstm)": one, **r["runs"]}
    fig, ax = figure()
    for label, run in runs.items():
        points = [p for p in run["valid_bpc"] if p[0] > 0]
        ax.plot(*zip(*points), "o-", ms=3, label=f"{label}: test {run['final']['test_bpc']:.3f} "
                                                 f"bpc, {run['final']['train_seconds']:.0f} s")
    ax.set_xlabel("training step (32 windows of 100 characters)")
    ax.set_ylabel("validation bits per character")
    ax.set_title("char-lm, 128 units a layer, 500 steps: where to add depth")
    ax.grid(alpha=0.3)
    ax.legend()
    savefig(fig, NAME, f"rnnlab train char-lm --set {' '.join(SMALL)} [model.num_layers=2 | "
                       f"model.cell=dts-lstm] -- {r['machine']} (shared machine: times are "
                       f"rough)")
