"""The pictures of the guided tour (docs/img/*.png), each drawn by a script kept here.

Convention: ``docs/figures/<name>.py`` has ``main()``, which reads the small committed
results ``docs/results/<name>.json`` and writes ``docs/img/<name>.png`` (a script may draw
more than one picture, each named ``<name>...png``). Drawing is fast and needs no
training. A script whose results come from runs rnnlab can repeat also has ``measure()``,
which re-runs them (single-threaded, a few minutes at most each) and rewrites its JSON;
every JSON names the command, the CPU and the thread count it was measured with.

    python -m docs.figures                 # draw every picture from the committed results
    python -m docs.figures adding esn      # only these
    python -m docs.figures --measure esn   # re-run the measurements first, then draw
    make figures                           # the first line

Helpers shared by the scripts: :func:`load`, :func:`save_json`, :func:`savefig`,
:func:`train`, :func:`read_run`, :func:`curve`, :func:`machine`, :func:`corpus`,
:func:`measure_accuracy_runs`.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
RESULTS = DOCS / "results"
IMG = DOCS / "img"


def corpus(name: str) -> Path:
    """The real corpus ``name`` (docs/data.md): ``data/<name>`` in the checkout, or, where
    rnnlab's own tests and benchmarks find it, the ``shared/data`` folder beside it.
    Commands written into results and pictures name it ``data/<name>``."""
    root = DOCS.parent
    for folder in (root / "data" / name, root.parent / "shared" / "data" / name):
        if folder.exists():
            return folder
    raise FileNotFoundError(f"the corpus {name!r} is expected in data/{name} (docs/data.md "
                            f"says where to download it)")


def load(name: str) -> dict:
    """The committed results ``docs/results/<name>.json``."""
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def save_json(name: str, data: dict) -> Path:
    """Write ``docs/results/<name>.json`` (small, human-readable)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


def figure(width: float = 6.4, height: float = 3.6, **kwargs):
    """A matplotlib figure on the non-interactive backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), **kwargs)


def savefig(fig, name: str, caption: str | None = None) -> Path:
    """Write ``docs/img/<name>.png`` (small: 100 dpi) with ``caption`` (the command, CPU and
    threads) in small print under the axes, and close the figure."""
    import matplotlib.pyplot as plt

    if caption:
        import textwrap

        width = int(fig.get_size_inches()[0] * 24)           # characters of 6-point text
        lines = textwrap.wrap(caption, width)
        fig.text(0.01, 0.005, "\n".join(lines), fontsize=6, color="0.35", va="bottom")
        fig.tight_layout(rect=(0, 0.03 + 0.025 * len(lines), 1, 1))
    else:
        fig.tight_layout()
    IMG.mkdir(exist_ok=True)
    path = IMG / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def machine(threads: int = 1) -> str:
    """``"AMD EPYC, 1 thread"``: the CPU model (lscpu's "Model name") and the thread count."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {threads} thread{'s' if threads != 1 else ''}"


def train(argv: list[str], keep: Path | None = None) -> tuple[dict, list[dict], Path]:
    """Run ``rnnlab train ARGV`` single-threaded in a fresh run directory (under ``keep`` or
    a temporary folder) and return :func:`read_run` of it."""
    import contextlib
    import io

    import torch

    from rnnlab import cli

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="rnnlab-figures-"))
    root.mkdir(parents=True, exist_ok=True)
    run = root / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["train", *argv, "--out", str(run)])
    if code != 0:
        raise RuntimeError(f"rnnlab train {shlex.join(argv)} exited with {code}")
    return (*read_run(run), run)


def read_run(run: Path) -> tuple[dict, list[dict]]:
    """(final figures, metrics.jsonl rows) of a finished run directory: the last valid and
    test rows as ``valid_X`` / ``test_X`` (the names of ``--json``) and ``train_seconds``."""
    run = Path(run)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    final = {}
    for split in ("valid", "test"):
        last = [r for r in rows if r.get("split") == split]
        if last:
            final.update({f"{split}_{k}": v for k, v in last[-1].items()
                          if k not in ("step", "split")})
    for line in (run / "summary.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("time"):
            final["train_seconds"] = float(line.split()[1])
    return final, rows


def measure_accuracy_runs(name: str, runs: dict, argv, command,
                          existing: dict | None = None) -> None:
    """Train each of ``runs`` (label -> what ``argv`` and ``command`` take: the run's
    ``rnnlab train`` arguments and the command to record), or re-read its finished run
    directory from ``existing`` (label -> path), and save ``docs/results/<name>.json``:
    each run's command, final figures and validation accuracy curve, and the machine."""
    results = {}
    for label, spec in runs.items():
        final, rows = read_run(existing[label]) if existing else train(argv(spec))[:2]
        results[label] = {"command": command(spec), "final": final,
                          "valid_accuracy": curve(rows, "accuracy")}
    save_json(name, {"machine": machine(1), "runs": results})


def curve(rows: list[dict], metric: str, split: str = "valid") -> list[list[float]]:
    """``[[step, value], ...]`` of ``metric`` on ``split`` from metrics.jsonl rows."""
    return [[r["step"], r[metric]] for r in rows if r.get("split") == split and metric in r]
