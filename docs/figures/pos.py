"""10.3: the bidirectional tagger against the same tagger reading forwards only
(``model.bidirectional=false``), UD English EWT, 500 steps each (an eighth of the
default): validation accuracy against step. The tag of a word often depends on the words
after it ("the old man the boats"); the forward-only tagger never sees them.

    python -m docs.figures --measure pos      # needs data/ud_english_ewt; ~10-20 min
"""

from __future__ import annotations

from . import corpus, figure, load, measure_accuracy_runs, savefig

NAME = "pos"
STEPS = ["train.steps=500", "train.eval_every=100", "train.checkpoint_every=500"]
RUNS = {"bidirectional": [], "forward only": ["model.bidirectional=false"]}


def argv(options: list[str]) -> list[str]:
    return ["pos", "--data", str(corpus("ud_english_ewt")), "--set", *STEPS, *options]


def command(options: list[str]) -> str:
    return " ".join(["rnnlab train pos --data data/ud_english_ewt --set", *STEPS,
                     *options])


def measure(existing: dict | None = None) -> None:
    measure_accuracy_runs(NAME, RUNS, argv, command, existing)


def main() -> None:
    r = load(NAME)
    fig, ax = figure()
    for label, run in r["runs"].items():
        points = [(s, 100 * a) for s, a in run["valid_accuracy"] if s > 0]
        ax.plot(*zip(*points), "o-", ms=3,
                label=f"{label}: test {100 * run['final']['test_accuracy']:.2f} %")
    ax.set_xlabel("training step (32 sentences)")
    ax.set_ylabel("validation UPOS accuracy (%)")
    ax.set_title("POS tagging, UD English EWT: word + character LSTM tagger")
    ax.grid(alpha=0.3)
    ax.legend()
    savefig(fig, NAME, f"{command([])} [model.bidirectional=false] -- {r['machine']}")
