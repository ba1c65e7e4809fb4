"""10.4: the encoder-decoder with and without attention (Tatoeba English-French, the short
settings of docs/results.md at 800 of their 1,500 steps: lr 2e-3 constant, dropout 0.2,
context as the decoder's initial state): validation BLEU against step. Without attention the whole
sentence must pass through one fixed-size context C (book Fig. 10.12).

    python -m docs.figures --measure translate   # needs ../shared/data/tatoeba_eng_fra; ~6-12 min
"""

from __future__ import annotations

from . import DOCS, curve, figure, load, machine, read_run, save_json, savefig, train

NAME = "translate"
SHORT = ["train.steps=800", "train.lr=2e-3", "train.lr_decay=none", "model.dropout=0.2",
         "train.eval_every=200", "train.checkpoint_every=800"]
RUNS = {"attention": [], "no attention": ["model.attention=false"]}


def argv(options: list[str]) -> list[str]:
    data = DOCS.parents[1] / "shared" / "data" / "tatoeba_eng_fra" / "fra.txt.gz"
    if not data.is_file():
        raise FileNotFoundError(f"{NAME}: the Tatoeba pairs are expected in "
                                f"../shared/data/tatoeba_eng_fra/fra.txt.gz beside the checkout")
    return ["translate", "--data", str(data), "--set", *SHORT, *options]


def command(options: list[str]) -> str:
    return " ".join(["rnnlab train translate --data ../shared/data/tatoeba_eng_fra/fra.txt.gz "
                     "--set", *SHORT, *options])


def measure(existing: dict | None = None) -> None:
    runs = {}
    for label, options in RUNS.items():
        final, rows = read_run(existing[label]) if existing else train(argv(options))[:2]
        runs[label] = {"command": command(options), "final": final,
                       "valid_bleu": curve(rows, "bleu")}
    save_json(NAME, {"machine": machine(1), "runs": runs})


def main() -> None:
    r = load(NAME)
    fig, ax = figure()
    for label, run in r["runs"].items():
        ax.plot(*zip(*run["valid_bleu"]), "o-", ms=3,
                label=f"{label}: test BLEU {run['final']['test_bleu']:.1f}")
    ax.set_xlabel("training step (64 sentence pairs)")
    ax.set_ylabel("validation BLEU (greedy)")
    ax.set_title("English -> French (Tatoeba), encoder-decoder")
    ax.grid(alpha=0.3)
    ax.legend()
    savefig(fig, NAME, f"{command([])} [model.attention=false] -- {r['machine']}")
