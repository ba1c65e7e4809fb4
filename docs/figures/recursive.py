"""10.6: the Child-Sum Tree-LSTM over the parse trees of the Stanford Sentiment Treebank
against the sequential bidirectional LSTM over the same sentences (fine-grained, 5 classes,
500 steps each): validation root accuracy against step.

    python -m docs.figures --measure recursive   # needs data/sst; ~5-10 min
"""

from __future__ import annotations

from . import corpus, figure, load, measure_accuracy_runs, savefig

NAME = "recursive"
STEPS = ["train.steps=500", "train.eval_every=100", "train.checkpoint_every=500"]
RUNS = {"Tree-LSTM (tree-sentiment)": "tree-sentiment", "BiLSTM (sentiment)": "sentiment"}


def argv(task: str) -> list[str]:
    return [task, "--data", str(corpus("sst")), "--set", *STEPS]


def command(task: str) -> str:
    return " ".join([f"rnnlab train {task} --data data/sst --set", *STEPS])


def measure(existing: dict | None = None) -> None:
    measure_accuracy_runs(NAME, RUNS, argv, command, existing)


def main() -> None:
    r = load(NAME)
    fig, ax = figure()
    for label, run in r["runs"].items():
        points = [(s, 100 * a) for s, a in run["valid_accuracy"]]
        ax.plot(*zip(*points), "o-", ms=3,
                label=f"{label}: test {100 * run['final']['test_accuracy']:.1f} %")
    ax.axhline(20, color="gray", ls=":", label="chance (5 classes)")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation root accuracy (%)")
    ax.set_title("SST fine-grained sentiment: tree vs chain")
    ax.grid(alpha=0.3)
    ax.legend()
    savefig(fig, NAME, f"rnnlab train tree-sentiment|sentiment --data data/sst --set "
                       f"{' '.join(STEPS)} -- {r['machine']}")
