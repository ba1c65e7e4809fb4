"""10.1: one LSTM cell unfolded over 100-character windows (``rnnlab train char-lm``, the
`make run` task, at a reduced size and budget: 128 units, 500 steps) learning to predict
the next character: bits per character against the training step, from 6.7 (untrained).

    python -m docs.figures --measure char_lm     # one run, ~2-5 min on one thread
"""

from __future__ import annotations

from . import curve, figure, load, machine, read_run, save_json, savefig, train

NAME = "char_lm"
SMALL = ["model.hidden=128", "train.steps=500"]      # shared with docs/figures/deep.py
ARGV = ["char-lm", "--set", *SMALL]


def measure(existing=None) -> None:
    """One run (or read ``existing``, a run directory made by the same command)."""
    final, rows = read_run(existing) if existing else train(ARGV)[:2]
    save_json(NAME, {"command": "rnnlab train " + " ".join(ARGV), "machine": machine(1),
                     "final": final, "valid_bpc": curve(rows, "bpc"),
                     "train_bpc": curve(rows, "bpc", "train")})


def main() -> None:
    r = load(NAME)
    fig, ax = figure()
    ax.plot(*zip(*r["train_bpc"]), lw=0.8, alpha=0.6, label="train (10-step means)")
    ax.plot(*zip(*r["valid_bpc"]), "o-", label="validation")
    ax.set_xlabel("training step (32 windows of 100 characters)")
    ax.set_ylabel("bits per character")
    ax.set_title(f"char-lm: an LSTM unfolded over 100 steps (test {r['final']['test_bpc']:.2f} "
                 f"bpc)")
    ax.grid(alpha=0.3)
    ax.legend()
    savefig(fig, NAME, f"{r['command']} -- {r['machine']}")
