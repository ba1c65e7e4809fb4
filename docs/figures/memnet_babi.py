"""Figure for docs/10.12-memory.md: the end-to-end memory network on the 20 bAbI tasks.

Reads ``docs/results/memnet_babi.json`` (written by ``benchmarks/memnet_babi.py``, the
experiment; its command, CPU, thread count and wall time are in the JSON) and writes
``docs/img/memnet_babi.png``: left, the test error per task, best of N runs (lowest training
error) and median, beside the paper's "PE LS RN" column (Sukhbaatar et al. 2015, Table 1);
right, task 2's validation error per epoch for every run, linear start shaded.

    python docs/figures/memnet_babi.py          # a few seconds
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results" / "memnet_babi.json"
IMAGE = ROOT / "docs" / "img" / "memnet_babi.png"


def main(results: Path = RESULTS, image: Path = IMAGE) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(results.read_text())
    rows = sorted(data["results"], key=lambda r: r["task"])
    paper = data["paper"]["PE LS RN"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.2), width_ratios=[2, 1])
    tasks = [r["task"] for r in rows]
    width = 0.28
    ax.bar([t - width for t in tasks], [100 * r["test_error_best"] for r in rows], width,
           label=f"rnnlab, best of {rows[0]['runs']} (lowest train error)", color="tab:blue")
    ax.bar(tasks, [100 * r["test_error_median"] for r in rows], width,
           label="rnnlab, median of the runs", color="tab:cyan")
    ax.bar([t + width for t in tasks], [paper[t - 1] for t in tasks], width,
           label="paper, PE LS RN (best of 10)", color="tab:gray")
    ax.axhline(5, color="k", lw=0.6, ls=":")
    ax.set_xticks(tasks)
    ax.set_xlabel("bAbI task (1k training questions)")
    ax.set_ylabel("test error %")
    ax.set_title("MemN2N, K = 3, d = 20, PE LS RN, one model per task")
    ax.legend(fontsize=8, loc="upper left")
    two = next((r for r in rows if r["task"] == 2 and r.get("curve")), None)
    if two is not None:
        epochs = [h["epoch"] for h in two["curve"]]
        for run in range(two["runs"]):
            errs = [100 * h["valid_error"][run] for h in two["curve"]]
            bx.plot(epochs, errs, lw=1.2 if run == two["best_run"] else 0.6,
                    color="tab:blue" if run == two["best_run"] else "tab:gray",
                    label="the run kept (lowest train error)" if run == two["best_run"]
                    else None)
        ls = max(two["ls_epochs"])
        bx.axvspan(0.5, ls + 0.5, color="tab:orange", alpha=0.15, label="linear start")
        bx.set_xlabel("epoch")
        bx.set_ylabel("validation error % (100 questions)")
        bx.set_title(f"task 2: every run (test: best {100 * two['test_error_best']:.1f} %, "
                     f"median {100 * two['test_error_median']:.1f} %)", fontsize=9)
        bx.set_ylim(0, 100)
        bx.legend(fontsize=8)
    fig.text(0.01, 0.01, f"{data['command']} | {data['cpu']}, {data['threads']} thread, "
             f"{data.get('wall_seconds', 0) / 60:.0f} min (shared machine)", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    image.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(image, dpi=80)
    plt.close(fig)
    return image


if __name__ == "__main__":
    print(main())
