"""Draw the tour's pictures: ``python -m docs.figures [NAME ...] [--measure]`` from the
repository root (see :mod:`docs.figures`)."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts() -> list[str]:
    """Every figure script's name: the modules of docs/figures/ not starting with ``_``."""
    return sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    names = scripts()
    parser = argparse.ArgumentParser(prog="python -m docs.figures", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"scripts to run (default: all): {', '.join(names)}")
    parser.add_argument("--measure", action="store_true",
                        help="re-run each script's measurements (its measure()) before drawing")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in names]
    if unknown:
        parser.error(f"unknown figure script(s) {', '.join(unknown)}; valid: {', '.join(names)}")
    for name in args.names or names:
        module = importlib.import_module(f"docs.figures.{name}")
        start = time.perf_counter()
        if args.measure:
            if hasattr(module, "measure"):
                module.measure()
            else:
                print(f"{name}: no measure() (its results come from another command; see its "
                      f"docstring)", file=sys.stderr)
        module.main()
        print(f"{name}: {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
