"""10.9: multiple time scales. Reads ``docs/results/timescales.json`` (written by
``benchmarks/timescales.py``, see docs/10.9-time-scales.md for the commands and their wall
time) and draws

    docs/img/timescales.png             success rate over seeds against T, per strategy
    docs/img/timescales_flow.png        ‖∂L/∂h_t‖ against the distance back from the loss,
                                        per strategy, untrained (rnnlab.diagnose.gradient_flow)
    docs/img/timescales_clockwork.png   Koutník et al. 2014, 4.1: the generated signal of a
                                        clockwork RNN, a tanh RNN and an LSTM of ~850-900
                                        parameters against the target, and NMSE per model

    python docs/figures/timescales.py        # a few seconds, no training
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

DOCS = Path(__file__).resolve().parents[1]
NAME = "timescales"
COLOURS = {"tanh": "k", "leaky-fixed": "tab:blue", "leaky-learned": "tab:cyan",
           "skip": "tab:green", "delay": "tab:olive", "clockwork": "tab:red",
           "lstm": "tab:purple", "tanh-2layer": "0.55"}


def _figure(width, height, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), **kwargs)


def _save(fig, name: str, caption: str) -> Path:
    import matplotlib.pyplot as plt

    fig.text(0.01, 0.005, caption, fontsize=6, color="0.35", va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path = DOCS / "img" / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def success_table(runs: list[dict]) -> dict[tuple[str, str], dict[int, tuple[int, int]]]:
    """{(task, strategy): {T: (successes, seeds)}}."""
    table: dict = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for r in runs:
        cell = table[(r["task"], r["strategy"])][r["T"]]
        cell[0] += bool(r["success"])
        cell[1] += 1
    return {k: {t: tuple(v) for t, v in sorted(d.items())} for k, d in table.items()}


def markdown(runs: list[dict], task: str) -> str:
    """The success table of ``task`` as markdown: strategy x T, "successes/seeds (median
    test metric)"."""
    table = success_table(runs)
    lengths = sorted({r["T"] for r in runs if r["task"] == task})
    order = [s for s in COLOURS if (task, s) in table]
    lines = ["| strategy | cells | params | " + " | ".join(f"T = {n}" for n in lengths) + " |",
             "|---|---|---|" + "---|" * len(lengths)]
    for strategy in order:
        example = next(r for r in runs if (r["task"], r["strategy"]) == (task, strategy))
        cells = []
        for n in lengths:
            tests = sorted(r["test"] for r in runs
                           if (r["task"], r["strategy"], r["T"]) == (task, strategy, n))
            if not tests:
                cells.append("–")
                continue
            ok, seeds = table[(task, strategy)][n]
            cells.append(f"{ok}/{seeds} ({tests[len(tests) // 2]:.3g})")
        lines.append(f"| {strategy} | `{', '.join(example['cells'])}` | {example['params']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> list[Path]:
    r = json.loads((DOCS / "results" / f"{NAME}.json").read_text(encoding="utf-8"))
    where = f"{r['machine']['cpu']}, {r['machine']['threads']} thread"
    paths = []

    table = success_table(r["runs"])
    rows = sorted(table, key=lambda k: (k[0], list(COLOURS).index(k[1])
                                        if k[1] in COLOURS else 99))
    lengths = sorted({x["T"] for x in r["runs"]})
    fig, ax = _figure(6.4, 1.2 + 0.33 * len(rows))
    rate = np.full((len(rows), len(lengths)), np.nan)
    for i, key in enumerate(rows):
        for j, n in enumerate(lengths):
            if n in table[key]:
                ok, seeds = table[key][n]
                rate[i, j] = ok / seeds
                ax.text(j, i, f"{ok}/{seeds}", ha="center", va="center", fontsize=8,
                        color="k")
            else:
                ax.text(j, i, "–", ha="center", va="center", fontsize=8, color="0.5")
    ax.imshow(np.ma.masked_invalid(rate), cmap="RdYlGn", vmin=-0.4, vmax=1.4,
              aspect="auto")
    ax.set_xticks(range(len(lengths)))
    ax.set_xticklabels([f"T = {n}" for n in lengths])
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([s if t == "copy" else f"{s} ({t})" for t, s in rows], fontsize=8)
    first = r["runs"][0]
    ax.set_title(f"copy memory, 1 symbol, delay T: successes / seeds (test accuracy ≥ 0.99)\n"
                 f"H = {first['hidden']}, {first['steps']} steps of {first['batch_size']}, Adam "
                 f"lr {first['lr']:g}", fontsize=8)
    paths.append(_save(fig, NAME, f"python benchmarks/timescales.py sweep --task copy -- "
                                  f"{where}"))

    if r.get("flow"):
        groups = sorted({(f["task"], f["T"]) for f in r["flow"]})
        fig, axes = _figure(max(6.4, 4.6 * len(groups)), 3.6, ncols=len(groups), squeeze=False)
        for ax, (task, length) in zip(axes[0], groups):
            for f in r["flow"]:
                if (f["task"], f["T"]) != (task, length):
                    continue
                # t = 1 .. T-1 against T - t, relative to t = T - 1: a wrapper's state at
                # t = T gets no gradient when its output is not the state tensor itself
                norms = f["norms"][:-1]
                ref = norms[-1] or 1.0
                back = list(range(len(norms), 0, -1))
                ax.plot(back, [max(n / ref, 1e-30) for n in norms],
                        color=COLOURS.get(f["strategy"]), label=f["strategy"], lw=1)
            ax.set_yscale("log")
            ax.set_xlabel("steps back from the loss, T - t")
            ax.set_ylabel("‖∂L/∂h_t‖ / ‖∂L/∂h_(T-1)‖")
            ax.set_title(f"{task}, T = {length}, untrained, H = {r['flow'][0]['hidden']}",
                         fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        paths.append(_save(fig, f"{NAME}_flow",
                           f"python benchmarks/timescales.py flow (rnnlab.diagnose."
                           f"gradient_flow, batch 64, seed 0) -- {where}"))

    if r.get("generation"):
        gen = r["generation"]
        shown = [g for g in gen if "output" in g]
        fig, axes = _figure(9, 3.4, ncols=2, gridspec_kw={"width_ratios": [2, 1]})
        ax = axes[0]
        if shown:
            ax.plot(shown[0]["target"], color="0.6", lw=3, label="target")
        for g in shown:
            ax.plot(g["output"], color=COLOURS.get(g["kind"]), lw=1,
                    label=f"{g['kind']} ({g['params']} params): NMSE {g['nmse']:.3g}")
        ax.set_xlabel("step")
        ax.set_title("generated from no input (signal 0, seed 0)", fontsize=8)
        ax.legend(fontsize=7)
        ax = axes[1]
        kinds = list(dict.fromkeys(g["kind"] for g in gen))
        for i, kind in enumerate(kinds):
            values = [g["nmse"] for g in gen if g["kind"] == kind]
            ax.scatter([i] * len(values), values, color=COLOURS.get(kind), s=14)
        ax.set_xticks(range(len(kinds)))
        ax.set_xticklabels(kinds)
        ax.set_yscale("log")
        ax.set_ylabel("NMSE (every signal and seed)")
        ax.grid(alpha=0.3)
        paths.append(_save(fig, f"{NAME}_clockwork",
                           f"python benchmarks/timescales.py generate -- {where}"))
    return paths


if __name__ == "__main__":
    for path in main():
        print(path.relative_to(DOCS.parent))
    results = json.loads((DOCS / "results" / f"{NAME}.json").read_text(encoding="utf-8"))
    for task in sorted({r["task"] for r in results["runs"]}):
        print(f"\n{task}: successes/seeds (median test metric)\n" +
              markdown(results["runs"], task))
