"""The documentation site: the tour and the API reference build with ``mkdocs build --strict``
(a broken link, a missing page or an unresolved docstring cross-reference fails), every
picture a page names exists and every picture is named by a page, and every module and
public name is in the API reference."""

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rnnlab

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
IMG = DOCS / "img"
PAGES = sorted(DOCS.glob("*.md"))


def test_site_builds_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra (pip install -e '.[docs]') builds "
                                         "the site")
    pytest.importorskip("mkdocstrings_handlers.python", reason="needs mkdocstrings-python")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    for page in ["index.html", "10.8-esn.html", "api/cells.html", "api/rnnlab.html"]:
        assert (tmp_path / page).is_file(), page
    # the docstrings' Sphinx roles became links to the objects' own pages
    cells = (tmp_path / "api" / "cells.html").read_text(encoding="utf-8")
    assert 'href="layers.html#rnnlab.layers.Recurrent' in cells


def pictures_named(page: Path) -> set[str]:
    text = page.read_text(encoding="utf-8")
    return set(re.findall(r"\]\((img/[^)\s]+\.png)\)", text))


def test_every_picture_a_page_names_exists_and_every_picture_is_named():
    named = {name for page in PAGES for name in pictures_named(page)}
    missing = sorted(n for n in named if not (DOCS / n).is_file())
    assert not missing, f"pages name pictures that do not exist: {missing}"
    unnamed = sorted(f"img/{p.name}" for p in IMG.glob("*.png")) if IMG.is_dir() else []
    unnamed = [n for n in unnamed if n not in named]
    assert not unnamed, f"pictures no page names: {unnamed}"


@pytest.mark.parametrize("page", [p for p in PAGES if p.name.startswith("10.")],
                         ids=lambda p: p.name.split("-")[0])
def test_every_tour_page_shows_a_picture(page):
    assert pictures_named(page), f"{page.name} shows no picture"


def test_pictures_are_small():
    for png in IMG.glob("*.png"):
        assert png.stat().st_size < 200_000, png.name


def test_every_figure_script_has_main_and_its_picture():
    scripts = [p for p in (DOCS / "figures").glob("*.py") if not p.stem.startswith("_")]
    assert scripts
    for script in scripts:
        assert re.search(r"^def main\(", script.read_text(encoding="utf-8"), re.M), script.name
        assert list(IMG.glob(f"{script.stem}*.png")), f"{script.name} drew no docs/img picture"


def test_api_reference_covers_every_module_and_public_name():
    directives = set()
    for page in (DOCS / "api").glob("*.md"):
        directives |= set(re.findall(r"^::: ([\w.]+)", page.read_text(encoding="utf-8"), re.M))
    src = ROOT / "src"
    modules = {".".join(p.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
               for p in (src / "rnnlab").rglob("*.py") if p.stem != "__main__"}
    assert not sorted(modules - directives), "modules missing from docs/api"
    top = (DOCS / "api" / "rnnlab.md").read_text(encoding="utf-8")
    assert [n for n in rnnlab.__all__ if f"`{n}`" not in top and f"rnnlab.{n}`" not in top] == []
    # each top-level name links to where it is defined
    for name, target in re.findall(r"\[`(\w+)`\]\[([\w.]+)\]", top):
        obj = getattr(rnnlab, name)
        assert target == f"{obj.__module__}.{obj.__qualname__}", name


def test_roles_become_checked_references():
    griffe = pytest.importorskip("griffe", reason="the docs extra brings griffe")
    spec = importlib.util.spec_from_file_location("griffe_roles", DOCS / "griffe_roles.py")
    roles = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(roles)
    pkg = griffe.load("rnnlab", search_paths=[str(ROOT / "src")])
    obj = pkg["cells.time.SkipCell"]

    def link(text):
        return roles.ROLE.sub(lambda m: roles.link(pkg, obj, m), text)

    assert link(":class:`SkipState`") == "[`SkipState`][rnnlab.cells.time.SkipState]"
    assert link(":class:`~rnnlab.Recurrent`") == "[`Recurrent`][rnnlab.layers.Recurrent]"
    assert link(":mod:`.elman`") == "[`elman`][rnnlab.cells.elman]"
    assert link(":class:`ValueError`") == "`ValueError`"           # outside rnnlab: plain
    # a stale name stays a link to nowhere, which the strict build reports
    assert link(":func:`no_such_function`") == "[`no_such_function`][no_such_function]"


def test_figure_runner_lists_the_scripts_and_rejects_unknown_names(capsys):
    sys.path.insert(0, str(ROOT))
    try:
        runner = importlib.import_module("docs.figures.__main__")
    finally:
        sys.path.remove(str(ROOT))
    assert "esn" in runner.scripts() and "__init__" not in runner.scripts()
    with pytest.raises(SystemExit) as exit_:
        runner.main(["no-such-figure"])
    assert exit_.value.code == 2
    assert "unknown figure script(s) no-such-figure; valid: " in capsys.readouterr().err
