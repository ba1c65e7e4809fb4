"""The NTM pictures of docs/10.12-memory.md, drawn from ``docs/results/ntm.json`` (written by
``python benchmarks/ntm.py``, about an hour on one shared 2-core machine):

    docs/img/ntm_copy.png          copy: bit error against sequences seen (in range and at
                                   length 40), and against the test length, NTM vs LSTM
    docs/img/ntm_repeat_copy.png   repeat copy: bit error on lengths and repeats beyond
                                   training

    python docs/figures/ntm.py     (or python -m docs.figures ntm)
    python docs/figures/ntm.py --table     prints the page's tables (markdown)
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
RESULTS, IMG = DOCS / "results" / "ntm.json", DOCS / "img"
COLORS = {"copy": "tab:blue", "lstm": "tab:red"}
LABELS = {"copy": "NTM (LSTM controller)", "lstm": "LSTM 3 x 256"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _caption(fig, data: dict, text: str) -> None:
    fig.text(0.01, 0.005, f"{text}; {data['cpu']}, {data['threads']} thread per run, "
             "shared machine", fontsize=6, color="0.35", va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 1))


def copy_figure(data: dict, plt) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for part in ("copy", "lstm"):
        for i, run in enumerate(data.get(part, {}).get("runs", [])):
            label = LABELS[part] if i == 0 else None
            x, y = zip(*run["valid_curve"])
            left.plot(x, y, color=COLORS[part], lw=1, label=label and f"{label}, lengths 1-20")
            x, y = zip(*run["len40_curve"])
            left.plot(x, y, color=COLORS[part], lw=1, ls="--",
                      label=label and f"{label}, length 40")
            lengths = [int(k) for k in run["lengths"]]
            right.plot(lengths, list(run["lengths"].values()), color=COLORS[part], marker="o",
                       ms=3, lw=1, label=label)
    left.set(xlabel="training sequences seen", ylabel="bit error rate", ylim=(0, 0.55),
             title="copy: learning curves (one line per seed)")
    left.axhline(0.05, color="0.6", lw=0.5)
    left.legend(fontsize=7)
    right.axvspan(1, 20, color="0.92", label="training lengths")
    right.axhline(0.05, color="0.6", lw=0.5)
    right.set(xlabel="sequence length", ylabel="bit error rate", ylim=(0, 0.55),
              title="copy: after training, by test length")
    right.legend(fontsize=7)
    _caption(fig, data, "python benchmarks/ntm.py --parts copy lstm")
    return _save(fig, "ntm_copy", plt)


def repeat_figure(data: dict, plt) -> Path:
    runs = data["repeat"]["runs"]
    names = ["in range\nL 1-5, R 1-5"] + [f"L={g[0]}\nR={g[1]}" for g in runs[0]["grid"]]
    fig, (curve, ax) = plt.subplots(1, 2, figsize=(10.5, 3.8),
                                    gridspec_kw={"width_ratios": [1, 1.6]})
    for run in runs:
        seen, error = zip(*run["valid_curve"])
        curve.plot(seen, error, lw=1, label=f"seed {run['seed']}")
    curve.axhline(0.05, color="0.6", lw=0.5)
    curve.xaxis.set_major_formatter(lambda n, _: f"{n / 1000:.0f}k")
    curve.set(xlabel="sequences seen", ylabel="bit error rate (lengths 1-5, repeats 1-5)",
              ylim=(0, 0.6), title="learning curve (validation)")
    curve.legend(fontsize=7)
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        ax.bar([k + i * width for k in range(len(names))],
               [run["in_range"]] + [g[2] for g in run["grid"]], width=width,
               label=f"seed {run['seed']}")
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(names))], names, fontsize=7)
    ax.axhline(0.05, color="0.6", lw=0.5)
    ax.set(ylabel="bit error rate", ylim=(0, 0.55), title=f"after "
           f"{runs[0]['sequences']:,} sequences (L = length, R = repeats)")
    ax.legend(fontsize=7)
    _caption(fig, data, "python benchmarks/ntm.py --parts repeat")
    return _save(fig, "ntm_repeat_copy", plt)


def _save(fig, name: str, plt) -> Path:
    IMG.mkdir(exist_ok=True)
    path = IMG / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def tables(data: dict) -> str:
    """The page's tables (markdown) from the results: copy per seed and median, and the
    repeat-copy grid."""
    out = []
    if "copy" in data:
        shown = ["40", "60", "80", "100", "120"]
        out.append("| model | seed | sequences trained | ≤ 5 % at length 40 after | CPU s | "
                   "wall min | lengths 1-20 | " + " | ".join(f"length {k}" for k in shown)
                   + " |")
        out.append("|---" * (7 + len(shown)) + "|")
        for part in ("copy", "lstm"):
            for run in data.get(part, {}).get("runs", []):
                reached = next((f"{n:,}" for n, e in run["len40_curve"] if e <= 0.05), "never")
                cpu = "—" if run.get("cpu_seconds") is None else f"{run['cpu_seconds']:.0f}"
                out.append(f"| {LABELS[part]} | {run['seed']} | {run['sequences']:,} | "
                           f"{reached} | {cpu} | {run['wall_seconds'] / 60:.0f} | "
                           f"{run['in_range']:.4f} | "
                           + " | ".join(f"{run['lengths'][k]:.4f}" for k in shown) + " |")
            if part in data and len(data[part]["runs"]) > 1:
                med = data[part]["median"]
                out.append(f"| {LABELS[part]} | **median** | | | | | **{med['in_range']:.4f}** | "
                           + " | ".join(f"**{med['lengths'][k]:.4f}**" for k in shown) + " |")
    if "repeat" in data:
        runs = data["repeat"]["runs"]
        out += ["", "| seed | sequences | ≤ 1 % in range after | CPU s | "
                "lengths 1-5, repeats 1-5 | "
                + " | ".join(f"L={L}, R={R}" for L, R, _ in runs[0]["grid"]) + " |",
                "|---" * (5 + len(runs[0]["grid"])) + "|"]
        for run in runs:
            reached = next((f"{n:,}" for n, e in run["valid_curve"] if n and e <= 0.01),
                           "never")
            cpu = "—" if run.get("cpu_seconds") is None else f"{run['cpu_seconds']:.0f}"
            out.append(f"| {run['seed']} | {run['sequences']:,} | {reached} | {cpu} | "
                       f"{run['in_range']:.4f} | "
                       + " | ".join(f"{g[2]:.4f}" for g in run["grid"]) + " |")
        if len(runs) > 1:
            med = [statistics.median(run["grid"][k][2] for run in runs)
                   for k in range(len(runs[0]["grid"]))]
            out.append(f"| **median** | | | | **{data['repeat']['median']['in_range']:.4f}** | "
                       + " | ".join(f"**{m:.4f}**" for m in med) + " |")
    return "\n".join(out)


def main() -> None:
    data = json.loads(RESULTS.read_text(encoding="utf-8"))
    plt = _pyplot()
    if "copy" in data:
        copy_figure(data, plt)
    if "repeat" in data:
        repeat_figure(data, plt)


if __name__ == "__main__":
    import sys

    if "--table" in sys.argv[1:]:
        print(tables(json.loads(RESULTS.read_text(encoding="utf-8"))))
    else:
        main()
