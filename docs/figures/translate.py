"""10.4: what attention and the ways of conditioning the decoder (book 10.2.4) are worth in
the encoder-decoder: test BLEU on Tatoeba English-French for the runs of the translate
table of docs/results.md (same data, 1,500 steps each for the short runs), against the
retrieval baseline. Without attention the whole sentence must pass through one fixed-size
context C (book Fig. 10.12).

The figures are the task's measured table: ``measure()`` reads them from docs/results.md
(section "translate"), which says how each was run; re-running them is ``rnnlab train
translate --data data/tatoeba_eng_fra/fra.txt.gz --set ...`` with the settings
listed there (2-7 min each on one thread of a quiet machine).
"""

from __future__ import annotations

import re

from . import DOCS, figure, load, save_json, savefig

NAME = "translate"
SHORT_RUN = re.compile(r"^\s+((?:no )?attention, .+?)\s{2,}(\d+) s\s+([\d.]+) /\s*([\d.]+), "
                       r"([\d.]+)$")


def measure() -> None:
    """Read the translate table of docs/results.md."""
    text = (DOCS / "results.md").read_text(encoding="utf-8")
    section = text.split("## translate", 1)[1].split("\n## ", 1)[0]
    machine = re.search(r"one thread\s+on a ([^)]+)\)", section).group(1)
    runs = {}
    for line in section.splitlines():
        m = SHORT_RUN.match(line)
        if m:
            runs[m.group(1).strip()] = {"seconds": int(m.group(2)), "bleu_greedy":
                                        float(m.group(3)), "bleu_beam": float(m.group(4)),
                                        "perplexity": float(m.group(5))}
    default = re.search(r"default config \(3000 steps.*?(\d+) s\s+test BLEU ([\d.]+) greedy,"
                        r"\s*\n.*?([\d.]+) beam", section, re.S)
    full = re.search(r"--config full .*?(\d+) s\s+([\d.]+) greedy, ([\d.]+) beam", section)
    retrieval = re.search(r"scores test BLEU ([\d.]+)", section)
    save_json(NAME, {
        "source": "docs/results.md, translate (rnnlab train translate --data "
                  "data/tatoeba_eng_fra/fra.txt.gz ...)",
        "machine": f"{machine} (CPU model not recorded), 1 thread",
        "short_runs": runs,
        "short_settings": "1500 steps, lr 2e-3 constant, dropout 0.2",
        "default": {"seconds": int(default.group(1)), "bleu_greedy": float(default.group(2)),
                    "bleu_beam": float(default.group(3))},
        "full": {"seconds": int(full.group(1)), "bleu_greedy": float(full.group(2)),
                 "bleu_beam": float(full.group(3))},
        "retrieval_bleu": float(retrieval.group(1))})


def main() -> None:
    r = load(NAME)
    def label(name: str) -> str:
        for part in (", condition", ", inverse", " ("):
            name = name.replace(part, "\n" + part.lstrip(", "))
        return name.replace("\ncondition", ",\ncondition").replace("\ninverse", ",\ninverse")

    bars = {**{label(k): v for k, v in r["short_runs"].items()},
            "default\n(attention,\n3000 steps)": r["default"],
            "--config full\n(3000 steps)": r["full"]}
    fig, ax = figure(8, 3.8)
    xs = range(len(bars))
    ax.bar([x - 0.2 for x in xs], [b["bleu_greedy"] for b in bars.values()], 0.4,
           label="greedy")
    ax.bar([x + 0.2 for x in xs], [b["bleu_beam"] for b in bars.values()], 0.4,
           label="beam 5")
    ax.axhline(r["retrieval_bleu"], color="gray", ls=":",
               label=f"retrieval baseline ({r['retrieval_bleu']})")
    ax.set_xticks(list(xs), list(bars), fontsize=6.5)
    ax.set_ylabel("test BLEU")
    ax.set_title("English -> French (Tatoeba): short runs (1,500 steps), default and full (3,000)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    savefig(fig, NAME, f"{r['source']} -- {r['machine']}")
