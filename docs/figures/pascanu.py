"""Pascanu et al. 2013 on the temporal order problem: SGD-C against SGD-CR (book 10.11).

    python docs/figures/pascanu.py          # docs/results/pascanu.json -> docs/img/pascanu.png

Left: valid error over training, one line per run (5 seeds per arm), the paper's success
line at 1 %. Right: the mean one-step ratio r_k = ‖(∂L/∂h_{k+1}) ∂h_{k+1}/∂h_k‖ / ‖∂L/∂h_{k+1}‖
that Ω pushes towards 1, on a fixed probe batch, in both arms. The JSON comes from
``benchmarks/pascanu.py`` (the command and wall time are in its ``meta``).
"""

from __future__ import annotations

import json
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
NAME = "pascanu"


def main(results: Path = DOCS / "results" / f"{NAME}.json",
         out: Path = DOCS / "img" / f"{NAME}.png") -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(Path(results).read_text())
    runs = sorted(data["runs"], key=lambda r: (r["pascanu"], r["seed"]))
    fig, (ax_err, ax_ratio) = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = {0.0: "tab:red", **{r["pascanu"]: "tab:blue" for r in runs if r["pascanu"]}}
    for r in runs:
        label_arm = "SGD-C" if r["pascanu"] == 0 else f"SGD-CR (Ω weight {r['pascanu']:g})"
        arm = [x for x in runs if x["pascanu"] == r["pascanu"]]
        label = (f"{label_arm}: {sum(x['solved'] for x in arm)}/{len(arm)} solved"
                 if r is arm[0] else None)
        c = colours[r["pascanu"]]
        ax_err.plot(r["curve"]["step"], r["curve"]["error"], color=c, alpha=0.7, lw=1.2,
                    label=label)
        ax_ratio.plot(r["ratio"]["step"], r["ratio"]["ratio"], color=c, alpha=0.7, lw=1.2,
                      label=label_arm if r is arm[0] else None)
    T = runs[0]["length"]
    ax_err.axhline(0.01, color="k", ls=":", lw=1)
    ax_err.set(xlabel="SGD updates (minibatches of 20)", ylabel="valid error (10 000 seqs)",
               title=f"temporal order, T = {T}, 50 tanh units", ylim=(-0.02, 0.8))
    ax_err.legend(fontsize=8)
    ax_ratio.axhline(1.0, color="k", ls=":", lw=1)
    ax_ratio.set(xlabel="SGD updates", ylabel="mean r_k over steps and sequences",
                 title="per-step gradient-norm ratio (Ω wants 1)")
    ax_ratio.legend(fontsize=8)
    meta = data["meta"]
    fig.suptitle(f"{meta['cpu']}, {meta['threads']} thread per run, torch {meta['torch']}",
                 fontsize=8, y=0.02)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return Path(out)


if __name__ == "__main__":
    print(main())
