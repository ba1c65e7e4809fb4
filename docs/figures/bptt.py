"""10.2: what the hand-derived back-propagation through time buys — ms per training step
(forward + backward) of torch.nn, the autograd loop over torch's cells that a user would
write, and rnnlab's fused kernels (book eq. 10.16-10.22 and their gated analogues), for the
tanh RNN, the LSTM and the GRU, read from the committed kernel benchmark
(benchmarks/RESULTS.md, 1 thread).

    rnnlab bench --out benchmarks/RESULTS.md     # re-measures the benchmark (~1 h)
    python -m docs.figures --measure bptt       # re-reads it into docs/results/bptt.json
"""

from __future__ import annotations

import re

from . import DOCS, figure, load, save_json, savefig

NAME = "bptt"
RESULTS_MD = DOCS.parent / "benchmarks" / "RESULTS.md"
CELLS = ["rnn", "lstm", "gru"]
CONFIGS = {"small": "B 32, T 100, I 64, H 128", "long": "B 16, T 1000, I 32, H 64"}


def measure() -> None:
    """Read the 1-thread table of benchmarks/RESULTS.md."""
    text = RESULTS_MD.read_text(encoding="utf-8")
    one_thread = text.split("### 1 thread", 1)[1].split("\n### ", 1)[0]
    header = re.search(r"^- machine: (.*)$", text, re.M).group(1).split(" (")[0]
    command = re.search(r"^- command: `(.*)`$", text, re.M).group(1)
    rows = {}
    for line in one_thread.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 5 and cells[0] in CELLS and cells[1] in CONFIGS:
            ms = [float(c.split()[0]) if c else None for c in cells[3:6]]
            rows.setdefault(cells[0], {})[cells[1]] = dict(zip(
                ["torch.nn", "autograd loop", "rnnlab"], ms))
    save_json(NAME, {"command": command, "machine": f"{header}, 1 thread",
                     "configs": CONFIGS, "ms_per_step": rows})


def main() -> None:
    r = load(NAME)
    impls = ["torch.nn", "autograd loop", "rnnlab"]
    fig, axes = figure(8, 3.4, ncols=len(r["configs"]))
    for ax, (config, shape) in zip(axes, r["configs"].items()):
        for k, impl in enumerate(impls):
            xs = [i + (k - 1) * 0.27 for i in range(len(CELLS))]
            ys = [r["ms_per_step"][cell][config][impl] for cell in CELLS]
            ax.bar(xs, ys, width=0.27, label=impl)
        ax.set_xticks(range(len(CELLS)), CELLS)
        ax.set_title(f"{config}: {shape}", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("ms per training step")
    axes[0].legend(fontsize=8)
    savefig(fig, NAME, f"rnnlab bench (benchmarks/RESULTS.md, the 1-thread table) -- "
                       f"{r['machine']}")
