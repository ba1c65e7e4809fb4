"""The house rule of DESIGN.md: nothing below a line imports from above it.

Every module of ``src/rnnlab`` stands on one floor (the table below, ground floor first);
every import — at the top of a file or inside a function — must reach the same floor or a
lower one. Package faces (``__init__.py`` files that only re-export) stand with their
package. A new module must be given a floor here.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: (floor, module prefixes), ground floor first; the longest matching prefix wins
FLOORS = [
    (0, ["rnnlab.config", "rnnlab.data"]),
    (1, ["rnnlab.cells.base"]),
    (2, ["rnnlab.cells"]),                        # one file per family
    (3, ["rnnlab.cells.registry", "rnnlab.cells.__init__"]),
    (4, ["rnnlab.unroll"]),
    (5, ["rnnlab.kernels", "rnnlab.fast", "rnnlab.fast_c"]),   # fast: any cell's traced step;
    #                                              fast_c: its time loops in C
    (6, ["rnnlab.layers"]),
    (7, ["rnnlab.trace", "rnnlab.compat", "rnnlab.export"]),   # compat: rnn, cells, quantize
    (8, ["rnnlab.models"]),
    (9, ["rnnlab.training"]),
    (10, ["rnnlab.tasks"]),
    (11, ["rnnlab.diagnose"]),
    (12, ["rnnlab.bench"]),
    (13, ["rnnlab.cli", "rnnlab.__main__", "rnnlab.__init__"]),
]


def floor(module: str) -> int:
    best, length = None, -1
    for level, prefixes in FLOORS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = level, len(prefix)
    assert best is not None, f"{module} has no floor in tests/test_layout.py"
    return best


def modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "rnnlab").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        out[".".join(parts)] = path                     # packages keep their __init__
    return out


def imports(module: str, path: Path) -> set[str]:
    """The rnnlab modules ``module`` imports (resolved, relative imports included)."""
    here = module.split(".")[:-1]                     # the package the file is in
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            found.add(name)
            found.update(f"{name}.{a.name}" for a in node.names)
    return {m for m in found if m == "rnnlab" or m.startswith("rnnlab.")}


def resolve(name: str, known: dict[str, Path]) -> str | None:
    while name:
        if name in known:
            return name
        if f"{name}.__init__" in known:
            return f"{name}.__init__"
        name = name.rpartition(".")[0]
    return None


def test_every_import_goes_to_the_same_floor_or_below():
    known = modules()
    upward = []
    for module, path in known.items():
        for name in imports(module, path):
            target = resolve(name, known)
            if target is None or target == module:
                continue
            face = target.endswith(".__init__") and module.startswith(target[:-9])
            if not face and floor(target) > floor(module):
                upward.append(f"{module} (floor {floor(module)}) imports {target} "
                              f"(floor {floor(target)})")
    assert not upward, "\n".join(sorted(upward))


def test_every_module_has_a_floor():
    for module in modules():
        floor(module)
