"""Output-to-hidden (Fig. 10.4) against hidden-to-hidden (Fig. 10.3) recurrence on char-lm.

    python docs/figures/feedback_lm.py   # docs/results/feedback_lm.json -> docs/img/feedback_lm.png

Left: valid bits per character over training; the feedback model scored free-running (its
own softmax fed back, as at test time) and teacher-forced (the true previous character fed
back, as in training). Right: median time per training step. The JSON comes from
``benchmarks/feedback_lm.py`` (the command and wall time are in its ``meta``).
"""

from __future__ import annotations

import json
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
NAME = "feedback_lm"


def main(results: Path = DOCS / "results" / f"{NAME}.json",
         out: Path = DOCS / "img" / f"{NAME}.png") -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(Path(results).read_text())
    rnn, fb, meta = data["models"]["rnn"], data["models"]["feedback"], data["meta"]
    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(10, 3.8),
                                   gridspec_kw={"width_ratios": [2.2, 1]})
    ax.plot(rnn["curve"]["step"], rnn["curve"]["bpc"], "o-", color="tab:blue",
            label="hidden-to-hidden tanh RNN (BPTT)")
    ax.plot(fb["curve"]["step"], fb["curve"]["bpc"], "s-", color="tab:orange",
            label="output-to-hidden, free-running")
    ax.plot(fb["curve"]["step"], fb["curve"]["tf_bpc"], "s--", color="tab:orange", alpha=0.6,
            label="output-to-hidden, teacher-forced")
    ax.set(xlabel="training steps (batches of 32 x 100 characters)",
           ylabel="valid bits per character",
           title=f"char-lm, {meta['hidden']} hidden units, same batches")
    ax.legend(fontsize=8)
    names = ["hidden-to-hidden\n(BPTT, fused)", "output-to-hidden\n(teacher forcing)"]
    times = [rnn["ms_per_step"], fb["ms_per_step"]]
    ax_t.bar(names, times, color=["tab:blue", "tab:orange"])
    for i, t in enumerate(times):
        ax_t.text(i, t, f"{t:.0f} ms", ha="center", va="bottom", fontsize=9)
    ax_t.set(ylabel="median ms per training step", title="time per step (interleaved)")
    fig.suptitle(f"{meta['cpu']}, {meta['threads']} thread, torch {meta['torch']}, "
                 f"shared machine", fontsize=8, y=0.02)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return Path(out)


if __name__ == "__main__":
    print(main())
