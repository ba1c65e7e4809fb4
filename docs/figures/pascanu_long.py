"""The figure of ``pascanu.py`` for the runs with twice the budget (20 000 updates).

    python docs/figures/pascanu_long.py   # results/pascanu_long.json -> img/pascanu_long.png
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAME = "pascanu_long"


def main(results: Path = HERE.parent / "results" / f"{NAME}.json",
         out: Path = HERE.parent / "img" / f"{NAME}.png") -> Path:
    spec = importlib.util.spec_from_file_location("pascanu_figure", HERE / "pascanu.py")
    figure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figure)
    return figure.main(results, out)


if __name__ == "__main__":
    print(main())
